"""Network types on the sandbox (issue 12), as far as they are built: real agents detect
and report this kernel's capabilities and the provider network the sandbox wires; VLAN is
refused with the hosts that lack 8021q; routed CIDRs never overlap across tenants; flat
and routed ports are never realised as VXLAN; routed ports route between hosts with no
encapsulation (/32 routes via the underlay, repaired after drift, withdrawn on delete);
flat ports are macvlans on the provider segment, reaching each other and the sandbox's
physical server; identity servers prove which peer answers; deleting leaves nothing."""

from __future__ import annotations

import subprocess
import time
from typing import Any

from cli.sandbox_fabric import existing_namespaces
from tests.e2e.conftest import Box
from workers.agent import names
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
        box.wait_status(a, p)  # realised by agents that carry typed_networks
    for short in ("h1", "h2"):  # none made for them (earlier tests' may still be going)
        assert set(_vxlan_devices(box, short)) <= set(before[short]), short
        assert names.vxlan_name(s["id"]) not in _vxlan_devices(box, short)
    for p in (p1, p2):
        assert box.http.delete(f"/v1/ports/{p['id']}", headers=a).status_code == 204
    assert box.http.delete(f"/v1/subnets/{s['id']}", headers=a).status_code == 204
    assert box.http.delete(f"/v1/vpcs/{va['id']}", headers=a).status_code == 204
    assert box.http.delete(f"/v1/vpcs/{vb['id']}", headers=b).status_code == 204
    r = box.http.delete(f"/v1/address-scopes/{scope['id']}", headers=box.admin)
    assert r.status_code == 204, r.text


# -- the data plane (agents that carry typed_networks) --------------------------------------

ROUTES = ("route", "show", "proto", "147")  # the agent's routes for typed ports


