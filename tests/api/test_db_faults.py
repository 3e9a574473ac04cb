"""Database failures are the database's, not the client's: 503 with Retry-After, never 500.

A transaction Postgres aborted to resolve a conflict (serialization failure 40001, deadlock
40P01) wrote nothing, so the API runs the request again a few times before giving up with
a 503. The conflicts here are real Postgres errors: the statement that would insert the
port is swapped for one that raises with that SQLSTATE, on the app's own engine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from api.transient import ATTEMPTS
from tests.conftest import ADMIN, Tenant

POSTGRES = not os.environ.get("VPCD_TEST_DATABASE_URL", "sqlite://").startswith("sqlite")


class Conflicts:
    """Make the next `count` port INSERTs fail in Postgres with `sqlstate`."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.sqlstate = "40001"
        self.left = 0
        self.raised = 0

    def arm(self, sqlstate: str, count: int) -> None:
        self.sqlstate, self.left, self.raised = sqlstate, count, 0

    def __call__(
        self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> tuple[str, Any]:
        if self.left > 0 and statement.lstrip().upper().startswith("INSERT INTO PORTS"):
            self.left -= 1
            self.raised += 1
            fail = f"RAISE EXCEPTION 'injected conflict' USING ERRCODE = '{self.sqlstate}'"
            return f"DO $$ BEGIN {fail}; END $$", {}
        return statement, params


@pytest.fixture
def conflicts(app: Any) -> Iterator[Conflicts]:
    if not POSTGRES:
        pytest.skip("SQLSTATEs 40001/40P01 are Postgres's")
    engine = app.state.engine
    hook = Conflicts(engine)
    sa.event.listen(engine, "before_cursor_execute", hook, retval=True)
    try:
        yield hook
    finally:
        sa.event.remove(engine, "before_cursor_execute", hook)


def _subnet(client: TestClient, tenant: Tenant) -> dict[str, Any]:
    r = client.post("/v1/vpcs", json={"cidr": "10.0.0.0/16"}, headers=tenant.headers)
    assert r.status_code == 201, r.text
    r = client.post(
        "/v1/subnets",
        json={"vpc_id": r.json()["id"], "cidr": "10.0.1.0/24"},
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def _ports(client: TestClient, tenant: Tenant) -> list[dict[str, Any]]:
    r = client.get("/v1/ports", headers=tenant.headers)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def _unavailable(r: Any) -> dict[str, Any]:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert int(r.headers["retry-after"]) >= 1
    body: dict[str, Any] = r.json()
    assert body["status"] == 503 and body["type"].endswith("/unavailable"), body
    assert "injected" not in body["detail"] and "INSERT" not in body["detail"]  # no SQL leaks
    return body


@pytest.mark.parametrize("sqlstate", ["40001", "40P01"])
def test_a_conflict_aborted_transaction_is_run_again(
    client: TestClient, tenant: Tenant, conflicts: Conflicts, sqlstate: str
) -> None:
    subnet = _subnet(client, tenant)
    conflicts.arm(sqlstate, ATTEMPTS - 1)  # every attempt but the last loses
    r = client.post("/v1/ports", json={"subnet_id": subnet["id"]}, headers=tenant.headers)
    assert r.status_code == 201, r.text
    assert conflicts.raised == ATTEMPTS - 1
    assert [p["id"] for p in _ports(client, tenant)] == [r.json()["id"]]


def test_a_conflict_that_persists_is_a_503_and_writes_nothing(
    client: TestClient, tenant: Tenant, conflicts: Conflicts
) -> None:
    subnet = _subnet(client, tenant)
    conflicts.arm("40P01", 1000)
    r = client.post("/v1/ports", json={"subnet_id": subnet["id"]}, headers=tenant.headers)
    _unavailable(r)
    assert conflicts.raised == ATTEMPTS  # bounded: then the client is told to come back
    assert _ports(client, tenant) == []


def test_an_idempotent_request_lost_to_conflicts_can_be_retried(
    client: TestClient, tenant: Tenant, conflicts: Conflicts
) -> None:
    """A 503 is not stored for the key: the client's retry runs, once."""
    subnet = _subnet(client, tenant)
    headers = {**tenant.headers, "Idempotency-Key": "conflicted-once"}
    body = {"subnet_id": subnet["id"], "name": "p"}
    conflicts.arm("40001", 1000)
    _unavailable(client.post("/v1/ports", json=body, headers=headers))
    conflicts.arm("40001", 0)
    first = client.post("/v1/ports", json=body, headers=headers)
    again = client.post("/v1/ports", json=body, headers=headers)
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json() == first.json()
    assert [p["id"] for p in _ports(client, tenant)] == [first.json()["id"]]


def test_an_unreachable_database_is_a_503_on_every_path() -> None:
    """Auth, routes and the Idempotency-Key middleware (outside the app's handlers) alike."""
    app = create_app(Settings(database_url="postgresql+psycopg://nobody@127.0.0.1:1/nothing"))
    client = TestClient(app)  # no lifespan: it would need the database
    bearer = {"Authorization": "Bearer whatever"}
    _unavailable(client.get("/v1/vpcs", headers=bearer))
    _unavailable(client.post("/v1/vpcs", json={"cidr": "10.0.0.0/16"}, headers=bearer))
    keyed = {**bearer, "Idempotency-Key": "k1"}
    _unavailable(client.post("/v1/vpcs", json={"cidr": "10.0.0.0/16"}, headers=keyed))
    _unavailable(client.get("/readyz"))
    assert client.get("/healthz").status_code == 200  # liveness needs no database
    _unavailable(client.get("/v1/tenants", headers=ADMIN))


def test_every_v1_operation_declares_the_503() -> None:
    doc = create_app(Settings(database_url="sqlite://")).openapi()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if path.startswith("/v1/"):
                declared = op["responses"].get("503")
                assert declared, f"{method.upper()} {path} does not declare 503"
                assert "Retry-After" in declared["headers"], (method, path)
