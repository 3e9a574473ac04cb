"""A one-port change on a many-port host compiles cheaply (issue 14): the host's own
ports are read as plain rows, never as ORM objects, and the state of a port that did not
change is the very object the last compile built, not a new one."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from models import Port
from tests.api import helpers as h
from tests.conftest import Tenant
from workers.controller import tasks
from workers.controller.compile import compile_hosts
from workers.protocol import SECTIONS


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch, db_url: str) -> str:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setattr(tasks.app, "send_task", lambda *a, **k: None)
    tasks.heartbeat("r1", "198.18.5.1", ["compute"], sections=list(SECTIONS))
    return "r1"


def _ports(doc: Any) -> dict[str, Any]:
    return {p.id: p for p in doc.state.ports}


def test_a_compile_loads_no_port_objects_for_the_hosts_own_ports(
    client: TestClient, tenant: Tenant, host: str
) -> None:
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    for i in range(5):
        h.port(client, tenant, s["id"], host=host, netns=f"w{i}")
    loaded: list[Port] = []

    def seen(target: Port, _context: Any) -> None:
        loaded.append(target)

    sa.event.listen(Port, "load", seen)
    try:
        with h.rolled_back_session(client) as session:
            doc = compile_hosts(session, [host])[host]
    finally:
        sa.event.remove(Port, "load", seen)
    assert len(doc.state.ports) == 5
    assert loaded == []


def test_an_unchanged_port_keeps_its_state_object_and_a_changed_one_is_rebuilt(
    client: TestClient, tenant: Tenant, host: str
) -> None:
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    g = h.group(client, tenant, v["id"])
    a = h.port(client, tenant, s["id"], host=host, netns="wa")
    b = h.port(client, tenant, s["id"], host=host, netns="wb")
    with h.rolled_back_session(client) as session:
        before = _ports(compile_hosts(session, [host])[host])
    h.port(client, tenant, s["id"], host=host, netns="wc")  # the one change
    r = client.patch(
        f"/v1/ports/{b['id']}", json={"security_group_ids": [g["id"]]}, headers=tenant.headers
    )
    assert r.status_code == 200, r.text
    with h.rolled_back_session(client) as session:
        after = _ports(compile_hosts(session, [host])[host])
    assert len(after) == 3
    assert after[a["id"]] is before[a["id"]]  # built once, shared by both documents
    assert after[b["id"]] is not before[b["id"]]
    assert list(after[b["id"]].security_group_ids) == [g["id"]]
    assert after[b["id"]].revision > before[b["id"]].revision
