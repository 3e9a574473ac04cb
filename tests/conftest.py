"""Shared fixtures: one migrated database per test session, emptied after every test.

The database is Postgres when VPCD_TEST_DATABASE_URL names it (CI's default), else a
SQLite file; each pytest process gets a database of its own, so parallel runs never meet.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


# Tests that run one after another on one xdist worker: the kernel and page tests share
# the machine's namespaces and timings, and the parallel-burst API tests would compete
# with the e2e sandbox for the shared Postgres's 100 connections.
SERIAL = ("tests/e2e/", "tests/ui/", "tests/api/test_concurrency.py")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`-n 2` (the default in pyproject): the SERIAL tests form one unit of work, in
    collection order, so module fixtures stay whole; every other test file is a unit of
    its own. (xdist's `loadgroup` cannot do this on pytest 9: it renames node ids.)"""
    from xdist.scheduler import LoadScopeScheduling

    class SerialApart(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return "serial" if nodeid.startswith(SERIAL) else nodeid.split("::", 1)[0]

    return SerialApart(config, log)


@pytest.fixture(scope="session")
def db_url() -> Iterator[str]:
    base = os.environ.get("VPCD_TEST_DATABASE_URL", "sqlite://")
    if base.startswith("sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/vpcd-test.db"
            _migrate(url)
            yield url
        return
    from models.db import engine_for, scratch_database

    with scratch_database(base, "vpcd_test") as url:
        try:
            _migrate(url)
            yield url
        finally:
            engine_for(url).dispose()
            engine_for.cache_clear()


def _migrate(url: str) -> None:
    from migrations.runner import upgrade

    upgrade(url)


@pytest.fixture(scope="session")
def app(db_url: str):  # type: ignore[no-untyped-def]
    from api.app import create_app
    from api.settings import Settings

    # No bus: the in-process API pokes no controller (tests that need one capture pokes).
    return create_app(Settings(database_url=db_url, vpcd_admin_token=ADMIN_TOKEN, redis_url=None))


def wipe(db_url: str) -> None:
    """Delete every row but the admin token, children first."""
    from models import Base
    from models.db import engine_for

    engine = engine_for(db_url)
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name == "api_tokens":
                conn.execute(table.delete().where(table.c.tenant_id.is_not(None)))
            elif table.name == "tenants":
                continue
            else:
                conn.execute(table.delete())
        conn.execute(sa.text("DELETE FROM api_tokens WHERE tenant_id IS NOT NULL"))
        conn.execute(Base.metadata.tables["tenants"].delete())


@pytest.fixture
def client(app, db_url: str) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(app) as c:
        yield c
    wipe(db_url)


@dataclass
class Tenant:
    id: str
    name: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def make_tenant(client: TestClient) -> Callable[..., Tenant]:
    def make(name: str | None = None, **quotas: int) -> Tenant:
        name = name or f"tenant-{uuid.uuid4().hex[:8]}"
        r = client.post("/v1/tenants", json={"name": name}, headers=ADMIN)
        assert r.status_code == 201, r.text
        tid = r.json()["id"]
        token = _token(client, tid)
        if quotas:
            r = client.patch(f"/v1/tenants/{tid}/quotas", json=quotas, headers=ADMIN)
            assert r.status_code == 200, r.text
        return Tenant(tid, name, token)

    return make


def _token(client: TestClient, tid: str) -> str:
    r = client.post(f"/v1/tenants/{tid}/tokens", headers=ADMIN)
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


@pytest.fixture
def tenant(make_tenant: Callable[..., Tenant]) -> Tenant:
    return make_tenant("alpha")


@pytest.fixture
def timeline_log() -> Iterator[io.StringIO]:
    """The stage marks (workers/timeline.py) written meanwhile; marking is left as it
    was found, and restored afterwards."""
    from workers import timeline

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("vpcd.timeline")
    log.addHandler(handler)
    was = timeline.ENABLED
    try:
        yield out
    finally:
        log.removeHandler(handler)
        timeline.ENABLED = was
