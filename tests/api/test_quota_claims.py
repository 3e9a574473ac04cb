"""Quota claims: binding at commit, yet no lock held while the create does its work.

The parallel burst in test_concurrency proves quotas hold across two worker processes;
these pin down the parts of the mechanism a burst cannot show: the claim is settled
at the outer commit (not at an allocation's savepoint), and while a create runs, the
tenant's quota lock is free for the others (issue 14: it serialised all creates).
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
from tests.conftest import Tenant


def _vpc(tenant_id: str) -> Vpc:
    return Vpc(tenant_id=tenant_id, cidr="10.0.0.0/16")


def test_a_claim_past_the_limit_fails_the_commit_and_nothing_is_made(
    app: FastAPI, client: TestClient, make_tenant: Callable[..., Tenant]
) -> None:
    t = make_tenant(vpcs=1)
    session = app.state.sessionmaker()
    try:
        for _ in range(2):
            quotas.check(session, t.id, "vpcs", Vpc)
            session.add(_vpc(t.id))
        with session.begin_nested():  # an allocation's savepoint settles nothing
            session.flush()
        with pytest.raises(QuotaExceeded) as caught:
            session.commit()
        assert caught.value.extra["quota"] == {"resource": "vpcs", "limit": 1, "used": 0}
        session.rollback()
    finally:
        session.close()
    assert client.get("/v1/vpcs", headers=t.headers).json()["items"] == []


def test_a_claim_within_the_limit_commits(
    app: FastAPI, client: TestClient, make_tenant: Callable[..., Tenant]
) -> None:
    t = make_tenant(vpcs=2)
    with app.state.sessionmaker() as session:
        for _ in range(2):
            quotas.check(session, t.id, "vpcs", Vpc)
            session.add(_vpc(t.id))
        session.commit()
    assert len(client.get("/v1/vpcs", headers=t.headers).json()["items"]) == 2


def test_the_quota_lock_is_free_while_a_create_runs(
    app: FastAPI, client: TestClient, make_tenant: Callable[..., Tenant]
) -> None:
    """Another transaction can take the tenant's quota lock until the claim's commit."""
    engine = app.state.engine
    if engine.dialect.name != "postgresql":
        pytest.skip("advisory locks are Postgres's; SQLite serialises writers itself")
    t = make_tenant(vpcs=5)
    key = sa.func.hashtextextended(f"vpcd-quota:{t.id}:vpcs", 0)
    with app.state.sessionmaker() as session, engine.connect() as other:
        quotas.check(session, t.id, "vpcs", Vpc)
        session.add(_vpc(t.id))
        session.flush()
        with other.begin():
            assert other.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(key))) is True
        session.commit()
    assert len(client.get("/v1/vpcs", headers=t.headers).json()["items"]) == 1
