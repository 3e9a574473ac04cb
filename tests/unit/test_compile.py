"""The controller's compile step is a pure function of named inputs: built here by hand."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pydantic import BaseModel, ConfigDict

from models import ExternalNetwork, FloatingIp, Port, Router, RouterInterface, Subnet
from models.host import LEGACY_SECTIONS, LEGACY_VERSION
from workers.controller.compile import COMPILERS, Inputs, build
from workers.controller.wiring import digest
from workers.protocol import (
    PROTOCOL_VERSION,
    SECTIONS,
    SECTIONS_L2,
    HostState,
    PortState,
    SubnetState,
)


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
    state = build(
        Inputs(
            host="h1",
            vtep_ip="198.18.0.11",
            ports=local,
            subnets=[s],
            routed=frozenset({"s1"}),
            remote=remote,
            revision=7,
        )
    )
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
    base = Inputs(host="h1", vtep_ip="198.18.0.11", ports=local, subnets=[a], revision=1)
    state = build(base)
    assert [s.id for s in state.subnets] == ["s1"] and not state.subnets[0].routed
    again = build(replace(base, revision=2))
    assert digest(state) == digest(again)
    moved = build(
        replace(base, ports=[_port("p1", "s1", "10.0.1.2", "fa:16:3e:00:00:01", "h1", rev=2)])
    )
    assert digest(moved) != digest(state)  # a resource's revision is content
    assert b.id not in {s.id for s in state.subnets}


def test_empty_host() -> None:
    state = build(Inputs(host="h9", vtep_ip="198.18.0.19"))
    assert state.subnets == [] and state.ports == [] and state.routers == []


def _router_inputs() -> Inputs:
    s1, s2 = _subnet("s1", 1), _subnet("s2", 2, "10.0.2.0/26")
    r = Router(
        id="r1",
        revision=4,
        vpc_id="v",
        tenant_id="t",
        host="net1",
        external_network_id="ext",
        external_ip="203.0.113.10",
        enable_snat=True,
        routes=[{"destination": "10.9.0.0/16", "nexthop": "10.0.1.254"}],
    )
    ext = ExternalNetwork(
        id="ext", cidr="203.0.113.0/24", gateway_ip="203.0.113.1", allocation_pools=[]
    )
    legs = [
        (
            RouterInterface(router_id="r1", subnet_id=sub.id, port_id=f"leg-{sub.id}"),
            _port(f"leg-{sub.id}", sub.id, sub.gateway_ip, f"FA:16:3E:00:01:0{n}", "net1", rev=3),
            sub,
        )
        for n, sub in enumerate((s2, s1))
    ]
    for _, leg, _ in legs:
        leg.netns = None
    workload = _port("p1", "s1", "10.0.1.5", "fa:16:3e:00:00:05", "h2")
    fip = FloatingIp(
        id="f1",
        revision=2,
        tenant_id="t",
        external_network_id="ext",
        address="203.0.113.20",
        port_id="p1",
        router_id="r1",
    )
    return Inputs(
        host="net1",
        vtep_ip="198.18.0.21",
        subnets=[s1, s2],
        routed=frozenset({"s1", "s2"}),
        remote=[(workload, "198.18.0.12")],
        routers=[r],
        interfaces=legs,
        external_networks={"ext": ext},
        floating_ips=[(fip, workload)],
    )


def test_routers_section_carries_legs_gateway_routes_and_floating_ips() -> None:
    state = build(_router_inputs())
    (r,) = state.routers
    assert (r.id, r.revision, r.enable_snat) == ("r1", 4, True)
    assert [(i.subnet_id, i.port_id, i.port_revision) for i in r.interfaces] == [
        ("s1", "leg-s1", 3),
        ("s2", "leg-s2", 3),
    ]  # sorted by subnet: deterministic documents
    assert [(i.gateway_ip, i.prefixlen, i.mac) for i in r.interfaces] == [
        ("10.0.1.1", 24, "fa:16:3e:00:01:01"),
        ("10.0.2.1", 26, "fa:16:3e:00:01:00"),
    ]
    gw = r.external_gateway
    assert gw is not None
    assert (gw.external_network_id, gw.cidr, gw.gateway_ip, gw.external_ip) == (
        "ext",
        "203.0.113.0/24",
        "203.0.113.1",
        "203.0.113.10",
    )
    assert [(x.destination, x.nexthop) for x in r.routes] == [("10.9.0.0/16", "10.0.1.254")]
    (f,) = r.floating_ips
    assert (f.id, f.revision, f.address, f.fixed_ip, f.port_id) == (
        "f1",
        2,
        "203.0.113.20",
        "10.0.1.5",
        "p1",
    )
    assert state.ports == []  # legs are the router's, never workload ports
    assert [s.id for s in state.subnets] == ["s1", "s2"]


def test_a_router_without_gateway_has_none() -> None:
    inputs = _router_inputs()
    (r,) = inputs.routers
    r.external_network_id, r.external_ip = None, None
    assert build(inputs).routers[0].external_gateway is None


@pytest.mark.parametrize(
    "sections", [SECTIONS_L2, ("subnets",), SECTIONS], ids=["l2", "subnets", "all"]
)
def test_only_supported_sections_are_built_and_sent(sections: tuple[str, ...]) -> None:
    state = build(_router_inputs(), sections)
    wire = state.wire(sections)
    assert set(wire) == {"version", "host", "revision", "vtep_ip", *sections}
    assert bool(state.routers) == ("routers" in sections)
    assert HostState.model_validate(wire) == state


class OldHostState(BaseModel):
    """HostState as an agent built before `routers` existed has it: unknown keys forbidden."""

    model_config = ConfigDict(extra="forbid")
    version: int
    host: str
    revision: int
    vtep_ip: str
    subnets: list[SubnetState] = []
    ports: list[PortState] = []


def test_an_older_agent_reads_an_l2_document() -> None:
    wire = build(_router_inputs(), SECTIONS_L2).wire(SECTIONS_L2)
    assert OldHostState.model_validate(wire).host == "net1"  # no `routers` key at all


def test_digest_of_an_l2_document_ignores_sections_it_does_not_get() -> None:
    """Adding a section must not re-stamp every L2 host's document."""
    l2 = build(_router_inputs(), SECTIONS_L2)
    assert digest(l2, SECTIONS_L2) == digest(l2.model_copy(update={"routers": []}), SECTIONS_L2)
    assert digest(l2, SECTIONS_L2) != digest(build(_router_inputs()), SECTIONS)


def test_one_compile_function_per_section_and_legacy_defaults_agree() -> None:
    assert tuple(COMPILERS) == SECTIONS
    assert (LEGACY_VERSION, LEGACY_SECTIONS) == (PROTOCOL_VERSION, SECTIONS_L2)
