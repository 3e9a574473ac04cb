"""Controller against a real DB: registration, compile, reports -> statuses, coalescing.

Celery is not involved: sent tasks are captured, so each step is checked on its own.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.api import helpers as h
from workers.bus import APPLY, SYNC_HOST
from workers.controller import tasks
from workers.protocol import HostState, Report, ResourceResult


@pytest.fixture
def sent(
    monkeypatch: pytest.MonkeyPatch, db_url: str
) -> list[tuple[str, list[Any], dict[str, Any]]]:
    monkeypatch.setenv("DATABASE_URL", db_url)
    calls: list[tuple[str, list[Any], dict[str, Any]]] = []

    def send_task(
        name: str, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None, **_: Any
    ) -> None:
        calls.append((name, args or [], kwargs or {}))

    monkeypatch.setattr(tasks.app, "send_task", send_task)
    return calls


def _doc(sent: list[tuple[str, list[Any], dict[str, Any]]], host: str) -> HostState:
    docs = [HostState.model_validate(a[0]) for n, a, _ in sent if n == APPLY]
    return [d for d in docs if d.host == host][-1]


def _ok(state: HostState, fail: set[str] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
    results = [
        ResourceResult(kind="subnet", id=s.id, revision=s.revision, ok=True) for s in state.subnets
    ]
    results += [
        ResourceResult(
            kind="port",
            id=p.id,
            revision=p.revision,
            ok=p.id not in fail,
            detail="EPERM: veth" if p.id in fail else None,
        )
        for p in state.ports
    ]
    return Report(
        host=state.host, revision=state.revision, ok=not fail, results=results
    ).model_dump(mode="json")


def test_register_compile_report_status(client, tenant, sent) -> None:  # type: ignore[no-untyped-def]
    tasks.heartbeat("h1", "198.18.0.11", ["compute"], first=True)
    tasks.heartbeat("h2", "198.18.0.12", ["compute"], first=True)
    hosts = client.get("/v1/hosts", headers=h.ADMIN).json()["items"]
    assert {x["name"]: x["status"] for x in hosts} == {"h1": "up", "h2": "up"}

    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    p1 = h.port(client, tenant, s["id"], host="h1", netns="web")
    p2 = h.port(client, tenant, s["id"], host="h2", netns="db")
    assert p1["status"] == "pending"

    sent.clear()
    tasks.sync_host("h1")
    doc = _doc(sent, "h1")
    assert [p.id for p in doc.ports] == [p1["id"]]
    assert doc.subnets[0].remote_vteps == ["198.18.0.12"]
    assert [r.mac for r in doc.subnets[0].remote_ports] == [p2["mac_address"]]
    first_rev = doc.revision
    tasks.sync_host("h1")  # nothing changed: same revision (a stale poke is a no-op)
    assert _doc(sent, "h1").revision == first_rev

    tasks.report(_ok(doc))
    got = client.get(f"/v1/ports/{p1['id']}", headers=tenant.headers).json()
    assert got["status"] == "active" and got["revision"] == p1["revision"]
    # the subnet is carried by h1 and h2: active only when both have realised it
    assert (
        client.get(f"/v1/subnets/{s['id']}", headers=tenant.headers).json()["status"] == "pending"
    )
    tasks.sync_host("h2")
    tasks.report(_ok(_doc(sent, "h2"), fail={p2["id"]}))
    got2 = client.get(f"/v1/ports/{p2['id']}", headers=tenant.headers).json()
    assert got2["status"] == "error" and "EPERM" in got2["status_detail"]
    assert any(n == SYNC_HOST and kw.get("full") for n, _, kw in sent)  # failure -> full resync
    tasks.report(_ok(_doc(sent, "h2")))
    assert client.get(f"/v1/ports/{p2['id']}", headers=tenant.headers).json()["status"] == "active"
    assert client.get(f"/v1/subnets/{s['id']}", headers=tenant.headers).json()["status"] == "active"

    # a change makes the port pending again until the new revision is realised
    r = client.patch(f"/v1/ports/{p1['id']}", json={"name": "renamed"}, headers=tenant.headers)
    assert r.json()["status"] == "pending"
    tasks.sync_host("h1")
    newer = _doc(sent, "h1")
    assert newer.revision > first_rev
    tasks.report(_ok(newer))
    assert client.get(f"/v1/ports/{p1['id']}", headers=tenant.headers).json()["status"] == "active"


def test_changes_mark_touched_hosts_dirty_once(client, tenant, sent) -> None:  # type: ignore[no-untyped-def]
    from models import HostStateRow
    from models.db import engine_for, session_factory

    tasks.heartbeat("h1", "198.18.0.11", ["compute"])
    tasks.heartbeat("h2", "198.18.0.12", ["compute"])
    tasks.heartbeat("h3", "198.18.0.13", ["compute"])
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    h.port(client, tenant, s["id"], host="h1", netns="a")
    h.port(client, tenant, s["id"], host="h2", netns="b")
    s2 = h.subnet(client, tenant, v["id"], cidr="10.0.2.0/24")
    h.port(client, tenant, s2["id"], host="h3", netns="c")
    maker = session_factory(engine_for(client.app.state.settings.database_url))  # type: ignore[attr-defined]
    with maker() as session:
        dirty = {r.host: r.dirty for r in session.query(HostStateRow)}
    # every host with a port so far was touched by some change
    assert dirty == {"h1": True, "h2": True, "h3": True}
    sent.clear()
    tasks.sweep()  # the sweep pushes every dirty host once and clears the flags
    assert sorted(a[0]["host"] for n, a, _ in sent if n == APPLY) == ["h1", "h2", "h3"]
    with maker() as session:
        assert not any(r.dirty for r in session.query(HostStateRow))
    # subnet 2 lives on h3 only (and a port in no group changes no group's members)
    h.port(client, tenant, s2["id"], host="h3", netns="d", security_group_ids=[])
    with maker() as session:
        dirty = {r.host: r.dirty for r in session.query(HostStateRow)}
    assert dirty == {"h1": False, "h2": False, "h3": True}
    tasks.sweep()
    # a port joining the default group changes its members, which h1 and h2 hold (the
    # default group's rule names the group itself)
    h.port(client, tenant, s2["id"], host="h3", netns="e")
    with maker() as session:
        dirty = {r.host: r.dirty for r in session.query(HostStateRow)}
    assert dirty == {"h1": True, "h2": True, "h3": True}


def test_a_burst_of_changes_pokes_each_host_once(client, tenant, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Coalescing: while a host is dirty (its sync not yet compiled), no further pokes."""
    pokes: list[list[str]] = []
    notifier = client.app.state.notifier
    monkeypatch.setattr(notifier, "enabled", True)
    monkeypatch.setattr(notifier, "app", lambda: "fake-app")
    monkeypatch.setattr(
        "api.services.notify.poke_controller", lambda app, hosts: pokes.append(sorted(hosts))
    )
    h.host(client, name="h1", vtep_ip="198.18.0.11")  # registered by the admin: no poke
    h.host(client, name="h2", vtep_ip="198.18.0.12")
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    for i in range(10):
        h.port(client, tenant, s["id"], host="h1", netns=f"n{i}")
    assert pokes == [["h1"]]
    h.port(client, tenant, s["id"], host="h2", netns="m")  # touches h2 (new) and h1 (FDB)
    assert pokes == [["h1"], ["h2"]]
    r = client.post(
        "/v1/ports",
        json={"subnet_id": s["id"], "host": "h3", "ip_address": "9.9.9.9"},
        headers=tenant.headers,
    )
    assert r.status_code == 422 and pokes == [["h1"], ["h2"]]  # a failed request pokes nobody


