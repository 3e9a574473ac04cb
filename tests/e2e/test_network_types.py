"""Network types on the sandbox (issue 12), as far as they are built: real agents detect
and report this kernel's capabilities and the provider network the sandbox wires; VLAN is
refused with the hosts that lack 8021q; routed CIDRs never overlap across tenants; flat
and routed ports are never realised as VXLAN by an agent that does not carry them (they
are `error`, naming the host and the section), and deleting them leaves nothing."""

from __future__ import annotations

import subprocess
import time
from typing import Any

from tests.e2e.conftest import RESYNC, Box
from workers.agent.drivers.capabilities import detect


def _hosts(box: Box) -> dict[str, dict[str, Any]]:
    items = box.http.get("/v1/hosts", headers=box.admin).json()["items"]
    return {h["name"]: h for h in items}


def _vxlan_devices(box: Box, short: str) -> list[str]:
    out = subprocess.run(
        ["ip", "-n", box.sb.host(short)["netns"], "-o", "link", "show", "type", "vxlan"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.split(":")[1].strip() for line in out.splitlines()]


def test_hosts_report_capabilities_and_the_provider_network(box: Box) -> None:
    kernel = detect()
    hosts = _hosts(box)
    for short in ("h1", "h2", "h3"):
        h = hosts[box.host(short)]
        assert h["capabilities"] == sorted(kernel), h
        assert h["physical_networks"] == ["provider"]
        assert "phys0" in box.links(short)


def test_vlan_refused_with_the_hosts_lacking_8021q(box: Box) -> None:
    if "8021q" in detect():  # pragma: no cover - another kernel
        raise AssertionError("this test describes a kernel without 8021q")
    r = box.http.post(
        "/v1/physical-networks", json={"name": "provider", "shared": True}, headers=box.admin
    )
    assert r.status_code in (201, 409), r.text
    t = box.tenant()
    vpc = box.post("/v1/vpcs", t, cidr="192.168.0.0/16")
    body = {
        "vpc_id": vpc["id"], "cidr": "192.168.100.0/24", "network_type": "flat",
        "physical_network": "provider", "segmentation_id": 100,
    }  # fmt: skip
    r = box.http.post("/v1/subnets", json=body, headers=t)
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    for short in ("h1", "h2", "h3"):
        assert box.host(short) in detail
    assert "lack 802.1Q (8021q)" in detail


def test_routed_overlap_refused_and_no_vxlan_for_typed_ports(box: Box) -> None:
    r = box.http.post("/v1/address-scopes", json={"cidr": "100.64.0.0/16"}, headers=box.admin)
    assert r.status_code == 201, r.text
    scope = r.json()
    a, b = box.tenant(), box.tenant()
    va = box.post("/v1/vpcs", a, cidr="100.64.0.0/16")
    vb = box.post("/v1/vpcs", b, cidr="100.64.0.0/16")
    s = box.post("/v1/subnets", a, vpc_id=va["id"], cidr="100.64.1.0/24", network_type="routed")
    r = box.http.post(
        "/v1/subnets",
        json={"vpc_id": vb["id"], "cidr": "100.64.1.0/25", "network_type": "routed"},
        headers=b,
    )
    assert r.status_code == 409 and "without encapsulation" in r.json()["detail"], r.text
    before = {short: _vxlan_devices(box, short) for short in ("h1", "h2")}
    p1 = box.port(a, s, "h1", "rt1")
    p2 = box.port(a, s, "h2", "rt2")
    for p in (p1, p2):
        got = box.wait_status(a, p, want="error")
        assert "does not support section 'typed_networks'" in got["status_detail"], got
    time.sleep(2 * RESYNC)  # two resync intervals: nothing is built for them meanwhile
    for short in ("h1", "h2"):  # none made for them (earlier tests' may still be going)
        assert set(_vxlan_devices(box, short)) <= set(before[short]), short
    for p in (p1, p2):
        assert box.http.delete(f"/v1/ports/{p['id']}", headers=a).status_code == 204
    assert box.http.delete(f"/v1/subnets/{s['id']}", headers=a).status_code == 204
    assert box.http.delete(f"/v1/vpcs/{va['id']}", headers=a).status_code == 204
    assert box.http.delete(f"/v1/vpcs/{vb['id']}", headers=b).status_code == 204
    r = box.http.delete(f"/v1/address-scopes/{scope['id']}", headers=box.admin)
    assert r.status_code == 204, r.text
