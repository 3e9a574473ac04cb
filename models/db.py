"""Engine and session factory from DATABASE_URL (a SQLite file by default)."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker


class DbSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")
    database_url: str = "sqlite:///./vpcd.db"


def pool_capacity(engine: Engine, default: int = 30) -> int:
    """How many connections the engine's pool can lend at once (its size plus overflow)."""
    pool = engine.pool
    if isinstance(pool, sa.pool.QueuePool):
        return pool.size() + max(int(getattr(pool, "_max_overflow", 0)), 0)
    return default


def make_engine(url: str, *, nullpool: bool = False) -> Engine:
    kwargs: dict[str, Any] = {}
    if nullpool:
        kwargs["poolclass"] = sa.pool.NullPool
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    elif not nullpool:
        # Connections kept open cover a worker's usual concurrency: an overflow connection
        # is closed on return, so a pool smaller than the load reconnects on every request.
        # No pre-ping (a round trip per checkout): a connection the server dropped fails
        # its statement, which makes the pool replace every connection older than it, and
        # reads run again on a fresh one (api.rest.transaction). Recycling keeps idle
        # connections from outliving server or proxy timeouts.
        kwargs.update(pool_size=20, max_overflow=10, pool_recycle=1800)
    engine = sa.create_engine(url, **kwargs)
    if url.startswith("sqlite"):

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _rec: Any) -> None:
            # FK enforcement and WAL; writers serialise through BEGIN IMMEDIATE.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def read_engine(engine: Engine) -> Engine:
    """The engine for reads: on Postgres its connections (the same pool) run each statement
    on its own, without BEGIN/COMMIT round trips; SQLite reads as before."""
    if engine.dialect.name != "postgresql":
        return engine
    return engine.execution_options(isolation_level="AUTOCOMMIT")


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    return make_engine(url)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)


@contextmanager
def scratch_database(base_url: str, prefix: str) -> Iterator[str]:
    """A new database on the Postgres server of `base_url`; yields its URL, drops it on exit.

    Each test session or benchmark gets one of its own, so runs in parallel never share rows.
    It is created and dropped from the server's `postgres` database (the one in `base_url`
    need not exist), and dropped WITH (FORCE): connections still open do not keep it.
    """
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", prefix):
        raise ValueError(f"database name prefix {prefix!r} is not a plain identifier")
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = sa.engine.make_url(base_url)
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def ping(engine: Engine) -> None:
    """One round trip to the database (readiness); raises SQLAlchemyError if it fails."""
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
