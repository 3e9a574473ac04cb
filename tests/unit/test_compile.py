"""The controller's compile step is a pure function of rows: built here by hand."""

from __future__ import annotations

from models import Port, Subnet
from workers.controller.compile import build, digest


def _subnet(sid: str, vni: int, cidr: str = "10.0.1.0/24", rev: int = 1) -> Subnet:
    return Subnet(
        id=sid,
        revision=rev,
        vni=vni,
        cidr=cidr,
        gateway_ip=cidr.rsplit(".", 1)[0] + ".1",
        host_routes=[],
        allocation_pools=[],
        vpc_id="v",
        tenant_id="t",
    )


def _port(
    pid: str, sid: str, ip: str, mac: str, host: str, netns: str = "ns", rev: int = 1
) -> Port:
    return Port(
        id=pid,
        revision=rev,
        subnet_id=sid,
        ip_address=ip,
        mac_address=mac,
        host=host,
        netns=netns,
        interface_name="eth0",
        tenant_id="t",
        device_owner="",
    )


def test_local_ports_and_remote_entries() -> None:
    s = _subnet("s1", 100)
    local = [
        _port("p2", "s1", "10.0.1.3", "FA:16:3E:00:00:02", "h1"),
        _port("p1", "s1", "10.0.1.2", "fa:16:3e:00:00:01", "h1"),
    ]
    remote = [
        (_port("p3", "s1", "10.0.1.4", "fa:16:3e:00:00:03", "h2"), "198.18.0.12"),
        (_port("p4", "s1", "10.0.1.5", "fa:16:3e:00:00:04", "h3"), "198.18.0.13"),
        (_port("p5", "s1", "10.0.1.6", "fa:16:3e:00:00:05", "h3"), "198.18.0.13"),
    ]
    state = build("h1", "198.18.0.11", local, [s], {"s1"}, remote, revision=7)
    assert state.revision == 7 and state.vtep_ip == "198.18.0.11"
    assert [p.id for p in state.ports] == ["p1", "p2"]  # sorted: deterministic documents
    assert state.ports[1].mac == "fa:16:3e:00:00:02"  # normalised for the kernel
    assert state.ports[0].prefixlen == 24
    (sub,) = state.subnets
    assert sub.vni == 100 and sub.routed
    assert sub.remote_vteps == ["198.18.0.12", "198.18.0.13"]  # one flood entry per host
    assert [(r.mac, r.vtep_ip) for r in sub.remote_ports] == [
        ("fa:16:3e:00:00:03", "198.18.0.12"),
        ("fa:16:3e:00:00:04", "198.18.0.13"),
        ("fa:16:3e:00:00:05", "198.18.0.13"),
    ]


def test_only_subnets_with_local_ports_and_digest_ignores_revision() -> None:
    a, b = _subnet("s1", 1), _subnet("s2", 2, "10.0.2.0/24")
    local = [_port("p1", "s1", "10.0.1.2", "fa:16:3e:00:00:01", "h1")]
    state = build("h1", "198.18.0.11", local, [a], set(), [], revision=1)
    assert [s.id for s in state.subnets] == ["s1"] and not state.subnets[0].routed
    again = build("h1", "198.18.0.11", local, [a], set(), [], revision=2)
    assert digest(state) == digest(again)
    moved = build(
        "h1",
        "198.18.0.11",
        [_port("p1", "s1", "10.0.1.2", "fa:16:3e:00:00:01", "h1", rev=2)],
        [a],
        set(),
        [],
        revision=1,
    )
    assert digest(moved) != digest(state)  # a resource's revision is content
    assert b.id not in {s.id for s in state.subnets}


def test_empty_host() -> None:
    state = build("h9", "198.18.0.19", [], [], set(), [])
    assert state.subnets == [] and state.ports == []
