"""plan(desired, observed): pure matrices, no root, no kernel.

`apply_ops` below is an in-memory model of what each op does to the kernel (the same
contract the drivers implement), so the central property can be checked for many
states: after applying plan(d, o) to o, planning again yields nothing.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from tests.unit.kernel_model import apply_ops
from workers.agent import names
from workers.agent.delta import delta_scope as _delta_scope
from workers.agent.desired import Desired
from workers.agent.observed import (
    ZERO_MAC,
    BridgeObs,
    FdbEntry,
    HostVethObs,
    Observed,
    RouteObs,
    Scope,
)
from workers.agent.ops import Op
from workers.agent.plan import plan as _plan
from workers.agent.planners.firewall import DestroyIpsets, FillIpsets, RestoreRuleset
from workers.agent.planners.l2 import (
    AddFdb,
    ConfigureBridge,
    ConfigureVxlan,
    CreateBridge,
    CreateVxlan,
    DeleteBridge,
    DeleteVxlan,
    DelFdb,
)
from workers.agent.planners.ports import (
    ConfigureHostVeth,
    ConfigurePort,
    CreateNetns,
    CreatePort,
    DeleteNetns,
    DeletePort,
)
from workers.protocol import HostState, PortState, RemotePort, Route, SubnetState

VTEP = "10.0.0.1"
S1 = "5a1b0000-0000-4000-8000-000000000001"
S2 = "5a1b0000-0000-4000-8000-000000000002"
P1 = "90e70000-0000-4000-8000-000000000001"
P2 = "90e70000-0000-4000-8000-000000000002"
P3 = "90e70000-0000-4000-8000-000000000003"


def subnet(sid: str = S1, **kw: object) -> SubnetState:
    base: dict[str, object] = {
        "id": sid,
        "revision": 1,
        "vni": 100 if sid == S1 else 200,
        "cidr": "192.168.1.0/24" if sid == S1 else "192.168.2.0/24",
        "gateway_ip": "192.168.1.1" if sid == S1 else "192.168.2.1",
        "remote_vteps": ["10.0.0.2", "10.0.0.3"],
        "remote_ports": [
            RemotePort(mac="02:AA:00:00:00:02", ip="192.168.1.20", vtep_ip="10.0.0.2")
        ],
    }
    base.update(kw)
    return SubnetState.model_validate(base)


def port(pid: str = P1, sid: str = S1, **kw: object) -> PortState:
    n = int(pid[-1])
    base: dict[str, object] = {
        "id": pid,
        "revision": 1,
        "subnet_id": sid,
        "netns": f"ns{n}",
        "mac": f"02:00:00:00:00:0{n}",
        "ip": f"192.168.{1 if sid == S1 else 2}.{10 + n}",
        "prefixlen": 24,
    }
    base.update(kw)
    return PortState.model_validate(base)


def host(subnets: list[SubnetState], ports: list[PortState], revision: int = 1) -> HostState:
    return HostState(host="h1", revision=revision, vtep_ip=VTEP, subnets=subnets, ports=ports)


EMPTY = Observed()


def plan(desired: HostState, observed: Observed, *, netns_prefix: str = "") -> list[Op]:
    return _plan(Desired.build(desired, netns_prefix), observed)


def port_problems(desired: HostState) -> dict[str, str]:
    return dict(Desired.build(desired).problems)


def delta_scope(prev: HostState, new: HostState) -> Scope:
    return _delta_scope(Desired.build(prev), Desired.build(new))


def l2_and_ports(ops: list[Op]) -> list[Op]:
    """The ops of the link domains (the firewall's have their own tests)."""
    return [op for op in ops if not isinstance(op, FillIpsets | RestoreRuleset | DestroyIpsets)]


def converge(desired: HostState, observed: Observed = EMPTY) -> Observed:
    return apply_ops(observed, plan(desired, observed))


BR1, VX1, BR2, VX2 = (
    names.bridge_name(S1),
    names.vxlan_name(S1),
    names.bridge_name(S2),
    names.vxlan_name(S2),
)
VE1, VE2, VE3 = names.host_veth_name(P1), names.host_veth_name(P2), names.host_veth_name(P3)
DEFAULT = RouteObs("0.0.0.0/0", "192.168.1.1")


# --------------------------------------------------------------------- names


def test_names_fit_ifnamsiz_are_stable_and_owned() -> None:
    for make in (names.bridge_name, names.vxlan_name, names.host_veth_name):
        name = make(S1)
        assert len(name) == names.IFNAMSIZ
        assert name == make(S1) and name != make(S2)
        assert names.is_owned_link(name)
    assert {names.link_kind(BR1), names.link_kind(VX1), names.link_kind(VE1)} == {
        "bridge",
        "vxlan",
        "veth",
    }
    # Ids sharing a long prefix (time-ordered UUIDs) still get distinct names.
    assert (
        len({names.host_veth_name(f"0190aaaa-bbbb-7ccc-8ddd-00000000{i:04x}") for i in range(500)})
        == 500
    )


@pytest.mark.parametrize(
    "name",
    [
        "eth0",
        "br0",
        "vpb",
        "vpb12345678901",
        "vpb1234567890123",
        "vpbABCDEF123456",
        "vpq123456789012",
    ],
)
def test_foreign_link_names_are_not_owned(name: str) -> None:
    assert not names.is_owned_link(name)


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", "-x", "x" * 49, "ns\n"])
def test_workload_netns_rejects_unsafe_names(bad: str) -> None:
    with pytest.raises(ValueError):
        names.workload_netns("h1-", bad)
    assert names.workload_netns("h1-", "web") == "h1-web"
    assert names.workload_netns("", "web") == "web"


# ------------------------------------------------------------ build, teardown


def test_empty_to_full_build_exact_ops() -> None:
    s = subnet(routed=True, host_routes=[Route(destination="10.9.0.0/16", nexthop="192.168.1.254")])
    ops = plan(host([s], [port()]), EMPTY)
    # The underlay guard first (its set, then its rules; tests/unit/test_firewall.py)...
    assert [type(op) for op in ops[:2]] == [FillIpsets, RestoreRuleset]
    assert l2_and_ports(ops) == [
        CreateNetns("ns1"),
        CreateBridge(BR1, S1, mtu=1450),
        CreateVxlan(VX1, S1, vni=100, local=VTEP, dstport=4789, mtu=1450, bridge=BR1),
        AddFdb(VX1, ZERO_MAC, "10.0.0.2", S1),
        AddFdb(VX1, ZERO_MAC, "10.0.0.3", S1),
        AddFdb(VX1, "02:aa:00:00:00:02", "10.0.0.2", S1),
        CreatePort(
            P1, veth=VE1, bridge=BR1, netns="ns1", ifname="eth0", mac="02:00:00:00:00:01", mtu=1450
        ),
        ConfigurePort(
            P1,
            netns="ns1",
            ifname="eth0",
            up=True,
            add_addresses=("192.168.1.11/24",),
            add_routes=(DEFAULT, RouteObs("10.9.0.0/16", "192.168.1.254")),
            routes=(DEFAULT, RouteObs("10.9.0.0/16", "192.168.1.254")),
        ),
    ]


def test_unrouted_subnet_gets_no_default_route() -> None:
    ops = plan(host([subnet()], [port()]), EMPTY)
    config = [op for op in ops if isinstance(op, ConfigurePort)]
    assert config[0].add_routes == () and config[0].routes == ()


def test_full_to_empty_teardown() -> None:
    desired = host([subnet(), subnet(S2)], [port(P1), port(P2, S2)])
    built = converge(desired)
    ops = plan(host([], []), built)
    # ...the guard goes after the last VXLAN device (tests/unit/test_firewall.py)
    assert [type(op) for op in ops[-2:]] == [RestoreRuleset, DestroyIpsets]
    assert l2_and_ports(ops) == [
        DeleteNetns("ns1"),
        DeleteNetns("ns2"),
        *sorted([DeletePort(VE1), DeletePort(VE2)], key=Op.sort_key),
        *sorted([DeleteVxlan(VX1), DeleteVxlan(VX2)], key=Op.sort_key),
        *sorted([DeleteBridge(BR1), DeleteBridge(BR2)], key=Op.sort_key),
    ]
    assert apply_ops(built, ops) == Observed(netns=frozenset(), owned_netns=frozenset())


def test_netns_not_created_by_agent_is_used_but_never_deleted() -> None:
    foreign = Observed(netns=frozenset({"ns1"}))  # exists, not in the ledger
    ops = plan(host([subnet()], [port()]), foreign)
    assert not any(isinstance(op, CreateNetns) for op in ops)
    built = apply_ops(foreign, ops)
    teardown = plan(host([], []), built)
    assert not any(isinstance(op, DeleteNetns) for op in teardown)
    assert apply_ops(built, teardown).netns == {"ns1"}


def test_netns_kept_while_another_desired_port_uses_it() -> None:
    shared = [port(P1), port(P2, netns="ns1", interface_name="eth1")]
    built = converge(host([subnet()], shared))
    ops = plan(host([subnet()], shared[:1]), built)
    assert ops == [DeletePort(VE2)]


def test_removing_last_port_of_a_subnet_removes_its_bridge_and_vxlan_only() -> None:
    both = host([subnet(), subnet(S2)], [port(P1), port(P2, S2)])
    built = converge(both)
    # The controller may still list S2 (e.g. a remote port there); no local port: gone.
    ops = plan(host([subnet(), subnet(S2)], [port(P1)]), built)
    assert ops == [DeleteNetns("ns2"), DeletePort(VE2), DeleteVxlan(VX2), DeleteBridge(BR2)]


# --------------------------------------------------------------- idempotence

STATES = {
    "one port": host([subnet()], [port()]),
    "routed + host routes": host(
        [
            subnet(
                routed=True, host_routes=[Route(destination="10.8.0.0/16", nexthop="192.168.1.9")]
            )
        ],
        [port()],
    ),
    "two subnets, three ports, shared netns": host(
        [subnet(), subnet(S2, remote_vteps=[], remote_ports=[])],
        [port(P1), port(P2, S2, netns="ns1", interface_name="eth1"), port(P3)],
    ),
    "own vtep listed as remote is ignored": host(
        [subnet(remote_vteps=[VTEP, "10.0.0.2"])], [port()]
    ),
    "no remote hosts": host([subnet(remote_vteps=[], remote_ports=[])], [port()]),
    "empty": host([], []),
}


@pytest.mark.parametrize("name", STATES)
def test_plan_after_apply_is_empty(name: str) -> None:
    desired = STATES[name]
    assert plan(desired, converge(desired)) == []


@pytest.mark.parametrize("before", STATES)
@pytest.mark.parametrize("after", STATES)
def test_any_transition_converges(before: str, after: str) -> None:
    start = converge(STATES[before])
    end = converge(STATES[after], start)
    assert plan(STATES[after], end) == []
    assert end == converge(STATES[after])


# --------------------------------------------------------------------- drift

BASE = host([subnet(routed=True)], [port()])


def built() -> Observed:
    return converge(BASE)


def drift(**changes: object) -> Observed:
    return replace(built(), **changes)  # type: ignore[arg-type]


def with_workload(**changes: object) -> Observed:
    obs = built()
    return replace(obs, workloads={P1: replace(obs.workloads[P1], **changes)})  # type: ignore[arg-type]


DRIFT: dict[str, tuple[Observed, list[Op]]] = {
    "bridge deleted": (
        drift(
            bridges={},
            vxlans={VX1: replace(built().vxlans[VX1], master=None)},
            veths={VE1: replace(built().veths[VE1], master=None)},
        ),
        [
            CreateBridge(BR1, S1, mtu=1450),
            ConfigureVxlan(VX1, S1, mtu=1450, bridge=BR1),
            ConfigureHostVeth(P1, veth=VE1, bridge=BR1, mtu=1450),
        ],
    ),
    "bridge down": (
        drift(bridges={BR1: BridgeObs(BR1, 1450, False)}),
        [ConfigureBridge(BR1, S1, mtu=1450)],
    ),
    "vxlan mtu changed": (
        drift(vxlans={VX1: replace(built().vxlans[VX1], mtu=1500)}),
        [ConfigureVxlan(VX1, S1, mtu=1450, bridge=BR1)],
    ),
    "vxlan learning turned on: recreate with its fdb": (
        drift(vxlans={VX1: replace(built().vxlans[VX1], learning=True)}),
        [
            DeleteVxlan(VX1, S1),
            CreateVxlan(VX1, S1, vni=100, local=VTEP, mtu=1450, bridge=BR1),
            AddFdb(VX1, ZERO_MAC, "10.0.0.2", S1),
            AddFdb(VX1, ZERO_MAC, "10.0.0.3", S1),
            AddFdb(VX1, "02:aa:00:00:00:02", "10.0.0.2", S1),
        ],
    ),
    "fdb entries deleted": (
        drift(fdb=frozenset({FdbEntry(VX1, ZERO_MAC, "10.0.0.2")})),
        [
            AddFdb(VX1, ZERO_MAC, "10.0.0.3", S1),
            AddFdb(VX1, "02:aa:00:00:00:02", "10.0.0.2", S1),
        ],
    ),
    "stale fdb entries": (
        drift(
            fdb=built().fdb
            | {FdbEntry(VX1, ZERO_MAC, "10.0.0.9"), FdbEntry(VX1, "02:bb:00:00:00:09", "10.0.0.9")}
        ),
        [
            DelFdb(VX1, ZERO_MAC, "10.0.0.9", S1),
            DelFdb(VX1, "02:bb:00:00:00:09", "10.0.0.9", S1),
        ],
    ),
    "host veth deleted (takes the workload end with it)": (
        drift(veths={}, workloads={}),
        [
            CreatePort(
                P1,
                veth=VE1,
                bridge=BR1,
                netns="ns1",
                ifname="eth0",
                mac="02:00:00:00:00:01",
                mtu=1450,
            ),
            ConfigurePort(
                P1,
                netns="ns1",
                ifname="eth0",
                up=True,
                add_addresses=("192.168.1.11/24",),
                add_routes=(DEFAULT,),
                routes=(DEFAULT,),
            ),
        ],
    ),
    "host veth detached and down": (
        drift(veths={VE1: HostVethObs(VE1, None, 1450, False)}),
        [ConfigureHostVeth(P1, veth=VE1, bridge=BR1, mtu=1450)],
    ),
    "workload address changed": (
        with_workload(addresses=frozenset({"192.168.1.99/24"}), routes=frozenset()),
        [
            ConfigurePort(
                P1,
                netns="ns1",
                ifname="eth0",
                del_addresses=("192.168.1.99/24",),
                add_addresses=("192.168.1.11/24",),
                add_routes=(DEFAULT,),
                routes=(DEFAULT,),
            )
        ],
    ),
    "workload mtu, mac and state changed": (
        with_workload(mtu=1500, mac="02:00:00:00:00:99", up=False),
        [
            ConfigurePort(
                P1,
                netns="ns1",
                ifname="eth0",
                mac="02:00:00:00:00:01",
                mtu=1450,
                up=True,
                routes=(DEFAULT,),
            )
        ],
    ),
    "default route removed, stray route of ours added": (
        with_workload(routes=frozenset({RouteObs("10.7.0.0/16", "192.168.1.7")})),
        [
            ConfigurePort(
                P1,
                netns="ns1",
                ifname="eth0",
                del_routes=(RouteObs("10.7.0.0/16", "192.168.1.7"),),
                add_routes=(DEFAULT,),
                routes=(DEFAULT,),
            )
        ],
    ),
    "workload netns deleted by hand": (
        drift(netns=frozenset(), owned_netns=frozenset(), workloads={}),
        [
            DeletePort(VE1, P1),
            CreateNetns("ns1"),
            CreatePort(
                P1,
                veth=VE1,
                bridge=BR1,
                netns="ns1",
                ifname="eth0",
                mac="02:00:00:00:00:01",
                mtu=1450,
            ),
            ConfigurePort(
                P1,
                netns="ns1",
                ifname="eth0",
                up=True,
                add_addresses=("192.168.1.11/24",),
                add_routes=(DEFAULT,),
                routes=(DEFAULT,),
            ),
        ],
    ),
}


@pytest.mark.parametrize("case", DRIFT)
def test_drift_is_repaired(case: str) -> None:
    observed, expected = DRIFT[case]
    ops = plan(BASE, observed)
    assert ops == expected
    assert plan(BASE, apply_ops(observed, ops)) == []


def test_port_moved_to_another_netns_is_recreated() -> None:
    moved = host([subnet(routed=True)], [port(netns="other")])
    ops = plan(moved, built())
    assert [type(op) for op in ops] == [
        DeleteNetns,
        DeletePort,
        CreateNetns,
        CreatePort,
        ConfigurePort,
    ]
    assert ops[0] == DeleteNetns("ns1") and ops[1] == DeletePort(VE1, P1)
    assert plan(moved, apply_ops(built(), ops)) == []


def test_remote_port_moving_host_replaces_its_fdb_entry() -> None:
    moved = host(
        [
            subnet(
                routed=True,
                remote_ports=[
                    RemotePort(mac="02:aa:00:00:00:02", ip="192.168.1.20", vtep_ip="10.0.0.3")
                ],
            )
        ],
        [port()],
    )
    ops = plan(moved, built())
    assert ops == [
        DelFdb(VX1, "02:aa:00:00:00:02", "10.0.0.2", S1),
        AddFdb(VX1, "02:aa:00:00:00:02", "10.0.0.3", S1),
    ]


def test_vtep_change_recreates_vxlan() -> None:
    moved = BASE.model_copy(update={"vtep_ip": "10.0.0.50"})
    ops = plan(moved, built())
    assert ops[:2] == [
        DeleteVxlan(VX1, S1),
        CreateVxlan(VX1, S1, vni=100, local="10.0.0.50", mtu=1450, bridge=BR1),
    ]
    assert plan(moved, apply_ops(built(), ops)) == []


# ----------------------------------------------------------- foreign objects


def test_foreign_objects_are_never_targets() -> None:
    observed = replace(
        built(),
        # fdb entries on a device that is not ours, a netns someone else made
        fdb=built().fdb | {FdbEntry("vxlan0", ZERO_MAC, "10.0.0.9")},
        netns=built().netns | {"someone-elses"},
    )
    assert plan(BASE, observed) == []
    teardown = plan(host([], []), observed)
    targets = {op.target for op in teardown}
    assert "vxlan0" not in targets and "someone-elses" not in targets
    assert targets == {"ns1", VE1, VX1, BR1, "host/filter", "host/raw", "host/ipset"}


def test_unrealisable_ports_are_left_alone_and_reported() -> None:
    desired = host(
        [subnet()],
        [
            port(P1),
            port(P2, sid="not-here"),
            port(P3, netns="../../etc"),
        ],
    )
    problems = port_problems(desired)
    assert set(problems) == {P2, P3}
    assert "not in this host's state" in problems[P2] and "invalid netns" in problems[P3]
    # Their veths exist from an earlier state: they are not deleted as stale either.
    observed = replace(
        converge(host([subnet()], [port(P1)])),
        veths={
            **converge(host([subnet()], [port(P1)])).veths,
            VE2: HostVethObs(VE2, BR1, 1450, True),
            VE3: HostVethObs(VE3, BR1, 1450, True),
        },
    )
    assert plan(desired, observed) == []


def test_duplicate_interface_in_one_netns_is_a_problem_for_the_later_port() -> None:
    desired = host([subnet()], [port(P2, netns="ns1"), port(P1)])
    assert set(port_problems(desired)) == {P2}


# ------------------------------------------------------------- determinism


def test_plan_is_deterministic_whatever_the_input_order() -> None:
    desired = STATES["two subnets, three ports, shared netns"]
    expected = plan(desired, EMPTY)
    assert [op.PHASE for op in expected] == sorted(op.PHASE for op in expected)
    rng = random.Random(7)
    half = converge(host(desired.subnets[:1], desired.ports[:1]))
    for _ in range(20):
        shuffled = desired.model_copy(
            update={
                "subnets": rng.sample(desired.subnets, len(desired.subnets)),
                "ports": rng.sample(desired.ports, len(desired.ports)),
            }
        )
        assert plan(shuffled, EMPTY) == expected
        reordered = replace(
            half,
            fdb=frozenset(rng.sample(sorted(half.fdb), len(half.fdb))),
            veths=dict(rng.sample(sorted(half.veths.items()), len(half.veths))),
        )
        assert plan(shuffled, reordered) == plan(desired, half)


def test_netns_prefix_applies_to_workload_namespaces_only() -> None:
    ops = plan(host([subnet()], [port()]), EMPTY, netns_prefix="h1-")
    assert CreateNetns("h1-ns1") in ops
    created = [op for op in ops if isinstance(op, CreatePort)]
    assert created[0].netns == "h1-ns1" and created[0].veth == VE1


# --------------------------------------------- incremental observation scope


def test_delta_scope_names_exactly_what_changed() -> None:
    before = host([subnet()], [port(P1), port(P2)])
    # a new port
    after = before.model_copy(update={"revision": 2, "ports": [*before.ports, port(P3)]})
    assert delta_scope(before, after) == Scope(
        links=frozenset({VE3}), ports=frozenset({P3}), netns=frozenset({"ns3"})
    )
    # an fdb-only subnet change touches the vxlan device, not the ports
    fdb_only = before.model_copy(
        update={"revision": 2, "subnets": [subnet(remote_vteps=["10.0.0.2"], revision=2)]}
    )
    assert delta_scope(before, fdb_only) == Scope(links=frozenset({BR1, VX1}))
    # a gateway change touches every port of the subnet
    routed = before.model_copy(update={"revision": 2, "subnets": [subnet(routed=True)]})
    scope = delta_scope(before, routed)
    assert scope.ports == {P1, P2} and {VE1, VE2, BR1, VX1} <= scope.links
    # the last port of a subnet leaving takes the subnet's devices into scope
    gone = before.model_copy(update={"revision": 2, "ports": []})
    assert {BR1, VX1, VE1, VE2} <= delta_scope(before, gone).links
    # nothing changed: nothing to look at
    assert not delta_scope(before, before.model_copy(update={"revision": 2}))


def test_merged_replaces_only_the_scoped_objects() -> None:
    old = converge(host([subnet()], [port(P1), port(P2)]))
    part = Observed(veths={}, workloads={}, netns=frozenset({"ns2"}))
    scope = Scope(links=frozenset({VE1}), ports=frozenset({P1}), netns=frozenset({"ns1"}))
    merged = old.merged(part, scope)
    assert set(merged.veths) == {VE2} and set(merged.workloads) == {P2}
    assert merged.netns == {"ns2"} and merged.owned_netns == {"ns2"}
    assert merged.bridges == old.bridges and merged.fdb == old.fdb


def test_a_netns_is_never_shared_between_tenants() -> None:
    mine = port(P1, netns="web", tenant_id="tenant-a")
    theirs = port(P2, netns="web", interface_name="eth1", tenant_id="tenant-b")
    also_mine = port(P3, netns="web", interface_name="eth2", tenant_id="tenant-a")
    problems = port_problems(host([subnet()], [mine, theirs, also_mine]))
    assert set(problems) == {P2} and "another tenant" in problems[P2]
    ops = plan(host([subnet()], [mine, theirs, also_mine]), EMPTY)
    made = {op.port_id for op in ops if isinstance(op, CreatePort)}
    assert made == {P1, P3}  # the other tenant's interface is not put into the netns
