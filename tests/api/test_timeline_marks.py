"""The controller marks a change's stages (workers/timeline.py, on with VPCD_TIMELINE=1)
in the order it passes them, naming the revision once there is one; bench/converge.py
lines these up with the API's and the agent's marks."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api import helpers as h
from tests.conftest import Tenant
from workers import timeline
from workers.bus import poke_controller
from workers.controller import tasks
from workers.protocol import SECTIONS


@pytest.fixture
def marks(timeline_log: io.StringIO) -> io.StringIO:
    timeline.ENABLED = True  # restored by `timeline_log`
    return timeline_log


def test_a_change_is_marked_from_poke_to_recorded(
    client: TestClient,
    tenant: Tenant,
    marks: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
    db_url: str,
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    sent: list[tuple[str, list[Any]]] = []

    class Bus:
        def send_task(self, name: str, args: list[Any] | None = None, **_: Any) -> None:
            sent.append((name, args or []))

    monkeypatch.setattr(tasks, "app", Bus())
    tasks.heartbeat("m1", "198.18.6.1", ["compute"], sections=list(SECTIONS))
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    port = h.port(client, tenant, s["id"], host="m1", netns="w")
    marks.seek(0)
    marks.truncate()
    poke_controller(Bus(), ["m1"])  # type: ignore[arg-type]
    tasks.sync_host("m1")
    doc = [args[0] for name, args in sent if name == "vpcd.agent.apply"][-1]
    tasks.report(
        {
            "host": "m1",
            "revision": doc["revision"],
            "ok": True,
            "full": True,
            "results": [{"kind": "port", "id": port["id"], "revision": 1, "ok": True}],
        }
    )
    got = [(m.stage, m.host, m.revision) for m in timeline.parse(marks.getvalue())]
    rev = doc["revision"]
    assert got == [
        ("poked", "m1", None),
        ("poke_received", "m1", None),
        ("compile_start", "m1", None),
        ("inputs_read", "m1", None),
        ("built", "m1", None),
        ("compiled", "m1", rev),
        ("sent", "m1", rev),
        ("report_received", "m1", rev),
        ("recorded", "m1", rev),
        ("settled", "m1", rev),
    ]
    status = client.get(f"/v1/ports/{port['id']}", headers=tenant.headers).json()["status"]
    assert status == "active"
