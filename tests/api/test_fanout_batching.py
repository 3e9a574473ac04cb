"""One change reaching many hosts (issue 13): one poke message for them all, the
sweep's pushes joining the pokes' batches (never a second compile of a host in flight),
and the reports' status refreshes joined."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from models import Subnet
from models.db import engine_for, session_factory
from tests.api import helpers as h
from tests.conftest import Tenant
from workers import bus
from workers.controller import tasks
from workers.controller.batch import Batcher, Want
from workers.controller.refresher import Refresher
from workers.protocol import SECTIONS


class _App:
    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any], dict[str, Any]]] = []

    def send_task(self, name: str, args: list[Any], kwargs: dict[str, Any], **_: Any) -> None:
        self.sent.append((name, args, kwargs))


def test_many_hosts_are_poked_in_one_message_one_host_as_before() -> None:
    app = _App()
    bus.poke_controller(app, {f"h{i:04d}" for i in range(1500)})  # type: ignore[arg-type]
    bus.poke_controller(app, ["agent"], full=True)  # what an agent asks for itself
    assert [(n, len(a[0]) if n == bus.SYNC_HOSTS else a) for n, a, _ in app.sent] == [
        (bus.SYNC_HOSTS, 1000),
        (bus.SYNC_HOSTS, 500),
        (bus.SYNC_HOST, ["agent"]),
    ]
    assert app.sent[2][2] == {"full": True}


@pytest.fixture
def batcher(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Want]]:
    """A running controller's batcher, whose batches are recorded, not compiled."""
    batches: list[dict[str, Want]] = []
    b = Batcher(lambda wants: batches.append(dict(wants)), gather=0)
    monkeypatch.setattr(tasks, "BATCHER", b)
    return batches


def test_a_many_host_poke_makes_one_batch(batcher: list[dict[str, Want]]) -> None:
    tasks.sync_hosts([f"h{i}" for i in range(500)])
    assert tasks.BATCHER is not None and tasks.BATCHER.run_once(timeout=1) == 500
    assert len(batcher) == 1 and len(batcher[0]) == 500


def test_the_sweep_pushes_through_the_batches(
    client: TestClient,
    tenant: Tenant,
    batcher: list[dict[str, Want]],
    monkeypatch: pytest.MonkeyPatch,
    db_url: str,
) -> None:
    """A host still dirty at the sweep joins the next batch (merged with its pokes),
    instead of a compile of its own racing the batch on the sweeper's thread."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setattr(tasks.app, "send_task", lambda *a, **k: None)
    tasks.heartbeat("sw1", "198.18.5.1", ["compute"], first=True, sections=list(SECTIONS))
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    h.port(client, tenant, s["id"], host="sw1", netns="a")
    assert tasks.BATCHER is not None and tasks.BATCHER.run_once(timeout=1) == 1  # registration
    batcher.clear()

    def compile_here(_: object) -> None:
        raise AssertionError("the sweep compiled on its own thread")

    monkeypatch.setattr(tasks, "push_many", compile_here)
    tasks.route("sw1", full=False)  # the poke, waiting in the batcher
    tasks.sweep()
    assert tasks.BATCHER.run_once(timeout=1) == 1
    assert batcher == [{"sw1": Want()}]


def test_reports_status_refreshes_are_joined(
    client: TestClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    """Reports of a running controller note what changed; one refresh covers them all
    and leaves the statuses a refresh per report would."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setattr(tasks.app, "send_task", lambda *a, **k: None)
    refreshed: list[dict[str, set[str]]] = []

    def refresh(ids: dict[str, set[str]]) -> None:
        refreshed.append(ids)
        tasks.refresh_statuses(ids)

    refresher = Refresher(refresh, gather=0)
    monkeypatch.setattr(tasks, "REFRESHER", refresher)
    hosts = ["r1", "r2", "r3"]
    for i, host in enumerate(hosts):
        tasks.heartbeat(host, f"198.18.6.{i + 1}", ["compute"], first=True, sections=list(SECTIONS))
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    ports = [h.port(client, tenant, s["id"], host=x, netns="w") for x in hosts]
    subnet = _subnet(db_url, s["id"])
    for host, port in zip(hosts, ports, strict=True):
        tasks.report(
            {
                "host": host,
                "revision": 1,
                "ok": True,
                "full": True,
                "results": [
                    {"kind": "subnet", "id": s["id"], "revision": subnet.revision, "ok": True},
                    {"kind": "port", "id": port["id"], "revision": port["revision"], "ok": True},
                ],
            }
        )
    assert refreshed == []  # noted, not refreshed report by report
    assert _subnet(db_url, s["id"]).status == "pending"
    assert refresher.run_once(timeout=1) == 1 + len(ports)
    assert len(refreshed) == 1
    assert _subnet(db_url, s["id"]).status == "active"
    statuses = {client.get(f"/v1/ports/{p['id']}", headers=tenant.headers).json()["status"]
                for p in ports}  # fmt: skip
    assert statuses == {"active"}


