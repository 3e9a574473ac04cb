"""Shared fixtures: one migrated database per test session, emptied after every test.

The database is Postgres when VPCD_TEST_DATABASE_URL names it (CI's default), else a
SQLite file; each pytest process gets a database of its own, so parallel runs never meet.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under xdist (`-n 2 --dist loadgroup`, the default in pyproject): the kernel and page
    tests run one after another on one worker, since they share the machine's namespaces
    and timings; the pure and API tests spread over the other."""
    for item in items:
        if item.get_closest_marker("e2e") or item.nodeid.startswith("tests/ui/"):
            item.add_marker(pytest.mark.xdist_group("kernel"))


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
