"""Security groups on routed and flat ports (issue 12), rendered and converged against the
in-memory kernel: routed ports are hooked from the host's FORWARD by interface name (no
physdev: nothing is bridged), flat ports filtered in their workload namespace with a
remote group written out member by member; removing the groups removes every rule."""

from __future__ import annotations

from tests.unit.kernel_model import apply_ops
from tests.unit.test_typed_plan import F3, PHYS, R1, _flat, _host, _routed
from workers.agent.desired import Desired
from workers.agent.observed import Observed
from workers.agent.plan import plan
from workers.agent.planners.firewall import render
from workers.agent.planners.secgroups import egress_chain, group_set, ingress_chain
from workers.agent.planners.typed_fw import ROUTED_FORWARD, ROUTED_HOOK
from workers.agent.typed_state import routed_veth_name
from workers.protocol import HostState, SecurityGroupRuleState, SecurityGroupState

G, WEB = "9a000000-0000-4000-8000-000000000001", "9a000000-0000-4000-8000-000000000002"
RULES = [
    SecurityGroupRuleState(
        id="r1",
        direction="ingress",
        protocol="tcp",
        port_min=7001,
        port_max=7001,
        remote_group_id=WEB,
    ),
    SecurityGroupRuleState(id="r2", direction="egress", protocol="any"),
]
GROUPS = [
    SecurityGroupState(id=G, revision=1, rules=RULES),
    SecurityGroupState(id=WEB, revision=1, members=["100.64.1.30", "192.168.50.30"]),
]


def _state(groups: list[str] | None) -> HostState:
    rp = R1.model_copy(update={"security_group_ids": groups})
    fp = F3.model_copy(update={"security_group_ids": groups})
    state = _host(_routed([rp], []), _flat([fp]))
    return state.model_copy(update={"security_groups": GROUPS if groups else []})


def _desired(groups: list[str] | None) -> Desired:
    return Desired.build(_state(groups), "h1-", physical_interfaces=PHYS)


def test_routed_port_hooked_by_interface_and_flat_port_in_its_namespace() -> None:
    fw = render(_desired([G]))
    host = fw[None].tables["filter"]
    veth = routed_veth_name(R1.id)
    assert ROUTED_HOOK in host.hooks
    assert host.chains[ROUTED_FORWARD] == (
        f"-i {veth} -j {egress_chain(R1.id)}",
        f"-o {veth} -j {ingress_chain(R1.id)}",
    )
    assert (
        f"-p tcp -m tcp --dport 7001 -m set --match-set {group_set(WEB)} src -j ACCEPT"
        in (host.chains[ingress_chain(R1.id)])
    )
    assert group_set(WEB) in fw[None].sets
    flat = fw["h1-c"]
    assert flat.sets == {}  # no ipset in a workload's namespace
    table = flat.tables["filter"]
    assert table.hooks == (
        ("INPUT", f"-i eth0 -j {ingress_chain(F3.id)}"),
        ("OUTPUT", f"-o eth0 -j {egress_chain(F3.id)}"),
    )
    ingress = table.chains[ingress_chain(F3.id)]
    for member in ("100.64.1.30", "192.168.50.30"):
        assert f"-s {member}/32 -p tcp -m tcp --dport 7001 -j ACCEPT" in ingress
    assert ingress[-1] == "-j DROP"
    assert table.chains[egress_chain(F3.id)][0] == f"! -s {F3.ip}/32 -j DROP"


def test_groups_converge_and_go_away_with_nothing_left() -> None:
    built = apply_ops(Observed(), plan(_desired([G]), Observed()))
    assert plan(_desired([G]), built) == []
    assert ROUTED_FORWARD in built.firewall[None].tables["filter"].chains
    assert "h1-c" in built.firewall
    unfiltered = apply_ops(built, plan(_desired(None), built))
    assert plan(_desired(None), unfiltered) == []
    host = unfiltered.firewall.get(None)
    assert host is None or ROUTED_FORWARD not in host.tables["filter"].chains


def test_no_group_on_a_typed_port_means_no_rules() -> None:
    fw = render(_desired(None))
    assert ROUTED_FORWARD not in fw[None].tables["filter"].chains and "h1-c" not in fw
