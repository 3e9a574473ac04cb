"""The typed_networks section (issue 12), built from hand-made inputs: flat and routed
subnets carry their local ports; a routed one also its remote ports, each a /32 via the
remote host's underlay address; a flat one none (the segment is L2, no routes needed)."""

from __future__ import annotations

from models import Port, Subnet
from workers.controller.compile import Inputs, build
from workers.controller.typed import carried, typed_networks_section
from workers.protocol import UNDERLAY_MTU


def _subnet(sid: str, kind: str, cidr: str, **kw: object) -> Subnet:
    return Subnet(
        id=sid, revision=3, vni=7, cidr=cidr, gateway_ip=cidr.rsplit(".", 1)[0] + ".1",
        host_routes=[], allocation_pools=[], vpc_id="v", tenant_id="t", network_type=kind, **kw,
    )  # fmt: skip


def _port(pid: str, sid: str, ip: str, host: str) -> Port:
    return Port(
        id=pid, revision=2, subnet_id=sid, ip_address=ip, mac_address=f"FA:16:3E:00:00:{pid[-1]}0",
        host=host, netns=f"ns{pid}", interface_name="eth0", tenant_id="t", device_owner="",
    )  # fmt: skip


def _inputs() -> Inputs:
    routed = _subnet("r", "routed", "100.64.1.0/24", address_scope_id="scope")
    flat = _subnet(
        "f", "flat", "192.168.50.0/24", physical_network="provider", segmentation_id=None
    )
    return Inputs(
        host="h1",
        vtep_ip="198.18.0.11",
        typed_subnets=[routed, flat],
        typed_ports=[_port("p2", "r", "100.64.1.3", "h1"), _port("p1", "f", "192.168.50.9", "h1")],
        remote=[
            (_port("p9", "r", "100.64.1.9", "h3"), "198.18.0.13"),
            (_port("p8", "r", "100.64.1.8", "h2"), "198.18.0.12"),
            (_port("p7", "f", "192.168.50.7", "h2"), "198.18.0.12"),
        ],
        port_groups={"p2": ["sg"]},
    )


def test_routed_and_flat_networks() -> None:
    flat, routed = typed_networks_section(_inputs())  # by subnet id
    assert (routed.network_type, routed.mtu, routed.revision) == ("routed", UNDERLAY_MTU, 3)
    assert [(p.id, p.ip, p.prefixlen, p.mac) for p in routed.ports] == [
        ("p2", "100.64.1.3", 24, "fa:16:3e:00:00:20")
    ]
    assert routed.ports[0].security_group_ids == ["sg"]
    assert [(r.ip, r.vtep_ip) for r in routed.remote_ports] == [
        ("100.64.1.8", "198.18.0.12"),
        ("100.64.1.9", "198.18.0.13"),
    ]
    assert (flat.network_type, flat.physical_network, flat.segmentation_id) == (
        "flat", "provider", None,
    )  # fmt: skip
    assert flat.remote_ports == [] and [p.id for p in flat.ports] == ["p1"]
    assert flat.ports[0].security_group_ids == []
    assert carried([flat, routed]) == {"subnet": {"f", "r"}, "port": {"p1", "p2"}}


def test_typed_ports_never_reach_the_l2_sections() -> None:
    doc = build(_inputs())
    assert (doc.subnets, doc.ports) == ([], [])
    assert [n.id for n in doc.typed_networks] == ["f", "r"]
