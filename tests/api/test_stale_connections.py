"""The pool lends connections unchecked (no pre-ping round trip): a read that meets one
the server dropped runs again on a fresh connection, and the pool replaces the rest."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.api import helpers as h
from tests.conftest import Tenant

if os.environ.get("VPCD_TEST_DATABASE_URL", "sqlite://").startswith("sqlite"):
    pytest.skip("needs a Postgres server to drop connections", allow_module_level=True)


def _drop_other_connections(db_url: str) -> int:
    """What a database restart does to the pool: every other backend of the DB is gone."""
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            killed = conn.scalars(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).all()
    finally:
        engine.dispose()
    return len(killed)


def test_reads_survive_connections_the_server_dropped(
    client: TestClient, tenant: Tenant, db_url: str
) -> None:
    v = h.vpc(client, tenant)
    assert client.get(f"/v1/vpcs/{v['id']}", headers=tenant.headers).status_code == 200
    assert _drop_other_connections(db_url) >= 1
    for _ in range(3):  # the first meets the dead connection and reads again
        r = client.get(f"/v1/vpcs/{v['id']}", headers=tenant.headers)
        assert r.status_code == 200, r.text
        assert r.json()["id"] == v["id"]
    r = client.get("/v1/vpcs", headers=tenant.headers)
    assert r.status_code == 200 and [x["id"] for x in r.json()["items"]] == [v["id"]]
    # and writes find fresh connections too
    assert h.vpc(client, tenant, cidr="10.1.0.0/16")["cidr"] == "10.1.0.0/16"