def _ip(box: Box, short: str, *args: str) -> str:
    return subprocess.run(
        ["ip", "-n", box.sb.host(short)["netns"], *args],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def _tx(box: Box, short: str, kind: str) -> int:
    """Packets sent by all links of `kind` (vxlan, veth) in a host's namespace."""
    import json

    links = json.loads(_ip(box, short, "-s", "-j", "link", "show", "type", kind))
    return sum(int(link["stats64"]["tx"]["packets"]) for link in links)


def _wait(predicate: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


def _identity(box: Box, src: str, ports: dict[str, dict[str, Any]]) -> None:
    """ICMP, TCP and UDP from workload `src` to each port; the identity server answering
    is the one on the port asked (its netns name)."""
    for name, p in ports.items():
        box.wait_ping(src, p["ip_address"])
        assert box.ask(src, "tcp", p["ip_address"], 7001) == name
        assert box.ask(src, "udp", p["ip_address"], 7002) == name


def _serve(box: Box, ports: dict[str, tuple[str, str]]) -> None:
    for name, (short, netns) in ports.items():
        box.serve(box.workload(short, netns), "tcp", 7001, name)
        box.serve(box.workload(short, netns), "udp", 7002, name)


def _only_tcp(box: Box, t: dict[str, str], port: dict[str, Any], src: str, name: str) -> str:
    """Give `port` one group allowing TCP 7001 in: TCP still answers, UDP and ICMP no
    longer do (the group holds however the port is wired). Returns the group's id."""
    g = box.post("/v1/security-groups", t, vpc_id=port["vpc_id"], name="only-tcp")
    box.post(
        "/v1/security-group-rules", t, security_group_id=g["id"], direction="ingress",
        protocol="tcp", port_min=7001, port_max=7001, remote_cidr="0.0.0.0/0",
    )  # fmt: skip
    r = box.http.patch(f"/v1/ports/{port['id']}", json={"security_group_ids": [g["id"]]}, headers=t)
    assert r.status_code == 200, r.text
    ip = port["ip_address"]
    _wait(lambda: box.ask(src, "udp", ip, 7002) is None, "udp refused by the group")
    assert box.ask(src, "tcp", ip, 7001) == name and not box.ping(src, ip)
    return str(g["id"])


def _nothing_left(box: Box, workloads: set[str]) -> None:
    _wait(lambda: not workloads & existing_namespaces(), "workload namespaces gone")
    for short in ("h1", "h2", "h3"):
        _wait(lambda s=short: not [n for n in box.links(s) if n.startswith("vpw")], "no vpw")
        _wait(lambda s=short: _ip(box, s, *ROUTES).strip() == "", f"no typed routes {short}")


def test_routed_ports_route_between_hosts_without_encapsulation(box: Box) -> None:
    r = box.http.post("/v1/address-scopes", json={"cidr": "100.66.0.0/16"}, headers=box.admin)
    assert r.status_code == 201, r.text
    scope = r.json()
    t = box.tenant()
    vpc = box.post("/v1/vpcs", t, cidr="100.66.0.0/16")
    s = box.post("/v1/subnets", t, vpc_id=vpc["id"], cidr="100.66.1.0/24", network_type="routed")
    where = {"ra": ("h1", "ra"), "rb": ("h2", "rb"), "rc": ("h3", "rc")}
    ports = {name: box.port(t, s, short, netns) for name, (short, netns) in where.items()}
    for p in ports.values():
        box.wait_status(t, p)
    groups: list[str] = []
    try:
        _serve(box, where)
        src = box.workload("h1", "ra")
        # The workload: full underlay MTU, default route via the link-local gateway.
        assert "mtu 1500" in box.run(src, "ip", "link", "show", "eth0").stdout
        assert "default via 169.254.1.1" in box.run(src, "ip", "route").stdout
        # h1's routes: its own port out of its veth, the others via their hosts' underlay.
        routes = _ip(box, "h1", *ROUTES)
        rb, rc = ports["rb"]["ip_address"], ports["rc"]["ip_address"]
        assert f"{rb} via 198.18.0.12" in routes and f"{rc} via 198.18.0.13" in routes
        assert f"{ports['ra']['ip_address']} dev vpw" in routes
        before = {k: _tx(box, "h1", k) for k in ("vxlan", "veth")}
        _identity(box, src, {"rb": ports["rb"], "rc": ports["rc"]})
        assert box.run(src, "ping", "-n", "-q", "-c", "50", "-i", "0.01", rb).returncode == 0
        groups.append(_only_tcp(box, t, ports["rb"], src, "rb"))
        after = {k: _tx(box, "h1", k) for k in ("vxlan", "veth")}
        # No VXLAN device carried it (h1 may have none at all); the veths did.
        assert after["vxlan"] - before["vxlan"] < 50 <= after["veth"] - before["veth"]
        for short in ("h1", "h2", "h3"):  # no bridge nor VXLAN device for this subnet
            assert not {names.vxlan_name(s["id"]), names.bridge_name(s["id"])} & set(
                box.links(short)
            )
        # Drift: a /32 route deleted by hand is back after a resync.
        _ip(box, "h1", "route", "del", f"{rb}/32")
        _wait(lambda: f"{rb} via 198.18.0.12" in _ip(box, "h1", *ROUTES), "route repaired")
        _wait(lambda: box.ask(src, "tcp", rb, 7001) == "rb", "rb reached again")
        # A port moved to another host: every host's route follows it.
        r = box.http.patch(
            f"/v1/ports/{ports['rc']['id']}", json={"host": box.host("h2")}, headers=t
        )
        assert r.status_code == 200, r.text
        box.wait_status(t, r.json())
        _wait(lambda: f"{rc} via 198.18.0.12" in _ip(box, "h1", *ROUTES), "h1 follows rc")
        # h3 no longer carries the subnet (no port of it there): none of its routes.
        _wait(lambda: rc not in _ip(box, "h3", *ROUTES), "h3 dropped the subnet's routes")
        assert not [n for n in box.links("h3") if n.startswith("vpw")]
        assert f"{rc} dev vpw" in _ip(box, "h2", *ROUTES)
        box.wait_ping(src, rc)  # now in h2's namespace
        # A port deleted: its /32 goes from every other host.
        assert box.http.delete(f"/v1/ports/{ports['rc']['id']}", headers=t).status_code == 204
        for short in ("h1", "h2", "h3"):
            _wait(lambda s=short: rc not in _ip(box, s, *ROUTES), f"{rc} gone from {short}")
        assert not box.ping(src, rc)
    finally:
        box.stop_servers()
        for p in ports.values():
            box.http.delete(f"/v1/ports/{p['id']}", headers=t)
        for gid in groups:
            box.http.delete(f"/v1/security-groups/{gid}", headers=t)
    assert box.http.delete(f"/v1/subnets/{s['id']}", headers=t).status_code == 204
    assert box.http.delete(f"/v1/vpcs/{vpc['id']}", headers=t).status_code == 204
    r = box.http.delete(f"/v1/address-scopes/{scope['id']}", headers=box.admin)
    assert r.status_code == 204, r.text
    _nothing_left(box, {box.workload(*w) for w in where.values()} | {box.workload("h2", "rc")})


def test_flat_ports_meet_each_other_and_the_physical_server(box: Box) -> None:
    r = box.http.post(
        "/v1/physical-networks", json={"name": "provider", "shared": True}, headers=box.admin
    )
    assert r.status_code in (201, 409), r.text
    t = box.tenant()
    vpc = box.post("/v1/vpcs", t, cidr="192.168.0.0/16")
    s = box.post(
        "/v1/subnets", t, vpc_id=vpc["id"], cidr="192.168.50.0/24", network_type="flat",
        physical_network="provider",
    )  # fmt: skip
    assert s["gateway_ip"] == "192.168.50.1"  # the sandbox's physical server
    where = {"fa": ("h1", "fa"), "fb": ("h2", "fb"), "fc": ("h3", "fc")}
    ports = {name: box.port(t, s, short, netns) for name, (short, netns) in where.items()}
    for p in ports.values():
        box.wait_status(t, p)
    physical = f"{box.name}-physical"
    groups: list[str] = []
    try:
        _serve(box, where)
        src = box.workload("h1", "fa")
        link = box.run(src, "ip", "-d", "link", "show", "eth0").stdout
        assert "macvlan mode bridge" in link and ports["fa"]["mac_address"].lower() in link
        assert "default via 192.168.50.1" in box.run(src, "ip", "route").stdout
        _identity(box, src, {"fb": ports["fb"], "fc": ports["fc"]})
        # Groups on a flat port are refused (nothing on the host could enforce them).
        r = box.http.patch(
            f"/v1/ports/{ports['fb']['id']}",
            json={"security_group_ids": [vpc["default_security_group_id"]]},
            headers=t,
        )
        assert r.status_code == 409 and "macvlan" in r.json()["detail"], r.text
        # The bare-metal stand-in and the workloads reach each other on the segment.
        box.wait_ping(src, "192.168.50.1")
        for name, p in ports.items():
            box.wait_ping(physical, p["ip_address"])
            assert box.ask(physical, "tcp", p["ip_address"], 7001) == name
        for short in ("h1", "h2", "h3"):
            assert not {names.vxlan_name(s["id"]), names.bridge_name(s["id"])} & set(
                box.links(short)
            )
    finally:
        box.stop_servers()
        for p in ports.values():
            box.http.delete(f"/v1/ports/{p['id']}", headers=t)
        for gid in groups:
            box.http.delete(f"/v1/security-groups/{gid}", headers=t)
    assert box.http.delete(f"/v1/subnets/{s['id']}", headers=t).status_code == 204
    assert box.http.delete(f"/v1/vpcs/{vpc['id']}", headers=t).status_code == 204
    _nothing_left(box, {box.workload(*w) for w in where.values()})
