"""Mixed-version rollout with real agents: the network host's agent advertises only the
L2 sections (`--sections subnets,ports`, SECTIONS_L2, as an agent of before routers did),
while the controller also knows `routers` (and every other section SUPPORTED_SECTIONS
lists). Its L2 keeps working; a router is `error` with a detail naming the host and the
section. No packet leaves the sandbox's namespaces.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from cli import sandbox as sbx
from tests.e2e.conftest import Box
from workers.agent.service import SUPPORTED_SECTIONS
from workers.protocol import SECTIONS_L2

pytestmark = pytest.mark.e2e


def _wait(box: Box, who: dict[str, str], path: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = box.http.get(path, headers=who).json()
        if body.get("status") == status:
            return body
        time.sleep(0.1)
    raise AssertionError(f"{path} not {status} in 30s: {body}")


def _host(box: Box, name: str) -> dict[str, Any]:
    (host,) = box.http.get(f"/v1/hosts?name={name}", headers=box.admin).json()["items"]
    return host  # type: ignore[no-any-return]


def _wait_sections(box: Box, name: str, want: tuple[str, ...]) -> None:
    deadline = time.monotonic() + 60
    while tuple(_host(box, name)["sections"]) != want:
        assert time.monotonic() < deadline, f"{name} never advertised {want}"
        time.sleep(0.2)


def _restart_agent(box: Box, short: str, argv: list[str]) -> None:
    sb = sbx.load(box.name)
    label = f"agent-{short}"
    sbx.stop(sb.pids[label])
    sbx.spawn(sb, label, argv, {**os.environ, **sb.env})
    box.sb = sbx.load(box.name)


@contextmanager
def l2_only(box: Box, short: str) -> Iterator[None]:
    """The host's agent restarted advertising only the L2 sections; restored after."""
    argv = list(sbx.load(box.name).argv[f"agent-{short}"])
    _restart_agent(box, short, [*argv, "--sections", ",".join(SECTIONS_L2), "--no-deltas"])
    try:
        _wait_sections(box, box.host(short), SECTIONS_L2)
        yield
    finally:
        _restart_agent(box, short, argv)
        _wait_sections(box, box.host(short), SUPPORTED_SECTIONS)


def test_l2_agents_keep_l2_while_a_router_they_cannot_carry_is_error(box: Box) -> None:
    with l2_only(box, "h1"):
        _l2_agent_against_routers(box)


def _l2_agent_against_routers(box: Box) -> None:
    t, s, a, b = box.connected_pair(("h1", "v1"), ("h2", "v2"))
    h1 = box.host("h1")  # a network host: with no router anywhere, routers go there first
    before = _host(box, h1)
    assert (before["protocol_version"], before["sections"]) == (1, list(SECTIONS_L2))
    assert "routers" in SUPPORTED_SECTIONS and "routers" not in SECTIONS_L2

    ext = box.post(
        "/v1/external-networks", box.admin, cidr="198.51.100.0/24", gateway_ip="198.51.100.1"
    )
    r = box.post("/v1/routers", t, vpc_id=s["vpc_id"], external_network_id=ext["id"])
    assert r["host"] == h1
    leg = box.post(f"/v1/routers/{r['id']}/interfaces", t, subnet_id=s["id"])
    fip = box.post("/v1/floating-ips", t, external_network_id=ext["id"], port_id=b["id"])
    sections = ", ".join(SECTIONS_L2)
    detail = f"host {h1} does not support section 'routers' (protocol 1: {sections})"
    for path in (
        f"/v1/routers/{r['id']}",
        f"/v1/floating-ips/{fip['id']}",
        f"/v1/ports/{leg['port_id']}",
    ):
        assert _wait(box, t, path, "error")["status_detail"] == detail, path

    # L2 on the same host keeps working, and its reports are accepted
    c = box.port(t, s, "h1", "v3")
    box.wait_status(t, c)
    box.wait_ping(box.workload("h1", "v3"), b["ip_address"])
    assert box.ping(box.workload("h2", "v2"), a["ip_address"])
    for port in (a, b):
        assert box.http.get(f"/v1/ports/{port['id']}", headers=t).json()["status"] == "active"
    _wait(box, t, f"/v1/subnets/{s['id']}", "active")  # the leg on h1 does not hold it
    after = _host(box, h1)
    assert (
        after["status_detail"] is None and after["realised_revision"] > before["realised_revision"]
    )

    for path in (
        f"/v1/floating-ips/{fip['id']}",
        f"/v1/routers/{r['id']}/interfaces/{s['id']}",
        f"/v1/routers/{r['id']}",
        f"/v1/ports/{c['id']}",
    ):
        assert box.http.delete(path, headers=t).status_code == 204, path
    assert (
        box.http.delete(f"/v1/external-networks/{ext['id']}", headers=box.admin).status_code == 204
    )