def test_host_goes_down_after_missed_heartbeats(client, sent) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    import sqlalchemy as sa

    from api.hosts import HEARTBEAT_TIMEOUT
    from models import Host
    from models.base import utcnow
    from models.db import engine_for

    tasks.heartbeat("h1", "198.18.0.11", ["compute", "network"], first=True)
    (host,) = client.get("/v1/hosts", headers=h.ADMIN).json()["items"]
    assert host["status"] == "up" and host["roles"] == ["compute", "network"]
    with engine_for(client.app.state.settings.database_url).begin() as conn:
        conn.execute(
            sa.update(Host).values(
                last_heartbeat=utcnow() - HEARTBEAT_TIMEOUT - timedelta(seconds=1)
            )
        )
    assert client.get(f"/v1/hosts/{host['id']}", headers=h.ADMIN).json()["status"] == "down"
    tasks.heartbeat("h1", "198.18.0.11", ["compute", "network"])
    assert client.get(f"/v1/hosts/{host['id']}", headers=h.ADMIN).json()["status"] == "up"


def test_router_legs_and_unbound_ports_do_not_keep_a_subnet_pending(client, tenant, sent) -> None:  # type: ignore[no-untyped-def]
    tasks.heartbeat("h1", "198.18.0.11", ["compute", "network"], first=True)
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    r = h.router(client, tenant, v["id"])
    assert r["host"] == "h1"
    h.attach(client, tenant, r["id"], s["id"])  # a router leg bound to h1, not realised yet
    h.port(client, tenant, s["id"], host="h1")  # bound but no workload netns
    tasks.sweep()
    assert client.get(f"/v1/subnets/{s['id']}", headers=tenant.headers).json()["status"] == "active"


