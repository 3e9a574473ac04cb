"""The flat and routed planner (issue 12) against the in-memory kernel: exact ops from
empty, convergence (the plan after apply is empty) for every transition of a small
matrix, drift repair, and that typed ports never reach the VXLAN domains."""

from __future__ import annotations

import itertools

import pytest

from tests.unit.kernel_model import apply_ops
from workers.agent.desired import Desired
from workers.agent.observed import Observed
from workers.agent.ops import Op
from workers.agent.plan import plan as _plan
from workers.agent.planners.l2 import CreateBridge, CreateVxlan
from workers.agent.planners.ports import CreateNetns, DeleteNetns
from workers.agent.planners.typed import (
    ConfigureRoutedHost,
    ConfigureTypedWorkload,
    CreateFlatPort,
    CreateRoutedPort,
    DeleteRoutedVeth,
    SetTypedRoutes,
)
from workers.agent.report import build_report
from workers.agent.typed_state import TypedRoute, routed_veth_name
from workers.protocol import (
    ROUTED_GATEWAY,
    HostState,
    PortState,
    RemotePort,
    TypedNetworkState,
)

R, F = "5a1b0000-0000-4000-8000-0000000000r1", "5a1b0000-0000-4000-8000-0000000000f1"
P1, P2, P3 = (f"90e70000-0000-4000-8000-00000000000{n}" for n in (1, 2, 3))
PHYS = {"provider": "phys0"}


def _port(pid: str, sid: str, ip: str, netns: str) -> PortState:
    return PortState(
        id=pid,
        revision=1,
        subnet_id=sid,
        netns=netns,
        mac=f"02:00:00:00:00:0{pid[-1]}",
        ip=ip,
        prefixlen=24,
    )


def _routed(ports: list[PortState], remote: list[tuple[str, str]]) -> TypedNetworkState:
    return TypedNetworkState(
        id=R,
        revision=1,
        network_type="routed",
        cidr="100.64.1.0/24",
        gateway_ip="100.64.1.1",
        ports=ports,
        remote_ports=[RemotePort(mac="02:aa:00:00:00:01", ip=ip, vtep_ip=v) for ip, v in remote],
    )


def _flat(ports: list[PortState]) -> TypedNetworkState:
    return TypedNetworkState(
        id=F,
        revision=1,
        network_type="flat",
        cidr="192.168.50.0/24",
        gateway_ip="192.168.50.1",
        physical_network="provider",
        ports=ports,
    )


def _host(*nets: TypedNetworkState) -> HostState:
    return HostState(host="h1", revision=1, vtep_ip="198.18.0.11", typed_networks=list(nets))


def _plan_of(state: HostState, observed: Observed, physical: dict[str, str] = PHYS) -> list[Op]:
    return _plan(Desired.build(state, "h1-", physical_interfaces=physical), observed)


def converge(state: HostState, observed: Observed = Observed()) -> Observed:
    built = apply_ops(observed, _plan_of(state, observed))
    assert _plan_of(state, built) == []
    return built


R1 = RP1 = _port(P1, R, "100.64.1.11", "a")
RP2 = _port(P2, R, "100.64.1.12", "b")
F3 = FP3 = _port(P3, F, "192.168.50.13", "c")
STATES = {
    "empty": _host(),
    "routed": _host(_routed([RP1], [("100.64.1.21", "198.18.0.12")])),
    "routed2": _host(_routed([RP1, RP2], [("100.64.1.21", "198.18.0.13")])),
    "flat": _host(_flat([FP3])),
    "both": _host(_routed([RP2], [("100.64.1.21", "198.18.0.12")]), _flat([FP3])),
}


