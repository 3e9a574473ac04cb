"""`vpcd sandbox fail` / `heal`: a host dies as a machine does (links cut, agent gone) and
comes back. Traffic stays inside the sandbox's namespaces.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from cli import sandbox as sbx
from tests.e2e.conftest import Box

pytestmark = pytest.mark.e2e
DOWN_WITHIN = 60.0  # the API's heartbeat timeout (30 s) plus a heartbeat interval and slack


def host_view(box: Box, name: str) -> dict[str, Any]:
    r = box.http.get("/v1/hosts", params={"name": name}, headers=box.admin)
    assert r.status_code == 200, r.text
    (host,) = r.json()["items"]
    return host  # type: ignore[no-any-return]


def wait_host(box: Box, name: str, want: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        host = host_view(box, name)
        if host["status"] == want or time.monotonic() > deadline:
            assert host["status"] == want, host
            return host
        time.sleep(0.5)


def test_fail_cuts_a_host_and_heal_brings_it_back(box: Box) -> None:
    t, s, a, b = box.connected_pair(("h1", "fo1"), ("h3", "fo3"))
    ns_a, ns_b = box.workload("h1", "fo1"), box.workload("h3", "fo3")
    h1, h3 = box.sb.host("h1"), box.sb.host("h3")
    label = "agent-h3"
    pid = box.sb.pids[label]
    failed = False
    try:
        sbx.fail(box.name, "h3")
        failed = True
        assert not sbx.alive(pid)  # the agent is gone, as with a dead machine
        state = sbx.Sandbox.load(box.name)
        assert state is not None and state.failed == ["h3"]
        # its links are cut: neither its workloads nor its VTEP answer
        assert not box.ping(ns_a, b["ip_address"], count=2, wait=0.5)
        assert not box.ping(h1["netns"], h3["vtep_ip"], count=2, wait=0.5)
        assert not box.ping(ns_b, a["ip_address"], count=2, wait=0.5)
        seen = host_view(box, h3["name"])["last_heartbeat"]
        start = time.monotonic()
        down = wait_host(box, h3["name"], "down", DOWN_WITHIN)
        print(f"h3 down after {time.monotonic() - start:.1f}s")
        assert down["last_heartbeat"] == seen  # no heartbeat since the failure
        assert host_view(box, h1["name"])["status"] == "up"

        sbx.heal(box.name, "h3")
        failed = False
    finally:
        if failed:
            sbx.heal(box.name, "h3")
    state = sbx.Sandbox.load(box.name)
    assert state is not None and state.failed == []
    assert state.pids[label] != pid and sbx.alive(state.pids[label])
    wait_host(box, h3["name"], "up", 20)
    box.wait_ping(ns_a, b["ip_address"])
    box.wait_ping(ns_b, a["ip_address"])
    c = box.port(t, s, "h3", "fo4")  # the restarted agent realises new work too
    box.wait_status(t, c)
    box.wait_ping(ns_a, c["ip_address"])
