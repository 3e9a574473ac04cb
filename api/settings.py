"""API settings from the environment (DESIGN §6)."""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")
    database_url: str = "sqlite:///./vpcd.db"
    redis_url: str | None = None
    vpcd_bus_dir: str | None = None  # the embedded bus (sandbox without Redis)
    vpcd_admin_token: str | None = None
    idempotency_ttl_seconds: int = 24 * 3600
    idempotency_inflight_seconds: int = 60
    # How long a verified bearer token is trusted without asking the database again: a
    # token revoked by another process (or worker) is refused within this time.
    token_cache_seconds: float = 5.0


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
