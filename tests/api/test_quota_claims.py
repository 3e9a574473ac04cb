"""Quota claims: enforced at commit, yet no lock held while the create does its work.

The parallel burst in test_concurrency proves quotas hold across two worker processes;
these pin down what a burst cannot show: the claim is enforced at the outer commit (not
at an allocation's savepoint), the counters follow deletes, and two creates of one tenant
interleave instead of the second waiting for the first (issue 14: they ran one at a time).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.errors import QuotaExceeded
from api.services import quotas
from models import Vpc
from models.tenant import quota_used
from tests.conftest import Tenant


def _claim_vpc(session: sa.orm.Session, tenant_id: str) -> None:
    quotas.check(session, tenant_id, "vpcs", Vpc)
    session.add(Vpc(tenant_id=tenant_id, cidr="10.0.0.0/16"))


def _vpcs(client: TestClient, t: Tenant) -> int:
    return len(client.get("/v1/vpcs", headers=t.headers).json()["items"])


def test_a_claim_past_the_limit_fails_the_commit_and_nothing_is_made(
    app: FastAPI, client: TestClient, make_tenant: Callable[..., Tenant]
) -> None:
    t = make_tenant(vpcs=1)
    session = app.state.sessionmaker()
    try:
        _claim_vpc(session, t.id)
        _claim_vpc(session, t.id)
        with session.begin_nested():  # an allocation's savepoint enforces nothing
            session.flush()
        with pytest.raises(QuotaExceeded) as caught:
            session.commit()
        assert caught.value.extra["quota"]["resource"] == "vpcs"
        assert caught.value.extra["quota"]["limit"] == 1
        session.rollback()
    finally:
        session.close()
    assert _vpcs(client, t) == 0


def test_the_counter_follows_creates_and_deletes(
    app: FastAPI, client: TestClient, make_tenant: Callable[..., Tenant]
) -> None:
    """Room freed by a delete is room again: the triggers count down as well as up."""
    t = make_tenant(vpcs=2)
    made = [client.post("/v1/vpcs", json={"cidr": "10.0.0.0/16"}, headers=t.headers) for _ in "ab"]
    assert [r.status_code for r in made] == [201, 201]
    full = client.post("/v1/vpcs", json={"cidr": "10.0.0.0/16"}, headers=t.headers)
    assert full.status_code == 409 and "quota" in full.json()["type"], full.text
    with app.state.sessionmaker() as session:
        assert quota_used(session, t.id, "vpcs") == 2
    gone = client.delete(f"/v1/vpcs/{made[0].json()['id']}", headers=t.headers)
    assert gone.status_code == 204, gone.text
    with app.state.sessionmaker() as session:
        assert quota_used(session, t.id, "vpcs") == 1
    again = client.post("/v1/vpcs", json={"cidr": "10.0.0.0/16"}, headers=t.headers)
    assert again.status_code == 201, again.text
    assert _vpcs(client, t) == 2


def test_two_creates_of_one_tenant_interleave_and_the_later_commit_is_refused(
    app: FastAPI, client: TestClient, make_tenant: Callable[..., Tenant]
) -> None:
    """A has flushed its row and not committed; B creates and commits meanwhile without
    waiting for A (a lock taken at the check would make B time out); A's commit then
    finds the quota full."""
    if app.state.engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one writer at a time: two creates cannot interleave")
    t = make_tenant(vpcs=1)
    first, second = app.state.sessionmaker(), app.state.sessionmaker()
    try:
        _claim_vpc(first, t.id)
        first.flush()
        second.execute(sa.text("SET LOCAL lock_timeout = '10s'"))  # fail, never hang
        _claim_vpc(second, t.id)
        second.commit()
        with pytest.raises(QuotaExceeded):
            first.commit()
        first.rollback()
    finally:
        first.close()
        second.close()
    assert _vpcs(client, t) == 1


def test_over_quota_with_an_idempotency_key_is_a_409_and_so_is_its_retry(
    client: TestClient, make_tenant: Callable[..., Tenant]
) -> None:
    """The refusal comes from the commit, after the answer was stored with the change:
    both go, the client gets the 409 and a retry with the key is refused the same way."""
    t = make_tenant(vpcs=1)
    body = {"cidr": "10.0.0.0/16"}
    assert client.post("/v1/vpcs", json=body, headers=t.headers).status_code == 201
    keyed = {**t.headers, "Idempotency-Key": "quota-full-1"}
    for _ in range(2):
        r = client.post("/v1/vpcs", json=body, headers=keyed)
        assert r.status_code == 409 and r.json()["type"].endswith("/quota-exceeded"), r.text
        assert r.json()["quota"] == {"resource": "vpcs", "limit": 1, "used": 1}
    assert _vpcs(client, t) == 1