def test_an_older_report_never_overwrites_a_newer_one(client, tenant, sent) -> None:  # type: ignore[no-untyped-def]
    tasks.heartbeat("h1", "198.18.0.11", ["compute"], first=True)
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    p = h.port(client, tenant, s["id"], host="h1", netns="a")
    tasks.sync_host("h1")
    old = _doc(sent, "h1")
    client.patch(f"/v1/ports/{p['id']}", json={"name": "b"}, headers=tenant.headers)
    tasks.sync_host("h1")
    new = _doc(sent, "h1")
    tasks.report(_ok(new))
    tasks.report(_ok(old))  # arrives late
    got = client.get(f"/v1/ports/{p['id']}", headers=tenant.headers).json()
    assert got["status"] == "active"
    hosts = client.get("/v1/hosts", headers=h.ADMIN).json()["items"]
    assert hosts[0]["realised_revision"] == new.revision


def test_an_agent_starting_late_is_pushed_to_its_peers(client, tenant, sent) -> None:  # type: ignore[no-untyped-def]
    tasks.heartbeat("h1", "198.18.0.11", ["compute"], first=True)
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    h.port(client, tenant, s["id"], host="h1", netns="a")
    h.host(client, name="h2", vtep_ip="198.18.0.12")  # the admin registered it first
    h.port(client, tenant, s["id"], host="h2", netns="b")  # h2 has no agent yet
    sent.clear()
    tasks.heartbeat("h2", "198.18.0.12", ["compute"], first=True)
    pushed = {a[0]["host"]: a[0] for n, a, _ in sent if n == APPLY}
    assert set(pushed) == {"h1", "h2"}
    assert pushed["h1"]["subnets"][0]["remote_vteps"] == ["198.18.0.12"]


def test_compiles_of_one_host_never_stamp_older_rows_newer(  # type: ignore[no-untyped-def]
    client, tenant, sent, db_url, monkeypatch
) -> None:
    """A slow compile that read the rows before a change must not outrank a later one."""
    import threading
    import time

    from models import desired as q

    if db_url.startswith("sqlite"):
        pytest.skip("SQLite runs one writer at a time; the race needs Postgres")
    tasks.heartbeat("h1", "198.18.0.11", ["compute"], first=True)
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    h.port(client, tenant, s["id"], host="h1", netns="a")
    read, release = threading.Event(), threading.Event()
    original = q.local_ports_of

    def slow(session, hosts):  # type: ignore[no-untyped-def]
        rows = original(session, hosts)
        if threading.current_thread().name == "slow":
            read.set()
            release.wait(10)
        return rows

    monkeypatch.setattr(q, "local_ports_of", slow)
    sent.clear()
    first = threading.Thread(target=tasks.sync_host, args=("h1",), name="slow")
    first.start()
    assert read.wait(10)
    late = h.port(client, tenant, s["id"], host="h1", netns="b")
    second = threading.Thread(target=tasks.sync_host, args=("h1",), name="fast")
    second.start()
    time.sleep(0.5)  # without serialisation the fast compile stamps first
    release.set()
    first.join(10)
    second.join(10)
    newest = max(
        (HostState.model_validate(a[0]) for n, a, _ in sent if n == APPLY), key=lambda d: d.revision
    )
    assert late["id"] in {p.id for p in newest.ports}


