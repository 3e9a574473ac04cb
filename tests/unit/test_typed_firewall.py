"""Security groups on routed ports (issue 12), rendered and converged against the
in-memory kernel: hooked from the host's FORWARD by interface name (no physdev: nothing
is bridged), with the same chains and remote-group sets as any port; flat ports get no
rules (the API refuses groups on them); removing the groups removes every rule."""

from __future__ import annotations

from tests.unit.kernel_model import apply_ops
from tests.unit.test_typed_plan import F3, PHYS, R1, _flat, _host, _routed
from workers.agent.desired import Desired
from workers.agent.observed import Observed
from workers.agent.plan import plan
from workers.agent.planners.firewall import CutConntrack, render
from workers.agent.planners.secgroups import Cut, egress_chain, group_set, ingress_chain
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


def test_routed_port_hooked_by_interface_name() -> None:
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
    assert "h1-c" not in fw  # flat: the API refuses groups; the host could not enforce them


def test_groups_converge_and_go_away_with_nothing_left() -> None:
    built = apply_ops(Observed(), plan(_desired([G]), Observed()))
    assert plan(_desired([G]), built) == []
    assert ROUTED_FORWARD in built.firewall[None].tables["filter"].chains
    unfiltered = apply_ops(built, plan(_desired(None), built))
    assert plan(_desired(None), unfiltered) == []
    host = unfiltered.firewall.get(None)
    assert host is None or ROUTED_FORWARD not in host.tables["filter"].chains


def test_no_group_on_a_typed_port_means_no_rules() -> None:
    fw = render(_desired(None))
    assert ROUTED_FORWARD not in fw[None].tables["filter"].chains and "h1-c" not in fw


def test_removing_a_rule_cuts_the_flows_it_let_into_a_routed_port() -> None:
    built = apply_ops(Observed(), plan(_desired([G]), Observed()))
    narrower = _state([G]).model_copy(
        update={
            "security_groups": [
                GROUPS[0].model_copy(update={"rules": [RULES[1]]}),  # the tcp/7001 rule goes
                GROUPS[1],
            ]
        }
    )
    ops = plan(Desired.build(narrower, "h1-", physical_interfaces=PHYS), built)
    (cut,) = [op for op in ops if isinstance(op, CutConntrack)]
    assert Cut("tcp", None, R1.ip, 7001) in cut.cuts
