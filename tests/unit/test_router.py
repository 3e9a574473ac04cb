"""The router planner and the NAT renderer: pure matrices, no root, no kernel.

The central property again: after applying plan(d, o) to o in the in-memory kernel,
planning once more yields nothing, for every router shape and every transition
between them (a FIP moved, SNAT off, a leg removed, the router gone).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.unit.kernel_model import ModelKernel, apply_ops
from workers.agent import dispatch, names
from workers.agent.delta import delta_scope
from workers.agent.desired import Desired
from workers.agent.observed import Observed, RouterRouteObs
from workers.agent.plan import plan
from workers.agent.planners.nat import (
    POST,
    PRE,
    Announce,
    FlushConntrack,
    RestoreRouterRuleset,
    dnat_pairs,
    render_router,
)
from workers.agent.planners.ports import CreateNetns, DeleteNetns
from workers.agent.planners.router import (
    ConfigureRouter,
    CreateLeg,
    DeleteLeg,
    EnsureExtBridge,
    want_routes,
)
from workers.protocol import (
    ExternalGatewayState,
    FloatingIpState,
    HostState,
    PortState,
    Route,
    RouterInterfaceState,
    RouterState,
    SubnetState,
)

R1 = "40e70000-0000-4000-8000-0000000000a1"
R2 = "40e70000-0000-4000-8000-0000000000b2"
S1, S2 = "5a1b0000-0000-4000-8000-000000000001", "5a1b0000-0000-4000-8000-000000000002"
L1, L2 = "1e900000-0000-4000-8000-000000000001", "1e900000-0000-4000-8000-000000000002"
EXT = "e7000000-0000-4000-8000-000000000001"
EXT2 = "e7000000-0000-4000-8000-000000000002"
F1, F2 = "f1000000-0000-4000-8000-000000000001", "f1000000-0000-4000-8000-000000000002"
PREFIX = "h1-"
GW_DEV = names.router_gateway_name(R1)


def subnet(sid: str, n: int) -> SubnetState:
    return SubnetState(
        id=sid, revision=1, vni=100 + n, cidr=f"10.{n}.0.0/24", gateway_ip=f"10.{n}.0.1"
    )


def leg(sid: str, pid: str, n: int) -> RouterInterfaceState:
    return RouterInterfaceState(
        subnet_id=sid,
        port_id=pid,
        port_revision=1,
        gateway_ip=f"10.{n}.0.1",
        prefixlen=24,
        mac=f"02:00:00:00:00:0{n}",
    )


GW = ExternalGatewayState(
    external_network_id=EXT,
    cidr="203.0.113.0/24",
    gateway_ip="203.0.113.1",
    external_ip="203.0.113.5",
)


def fip(fid: str, address: str, fixed: str) -> FloatingIpState:
    return FloatingIpState(id=fid, revision=1, address=address, fixed_ip=fixed, port_id="p")


def router(**kw: object) -> RouterState:
    base: dict[str, object] = {
        "id": R1,
        "revision": 1,
        "interfaces": [leg(S1, L1, 1), leg(S2, L2, 2)],
        "external_gateway": GW,
        "routes": [Route(destination="172.16.0.0/16", nexthop="10.1.0.9")],
        "floating_ips": [fip(F1, "203.0.113.10", "10.1.0.5")],
    }
    base.update(kw)
    return RouterState.model_validate(base)


def doc(*routers: RouterState) -> HostState:
    return HostState(
        host="h1",
        revision=1,
        vtep_ip="198.18.0.11",
        subnets=[subnet(S1, 1), subnet(S2, 2)],
        routers=list(routers),
    )


def desire(state: HostState, ext: str | None = "ext0") -> Desired:
    return Desired.build(state, PREFIX, external_interface=ext)


def converge(state: HostState, observed: Observed | None = None) -> Observed:
    d = desire(state)
    out = apply_ops(observed or Observed(), plan(d, observed or Observed()))
    assert plan(d, out) == [], "plan after apply is not empty"
    return out


SHAPES: dict[str, HostState] = {
    "none": doc(),
    "full": doc(router()),
    "no-gateway": doc(router(external_gateway=None, floating_ips=[], routes=[])),
    "no-snat": doc(router(enable_snat=False)),
    "fip-moved": doc(router(floating_ips=[fip(F1, "203.0.113.10", "10.2.0.7")])),
    "two-fips": doc(
        router(
            floating_ips=[fip(F1, "203.0.113.10", "10.1.0.5"), fip(F2, "203.0.113.11", "10.2.0.6")]
        )
    ),
    "one-leg": doc(router(interfaces=[leg(S1, L1, 1)], floating_ips=[])),
    "two-routers": doc(
        router(interfaces=[leg(S1, L1, 1)], floating_ips=[]),
        router(
            id=R2,
            interfaces=[leg(S2, L2, 2)],
            floating_ips=[],
            routes=[],
            external_gateway=GW.model_copy(update={"external_ip": "203.0.113.6"}),
        ),
    ),
}


def test_names_fit_ifnamsiz_and_router_netns_is_recognisable() -> None:
    for name in (
        names.router_host_leg_name(L1),
        names.gateway_name(R1),
        names.external_bridge_name(EXT),
        names.router_leg_name(L1),
        names.router_gateway_name(R1),
    ):
        assert len(name) == names.IFNAMSIZ
    assert names.link_role(names.router_host_leg_name(L1)) == "leg"
    assert names.link_role(names.external_bridge_name(EXT)) == "external"
    assert names.link_kind(names.gateway_name(R1)) == "veth"
    ns = names.router_netns(PREFIX, R1)
    assert names.is_router_netns(PREFIX, ns) and not names.is_router_netns("h2-", ns)
    assert not names.is_router_netns(PREFIX, PREFIX + "vprnothex")


def test_empty_to_router_exact_shape() -> None:
    d = desire(SHAPES["full"])
    ops = plan(d, Observed())
    ns = names.router_netns(PREFIX, R1)
    assert CreateNetns(ns) in ops
    assert EnsureExtBridge(R1, name=names.external_bridge_name(EXT), interface="ext0") in ops
    legs = [op for op in ops if isinstance(op, CreateLeg)]
    assert {(op.veth, op.bridge, op.mtu) for op in legs} == {
        (names.router_host_leg_name(L1), names.bridge_name(S1), 1450),
        (names.router_host_leg_name(L2), names.bridge_name(S2), 1450),
        (names.gateway_name(R1), names.external_bridge_name(EXT), 1500),
    }
    (cfg,) = [op for op in ops if isinstance(op, ConfigureRouter)]
    assert cfg.forwarding and set(cfg.add_routes) == {
        RouterRouteObs("0.0.0.0/0", "203.0.113.1", names.router_gateway_name(R1)),
        RouterRouteObs("172.16.0.0/16", "10.1.0.9", names.router_leg_name(L1)),
    }
    # the L2 planner realises the legs' subnets (bridge + VXLAN) although no port is here
    assert set(d.needed) == {S1, S2}
    assert [op.address for op in ops if isinstance(op, Announce)] == [
        "203.0.113.10",
        "203.0.113.5",
    ]
    # the NAT tables come after the namespace, the announcement last of all
    kinds = [type(op) for op in ops]
    assert kinds.index(CreateNetns) < kinds.index(RestoreRouterRuleset) < kinds.index(Announce)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_plan_after_apply_is_empty(name: str) -> None:
    converge(SHAPES[name])


@pytest.mark.parametrize("before", sorted(SHAPES))
@pytest.mark.parametrize("after", sorted(SHAPES))
def test_any_transition_converges(before: str, after: str) -> None:
    converge(SHAPES[after], converge(SHAPES[before]))


def test_removed_router_goes_whole_with_its_namespace() -> None:
    built = converge(SHAPES["full"])
    ops = plan(desire(SHAPES["none"]), built)
    assert DeleteNetns(names.router_netns(PREFIX, R1)) in ops
    after = apply_ops(built, ops)
    assert not after.routers and not after.legs and not after.ext_bridges
    assert names.router_netns(PREFIX, R1) not in after.netns


def test_stale_router_netns_of_another_agent_is_never_deleted() -> None:
    """Only a namespace in the ledger (owned_netns) goes: prefix alone is not enough."""
    ns = names.router_netns(PREFIX, R2)
    ops = plan(desire(SHAPES["none"]), Observed(netns=frozenset({ns})))
    assert DeleteNetns(ns) not in ops


def test_fip_move_flushes_the_old_mapping_and_announces_the_new() -> None:
    built = converge(SHAPES["full"])
    ops = plan(desire(SHAPES["fip-moved"]), built)
    ns = names.router_netns(PREFIX, R1)
    assert FlushConntrack(R1, ns, address="203.0.113.10", fixed_ip="10.1.0.5") in ops
    assert Announce(R1, ns, ifname=names.router_gateway_name(R1), address="203.0.113.10") in ops
    kernel = ModelKernel(built)
    for op in ops:
        dispatch.apply(kernel, op)
    assert kernel.flushed == [("203.0.113.10", "10.1.0.5")]


def test_disassociation_removes_the_address_and_cuts_connections() -> None:
    built = converge(SHAPES["full"])
    after = apply_ops(built, plan(desire(doc(router(floating_ips=[]))), built))
    gw = after.routers[names.router_netns(PREFIX, R1)].links[names.router_gateway_name(R1)]
    assert gw.addresses == {"203.0.113.5/24"}
    ops = plan(desire(doc(router(floating_ips=[]))), built)
    assert any(isinstance(op, FlushConntrack) for op in ops)


def test_drift_a_deleted_nat_rule_and_a_deleted_leg_are_repaired() -> None:
    built = converge(SHAPES["full"])
    ns = names.router_netns(PREFIX, R1)
    fw = built.firewall[ns]
    nat = fw.tables["nat"]
    cut = replace(nat, chains={**nat.chains, POST: nat.chains[POST][1:]})
    drifted = replace(
        built, firewall={**built.firewall, ns: replace(fw, tables={**fw.tables, "nat": cut})}
    )
    ops = plan(desire(SHAPES["full"]), drifted)
    assert [type(op) for op in ops] == [RestoreRouterRuleset]
    assert plan(desire(SHAPES["full"]), apply_ops(drifted, ops)) == []

    legs = {k: v for k, v in built.legs.items() if k != names.router_host_leg_name(L2)}
    r = built.routers[ns]
    links = {k: v for k, v in r.links.items() if v.peer != names.router_host_leg_name(L2)}
    drifted = replace(built, legs=legs, routers={ns: replace(r, links=links)})
    ops = plan(desire(SHAPES["full"]), drifted)
    assert any(
        isinstance(op, CreateLeg) and op.veth == names.router_host_leg_name(L2) for op in ops
    )
    assert plan(desire(SHAPES["full"]), apply_ops(drifted, ops)) == []


def test_unrealisable_routers_are_left_alone_and_reported() -> None:
    no_ext = desire(SHAPES["full"], ext=None)
    assert "external interface" in no_ext.router_problems[R1]
    assert not [op for op in plan(no_ext, Observed()) if op.resource == ("router", R1)]
    other = router(
        id=R2,
        interfaces=[leg(S2, L2, 2)],
        floating_ips=[],
        routes=[],
        external_gateway=GW.model_copy(update={"external_network_id": EXT2}),
    )
    two = desire(doc(router(interfaces=[leg(S1, L1, 1)], floating_ips=[], routes=[]), other))
    assert "already serves" in two.router_problems[R2] and R1 not in two.router_problems
    built = converge(SHAPES["full"])
    assert all(not isinstance(op, DeleteLeg) for op in plan(desire(SHAPES["full"], None), built))


def test_delta_scope_names_the_router_that_changed() -> None:
    a, b = desire(SHAPES["full"]), desire(SHAPES["fip-moved"])
    scope = delta_scope(a, b)
    assert scope.routers == {names.router_netns(PREFIX, R1)}
    assert names.gateway_name(R1) in scope.links and "ext0" in scope.links
    assert delta_scope(a, a).routers == frozenset()


# -------------------------------------------------------------------- NAT renderer

RENDER_CASES: dict[str, tuple[RouterState, dict[str, tuple[str, ...]]]] = {
    "snat+fip+hairpin": (
        router(),
        {
            PRE: ("-d 203.0.113.10/32 -j DNAT --to-destination 10.1.0.5",),
            POST: (
                "-s 10.1.0.0/24 -d 10.1.0.5/32 -m conntrack --ctstate DNAT "
                "-j SNAT --to-source 10.1.0.1",
                "-s 10.2.0.0/24 -d 10.1.0.5/32 -m conntrack --ctstate DNAT "
                "-j SNAT --to-source 10.1.0.1",
                f"-s 10.1.0.5/32 -o {GW_DEV} -j SNAT --to-source 203.0.113.10",
                f"-s 10.1.0.0/24 -o {GW_DEV} -j SNAT --to-source 203.0.113.5",
                f"-s 10.2.0.0/24 -o {GW_DEV} -j SNAT --to-source 203.0.113.5",
            ),
        },
    ),
    "no-snat": (
        router(enable_snat=False, floating_ips=[]),
        {PRE: (), POST: ()},
    ),
    "no-gateway": (router(external_gateway=None, floating_ips=[]), {}),
}


@pytest.mark.parametrize("case", sorted(RENDER_CASES))
def test_nat_render_matrix(case: str) -> None:
    r, chains = RENDER_CASES[case]
    fw = render_router(desire(doc(r)), r)
    assert dict(fw.tables["nat"].chains) == chains
    if chains:
        assert fw.tables["nat"].hooks == (
            ("PREROUTING", f"-j {PRE}"),
            ("POSTROUTING", f"-j {POST}"),
        )
        # every SNAT but the hairpin one leaves by the gateway leg: nothing is NATed
        # between the router's own subnets
        for rule in chains[POST]:
            assert "--ctstate DNAT" in rule or f"-o {names.router_gateway_name(R1)}" in rule
        assert fw.tables["filter"].chains["vpcd-FORWARD"][-1].endswith("-j DROP")
    else:
        assert fw.tables["nat"].chains == {} and fw.tables["filter"].chains == {}


def test_dnat_pairs_read_back_what_render_wrote() -> None:
    r = SHAPES["two-fips"].routers[0]
    assert dnat_pairs(render_router(desire(SHAPES["two-fips"]), r)) == {
        ("203.0.113.10", "10.1.0.5"),
        ("203.0.113.11", "10.2.0.6"),
    }


def test_static_route_nexthop_picks_its_leg() -> None:
    r = router(routes=[Route(destination="172.16.1.0/24", nexthop="10.2.0.9")])
    assert RouterRouteObs("172.16.1.0/24", "10.2.0.9", names.router_leg_name(L2)) in want_routes(
        desire(doc(r)), r
    )


def test_a_port_may_never_use_a_router_namespace() -> None:
    """A workload netns named like a router's (vpr + 12 hex) is refused: a tenant's veth
    must never land inside a router, its own or another tenant's."""
    ns = names.router_netns("", R1)
    port = PortState(
        id="p1",
        revision=1,
        subnet_id=S1,
        netns=ns,
        mac="02:00:00:00:00:09",
        ip="10.1.0.9",
        prefixlen=24,
    )
    d = desire(doc(router()).model_copy(update={"ports": [port]}))
    assert "router namespace" in d.problems["p1"]
    assert not [op for op in plan(d, Observed()) if op.resource == ("port", "p1")]