def test_the_sweep_sends_again_a_document_the_bus_lost(client, tenant, sent, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A document sent and then lost (Redis restarted holding it) leaves no dirty flag:
    the sweep sends it again once the host has not realised it for REPUSH_AFTER."""
    from datetime import timedelta

    import sqlalchemy as sa

    from models import HostStateRow
    from models.base import utcnow
    from models.db import engine_for

    tasks.heartbeat("h1", "198.18.0.11", ["compute"], first=True)
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    h.port(client, tenant, s["id"], host="h1", netns="a")
    sent.clear()
    tasks.sweep()  # the dirty host's document goes out ... and is never delivered
    (lost,) = [a[0] for n, a, _ in sent if n == APPLY]
    sent.clear()
    tasks.sweep()  # just sent: not lost yet, maybe on its way
    assert [n for n, _, _ in sent if n == APPLY] == []

    engine = engine_for(client.app.state.settings.database_url)
    with engine.begin() as conn:  # as if compiled longer ago than REPUSH_AFTER
        older = utcnow() - (tasks.REPUSH_AFTER + timedelta(seconds=1))
        conn.execute(sa.update(HostStateRow).values(updated_at=older))
    monkeypatch.setattr(tasks, "BACKLOG", lambda: 3)  # reports wait: its own may be there
    tasks.sweep()
    assert [n for n, _, _ in sent if n == APPLY] == []
    monkeypatch.setattr(tasks, "BACKLOG", lambda: 0)  # none: it was lost
    tasks.sweep()
    again = [HostState.model_validate(a[0]) for n, a, _ in sent if n == APPLY]
    assert [d.revision for d in again] == [lost["revision"]]

    tasks.report(_ok(again[0]))  # realised: nothing is sent again
    sent.clear()
    tasks.sweep()
    assert [n for n, _, _ in sent if n == APPLY] == []


def test_a_restarted_controller_compiles_what_a_dying_compile_had_cleared(  # type: ignore[no-untyped-def]
    client, tenant, sent
) -> None:
    """The dying compile cleared the flag of a host with a change waiting; the host then
    reports an older document (sent before the change), which would settle the change
    unrealised. A controller starting flags every host first, so the change is compiled."""
    from sqlalchemy.orm import Session

    from models import hoststate as hs
    from models.db import engine_for

    tasks.heartbeat("h1", "198.18.0.11", ["compute"], first=True)
    tasks.heartbeat("h2", "198.18.0.12", ["compute"], first=True)
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    h.port(client, tenant, s["id"], host="h1", netns="a")
    h.port(client, tenant, s["id"], host="h2", netns="a")
    tasks.sweep()
    docs = {d.host: d for d in (HostState.model_validate(a[0]) for n, a, _ in sent if n == APPLY)}
    tasks.report(_ok(docs["h2"]))  # h2 is settled
    late = h.port(client, tenant, s["id"], host="h1", netns="b")
    engine = engine_for(client.app.state.settings.database_url)
    with engine.begin() as conn:  # the dying compile's first transaction
        assert hs.clear_dirty(Session(bind=conn), ["h1"]) == {"h1"}
    tasks.report(_ok(docs["h1"]))  # the older document's report arrives
    sent.clear()
    tasks.mark_all_dirty()  # the controller starts again
    tasks.sweep()
    again = [HostState.model_validate(a[0]) for n, a, _ in sent if n == APPLY]
    assert [d.host for d in again] == ["h1", "h2"]  # h2 holds the new port as a remote one
    assert late["id"] in {p.id for p in again[0].ports}


class _Owner:
    """A ring view in which this controller owns every host (after the takeover)."""

    me = "c-live"

    def mine(self, host: str) -> bool:
        return True


def test_a_controller_taking_over_a_dead_members_hosts_compiles_what_it_had_cleared(  # type: ignore[no-untyped-def]
    client, tenant, sent, monkeypatch
) -> None:
    """In a ring, a member killed mid-compile leaves its hosts' flags cleared and nothing
    sent. The member that takes its hosts over when its beat expires flags them, so the
    change is compiled although no flag and no poke is left."""
    from sqlalchemy.orm import Session

    from models import hoststate as hs
    from models.db import engine_for
    from workers.controller.ring import owner_of

    before = ["c-live", "c-dead"]
    tasks.heartbeat("h1", "198.18.0.11", ["compute"], first=True)
    assert owner_of("h1", before) == "c-dead"  # the dead member owned h1
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    h.port(client, tenant, s["id"], host="h1", netns="a")
    tasks.sweep()
    tasks.report(_ok(_doc(sent, "h1")))
    late = h.port(client, tenant, s["id"], host="h1", netns="b")
    engine = engine_for(client.app.state.settings.database_url)
    with engine.begin() as conn:  # the dead member's compile cleared the flag, then died
        assert hs.clear_dirty(Session(bind=conn), ["h1"]) == {"h1"}
    sent.clear()
    tasks.sweep()
    assert [n for n, _, _ in sent if n == APPLY] == []  # lost: nothing flags h1

    monkeypatch.setattr(tasks, "RING", _Owner())
    assert tasks.take_over(before, ["c-live"]) == {"h1"}
    tasks.sweep()
    (again,) = [HostState.model_validate(a[0]) for n, a, _ in sent if n == APPLY]
    assert late["id"] in {p.id for p in again.ports}