def test_a_failed_refresh_is_noted_again() -> None:
    calls: list[dict[str, set[str]]] = []

    def fail(ids: dict[str, set[str]]) -> None:
        calls.append(ids)
        if len(calls) == 1:
            raise RuntimeError("database gone")

    refresher = Refresher(fail, gather=0)
    refresher.add({"subnet": {"s1"}})
    refresher.run_once(timeout=1)
    refresher.add({"port": {"p1"}})
    refresher.run_once(timeout=1)
    assert calls == [{"subnet": {"s1"}}, {"subnet": {"s1"}, "port": {"p1"}}]


def _subnet(db_url: str, sid: str) -> Subnet:
    with session_factory(engine_for(db_url))() as session:
        row = session.get(Subnet, sid)
        assert row is not None
        session.expunge(row)
        return row


def test_settling_a_batch_at_once_settles_what_one_by_one_would(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    """A push settles the hosts with nothing new to realise in one transaction: the
    same hosts, and only those, as `settle` host by host."""
    import random
    from datetime import timedelta

    import sqlalchemy as sa

    from models import Host, HostStateRow
    from models import hoststate as hs
    from models.base import utcnow

    monkeypatch.setenv("DATABASE_URL", db_url)
    rng = random.Random(7)
    names = [f"st{i}" for i in range(40)]
    for i, name in enumerate(names):
        tasks.heartbeat(name, f"198.18.7.{i + 1}", ["compute"], first=False, sections=["subnets"])
    maker = session_factory(engine_for(db_url))
    with maker.begin() as session:
        session.execute(sa.delete(HostStateRow).where(HostStateRow.host.in_(names)))
        for name in names:
            if rng.random() < 0.1:
                continue  # never compiled: no state row
            revision = rng.randint(1, 3)
            session.add(
                HostStateRow(
                    host=name,
                    revision=revision,
                    digest="d",
                    dirty=rng.random() < 0.3,
                    pending_since=utcnow() - timedelta(seconds=5) if rng.random() < 0.7 else None,
                )
            )
            realised = rng.choice([0, revision - 1, revision, revision + 1])
            session.execute(
                sa.update(Host).where(Host.name == name).values(realised_revision=realised)
            )
    expected = set()
    with maker() as session:
        for name in names:
            if hs.settle(session, name, None) is not None:
                expected.add(name)
        session.rollback()
    assert expected and len(expected) < len(names)  # the draw covers both outcomes
    with maker.begin() as session:
        settled = hs.settle_many(session, names)
    assert set(settled) == expected
    assert all(4.0 < s < 60.0 for s in settled.values())
    with maker() as session:
        left = session.scalars(
            sa.select(HostStateRow.host).where(
                HostStateRow.host.in_(sorted(expected)), HostStateRow.pending_since.is_not(None)
            )
        ).all()
        assert left == []