def test_routed_port_from_empty_exact_ops() -> None:
    veth = routed_veth_name(P1)
    ops = _plan_of(STATES["routed"], Observed())
    assert ops == [
        CreateNetns("h1-a"),
        CreateRoutedPort(P1, veth, "h1-a", "eth0", "02:00:00:00:00:01", 1500),
        ConfigureRoutedHost(P1, veth, 1500),
        ConfigureTypedWorkload(
            P1,
            netns="h1-a",
            ifname="eth0",
            up=True,
            add_addresses=("100.64.1.11/24",),
            add_routes=(TypedRoute("0.0.0.0/0", ROUTED_GATEWAY, "eth0"),),
            routes=(TypedRoute("0.0.0.0/0", ROUTED_GATEWAY, "eth0"),),
        ),
        SetTypedRoutes(
            add=(
                TypedRoute("100.64.1.11/32", "", veth),  # the local port, out of its veth
                TypedRoute("100.64.1.21/32", "198.18.0.12"),  # a remote one, via its host
            ),
            forwarding=True,
        ),
    ]
    assert not [op for op in ops if isinstance(op, CreateBridge | CreateVxlan)]
    built = apply_ops(Observed(), ops)
    assert built.typed.veths[veth].proxy_arp and built.typed.forwarding
    assert built.typed.veths[veth].addresses == {f"{ROUTED_GATEWAY}/32"}
    assert (built.bridges, built.vxlans) == ({}, {})  # no bridge, no encapsulation


def test_flat_port_is_a_macvlan_of_the_physical_interface() -> None:
    ops = _plan_of(STATES["flat"], Observed())
    assert ops[:2] == [
        CreateNetns("h1-c"),
        CreateFlatPort(P3, "phys0", "h1-c", "eth0", "02:00:00:00:00:03", 1500),
    ]
    work = ops[2]
    assert isinstance(work, ConfigureTypedWorkload)
    assert work.routes == (TypedRoute("0.0.0.0/0", "192.168.50.1", "eth0"),)
    assert not [op for op in ops if isinstance(op, SetTypedRoutes)]  # L2 segment: no routes
    converge(STATES["flat"])


def test_flat_port_without_its_physical_interface_is_a_problem_not_an_op() -> None:
    desired = Desired.build(STATES["flat"], "h1-", physical_interfaces={})
    assert _plan(desired, Observed()) == []
    report = build_report(desired, {}, [])
    port = next(r for r in report.results if r.id == P3)
    assert not port.ok and "no interface on this host" in (port.detail or "")


@pytest.mark.parametrize(("before", "after"), list(itertools.permutations(STATES, 2)))
def test_any_transition_converges(before: str, after: str) -> None:
    built = converge(STATES[before])
    final = converge(STATES[after], built)
    if after == "empty":
        assert final.typed.veths == {} and final.typed.host_routes == frozenset()
        assert final.typed.workloads == {} and final.netns == frozenset()


def test_a_remote_port_moving_hosts_moves_its_route() -> None:
    built = converge(STATES["routed"])
    moved = _host(_routed([RP1], [("100.64.1.21", "198.18.0.13")]))
    ops = [op for op in _plan_of(moved, built) if isinstance(op, SetTypedRoutes)]
    assert ops == [
        SetTypedRoutes(
            delete=(TypedRoute("100.64.1.21/32", "198.18.0.12"),),
            add=(TypedRoute("100.64.1.21/32", "198.18.0.13"),),
        )
    ]


def test_a_deleted_route_and_proxy_arp_off_are_repaired() -> None:
    from dataclasses import replace

    built = converge(STATES["routed"])
    veth = routed_veth_name(P1)
    gone = TypedRoute("100.64.1.21/32", "198.18.0.12")
    drift = replace(
        built,
        typed=replace(
            built.typed,
            host_routes=built.typed.host_routes - {gone},
            veths={veth: replace(built.typed.veths[veth], proxy_arp=False)},
        ),
    )
    assert _plan_of(STATES["routed"], drift) == [
        ConfigureRoutedHost(P1, veth, 1500),
        SetTypedRoutes(add=(gone,)),
    ]


def test_a_port_leaving_takes_its_veth_namespace_and_route() -> None:
    built = converge(STATES["routed2"])
    ops = _plan_of(_host(_routed([RP1], [("100.64.1.21", "198.18.0.13")])), built)
    veth2 = routed_veth_name(P2)
    assert DeleteNetns("h1-b") in ops and DeleteRoutedVeth(veth2) in ops
    routes = next(op for op in ops if isinstance(op, SetTypedRoutes))
    assert routes.delete == (TypedRoute("100.64.1.12/32", "", veth2),)
