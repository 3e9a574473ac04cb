"""IPAM against a real database: collisions retry, gap queries find free addresses."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.errors import Exhausted
from api.services import ipam
from models import Host
from models.db import engine_for, session_factory
from tests.api import helpers as h


def test_insert_unique_retries_a_collision_and_returns_the_inserted_row(
    client: TestClient, db_url: str
) -> None:
    with session_factory(engine_for(db_url)).begin() as session:
        session.add(Host(name="taken", vtep_ip="192.0.2.1"))
        session.flush()
        row = ipam.insert_unique(
            session, iter(["taken", "free"]), lambda n: Host(name=n, vtep_ip="192.0.2.2")
        )
        assert isinstance(row, Host) and row.name == "free" and row.id
        assert session.get(Host, row.id) is row


def test_insert_unique_runs_out(client: TestClient, db_url: str) -> None:
    with session_factory(engine_for(db_url)).begin() as session:
        session.add(Host(name="taken", vtep_ip="192.0.2.1"))
        session.flush()
        with pytest.raises(StopIteration):
            ipam.insert_unique(session, iter(["taken"]), lambda n: Host(name=n, vtep_ip="x"))
        with pytest.raises(Exhausted):
            ipam.insert_unique(session, iter(["taken"] * 1000), lambda n: Host(name=n, vtep_ip="x"))


def _ports_at(db_url: str, subnet_id: str, tenant_id: str, addresses: list[str]) -> None:
    from models import Port

    with session_factory(engine_for(db_url)).begin() as session:
        for i, a in enumerate(addresses):
            session.add(
                Port(
                    tenant_id=tenant_id,
                    subnet_id=subnet_id,
                    ip_address=a,
                    mac_address=f"fa:16:3e:00:01:{i:02x}",
                )
            )


def test_first_free_finds_the_gap_after_a_run_up_and_down(
    client: TestClient, db_url: str, make_tenant: Any
) -> None:
    from models.network import address_int, first_free

    t = make_tenant()
    s = h.subnet(client, t, h.vpc(client, t)["id"], enable_dhcp=False)
    _ports_at(db_url, s["id"], t.id, ["10.0.1.10", "10.0.1.11", "10.0.1.12", "10.0.1.20"])
    a = address_int
    with session_factory(engine_for(db_url)).begin() as session:
        ff = lambda lo, hi, **kw: first_free(session, s["id"], a(lo), a(hi), **kw)  # noqa: E731
        assert ff("10.0.1.10", "10.0.1.30") == a("10.0.1.13")
        assert ff("10.0.1.5", "10.0.1.30") == a("10.0.1.5")
        assert ff("10.0.1.20", "10.0.1.30") == a("10.0.1.21")
        assert ff("10.0.1.10", "10.0.1.12") is None
        assert ff("10.0.1.20", "10.0.1.20") is None
        assert ff("10.0.1.1", "10.0.1.12", downward=True) == a("10.0.1.9")
        assert ff("10.0.1.1", "10.0.1.20", downward=True) == a("10.0.1.19")
        assert ff("10.0.1.10", "10.0.1.12", downward=True) is None


def test_allocation_finds_the_last_free_addresses_then_runs_out(
    client: TestClient, make_tenant: Any
) -> None:
    """A /29 with a 5-address pool: every allocation succeeds wherever its random scan
    starts (the scan wraps around), each address once, and the sixth is 409 exhausted."""
    t = make_tenant()
    v = h.vpc(client, t)
    s = h.subnet(client, t, v["id"], cidr="10.0.1.0/29", enable_dhcp=False)
    got = [h.port(client, t, s["id"])["ip_address"] for _ in range(5)]
    assert sorted(got) == [f"10.0.1.{i}" for i in range(2, 7)]
    r = client.post("/v1/ports", json={"subnet_id": s["id"]}, headers=t.headers)
    assert r.status_code == 409, r.text
    assert "no free address" in r.json()["detail"]


def test_candidates_wrap_around_the_pools_and_never_repeat() -> None:
    import random

    used = {5, 6, 7, 20}
    pools = [(5, 8), (20, 22)]
    first = ipam.scan_used(lambda: used)
    got = list(ipam.address_candidates(pools, first, set(), random.Random(1)))
    assert sorted(got) == [8, 21, 22] and len(got) == len(set(got))
