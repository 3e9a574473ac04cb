"""What the sandbox benchmarks share: the sandbox they run in, their tenant, their figures.

converge.py, dhcp_dns.py and l3.py each run a 3-host sandbox (root) on a scratch Postgres
database and the Redis bus, as in production; the sandbox goes down whatever happens.
Each prints its figures and saves them, with the machine they were taken on, as JSON.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from cli import sandbox as sbx
from models.db import scratch_database

HOSTS = 3


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of `values`, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextmanager
def sandbox(
    name: str, resync: float, network_hosts: int = 1, database: str = "vpcd_bench"
) -> Iterator[sbx.Sandbox]:
    """A running sandbox on Postgres (VPCD_BENCH_DATABASE_URL) + Redis (REDIS_URL); always down."""
    if os.geteuid() != 0:
        raise SystemExit("needs root")
    base = os.environ.get("VPCD_BENCH_DATABASE_URL", "postgresql+psycopg://root@127.0.0.1/postgres")
    redis = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    with scratch_database(base, database) as url:
        try:
            yield sbx.up(
                name,
                HOSTS,
                network_hosts=network_hosts,
                resync=resync,
                overrides={"DATABASE_URL": url, "REDIS_URL": redis},
            )
        finally:
            sbx.down(name)


def tenant(
    http: httpx.Client, admin: dict[str, str], port_quota: int | None = None
) -> dict[str, str]:
    """A new tenant named "bench" (with room for `port_quota` ports): its auth header."""
    t = http.post("/v1/tenants", json={"name": "bench"}, headers=admin).json()
    if port_quota is not None:
        http.patch(f"/v1/tenants/{t['id']}/quotas", json={"ports": port_quota}, headers=admin)
    token = http.post(f"/v1/tenants/{t['id']}/tokens", headers=admin).json()["token"]
    return {"Authorization": f"Bearer {token}"}


def machine() -> dict[str, Any]:
    """When and where the figures were taken."""
    return {
        "date": datetime.now(UTC).isoformat(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "database": "postgresql",
        "bus": "redis",
    }


def save(result: dict[str, Any], out: str) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {out}")
