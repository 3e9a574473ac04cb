"""Network ACLs on routed subnets (issue 12: "security groups and ACLs apply as on any
port"), rendered and converged against the in-memory kernel: a routed port's veth is
hooked into its subnet's ACL chains by interface name (nothing is bridged), before the
groups' hook as for VXLAN ports; flat ports get none; the controller sends a routed
subnet's ACL, not a flat one's; routed filtering alone sets strict TCP tracking."""

from __future__ import annotations

from dataclasses import replace

from tests.unit.kernel_model import apply_ops
from tests.unit.test_typed_plan import F3, PHYS, R1, F, R, _flat, _host, _routed
from tests.unit.test_typed_section import _inputs, _subnet
from workers.agent.desired import Desired
from workers.agent.observed import Observed
from workers.agent.plan import plan
from workers.agent.planners import nacls, typed_fw
from workers.agent.planners.firewall import SetSysctls, render
from workers.agent.planners.secgroups import SYSCTLS
from workers.agent.ruleset import TCP_LOOSE
from workers.agent.typed_state import routed_veth_name
from workers.controller.sections import network_acls_section
from workers.protocol import (
    HostState,
    NetworkAclEntryState,
    NetworkAclState,
    SecurityGroupRuleState,
    SecurityGroupState,
)

A = "7ac10000-0000-4000-8000-000000000001"
G = "7ac10000-0000-4000-8000-000000000002"
ENTRIES = [
    NetworkAclEntryState(
        rule_number=100,
        direction="ingress",
        action="deny",
        protocol="tcp",
        port_min=7001,
        port_max=7001,
        cidr="0.0.0.0/0",
    ),
    NetworkAclEntryState(
        rule_number=200, direction="ingress", action="allow", protocol="any", cidr="0.0.0.0/0"
    ),
    NetworkAclEntryState(
        rule_number=100, direction="egress", action="allow", protocol="any", cidr="0.0.0.0/0"
    ),
]
GROUP = SecurityGroupState(
    id=G, revision=1, rules=[SecurityGroupRuleState(id="r", direction="ingress", protocol="any")]
)


def _state(acl: bool, groups: list[str] | None = None) -> HostState:
    rp = R1.model_copy(update={"security_group_ids": groups})
    state = _host(_routed([rp], [("100.64.1.21", "198.18.0.12")]), _flat([F3]))
    return state.model_copy(
        update={
            "network_acls": [NetworkAclState(id=A, revision=1, subnet_ids=[R, F], entries=ENTRIES)]
            if acl
            else [],
            "security_groups": [GROUP] if groups else [],
        }
    )


def _desired(acl: bool, groups: list[str] | None = None) -> Desired:
    return Desired.build(_state(acl, groups), "h1-", physical_interfaces=PHYS)


def test_routed_port_hooked_into_its_subnet_acl_by_interface_name() -> None:
    fw = render(_desired(True))[None]
    host = fw.tables["filter"]
    veth = routed_veth_name(R1.id)
    assert host.chains[nacls.ROUTED_CHAIN] == (
        f"-i {veth} -j {nacls.egress_chain(A)}",
        f"-o {veth} -j {nacls.ingress_chain(A)}",
    )
    assert host.chains[nacls.ingress_chain(A)] == (
        "-p tcp -m tcp --dport 7001 -j DROP",
        "-j RETURN",
        "-j DROP",
    )
    assert nacls.ROUTED_HOOK in host.hooks
    # Nothing bridged here (the flat port's traffic never crosses the host's netfilter).
    assert nacls.HOOK not in host.hooks and nacls.FORWARD_CHAIN not in host.chains
    assert fw.sysctls == {TCP_LOOSE: "0"}  # stateless, but flows a cut forgot stay INVALID
    # The flat subnet alone: nothing on the host could enforce its ACL, so nothing at all.
    alone = _host(_flat([F3])).model_copy(update={"network_acls": _state(True).network_acls})
    flat = render(Desired.build(alone, "h1-", physical_interfaces=PHYS))[None]
    assert flat.tables["filter"].chains == {} and flat.sysctls == {}


def test_acl_hook_before_the_groups_hook_as_for_vxlan_ports() -> None:
    hooks = render(_desired(True, [G]))[None].tables["filter"].hooks
    assert hooks.index(nacls.ROUTED_HOOK) < hooks.index(typed_fw.ROUTED_HOOK)
    # In the kernel too, whichever came first: groups first, then the ACL associated.
    grouped = apply_ops(Observed(), plan(_desired(False, [G]), Observed()))
    assert plan(_desired(False, [G]), grouped) == []
    both = apply_ops(grouped, plan(_desired(True, [G]), grouped))
    assert plan(_desired(True, [G]), both) == []
    kernel = both.firewall[None].tables["filter"].hooks
    assert kernel.index(nacls.ROUTED_HOOK) < kernel.index(typed_fw.ROUTED_HOOK)


def test_acl_converges_and_its_removal_leaves_nothing() -> None:
    built = apply_ops(Observed(), plan(_desired(True), Observed()))
    assert plan(_desired(True), built) == []
    assert nacls.ROUTED_CHAIN in built.firewall[None].tables["filter"].chains
    gone = apply_ops(built, plan(_desired(False), built))
    assert plan(_desired(False), gone) == []
    host = gone.firewall.get(None)
    left = host.tables.get("filter") if host is not None else None
    assert left is None or not (
        {nacls.ROUTED_CHAIN, nacls.ingress_chain(A), nacls.egress_chain(A)} & set(left.chains)
        or nacls.ROUTED_HOOK in left.hooks
    )


def test_routed_groups_alone_set_strict_tcp_tracking() -> None:
    want = _desired(False, [G])
    assert render(want)[None].sysctls == {TCP_LOOSE: SYSCTLS[TCP_LOOSE]}
    (op,) = [op for op in plan(want, Observed()) if isinstance(op, SetSysctls)]
    assert op.values == ((TCP_LOOSE, "0"),)
    assert render(_desired(False))[None].sysctls == {}  # no filtering: nothing to set


def test_controller_sends_a_routed_subnets_acl_not_a_flat_ones() -> None:
    from models import NetworkAcl, NetworkAclEntry

    inputs = _inputs()
    routed, flat = inputs.typed_subnets
    routed.network_acl_id, flat.network_acl_id = "acl-r", "acl-f"
    acls = [NetworkAcl(id=a, revision=2, vpc_id="v", tenant_id="t") for a in ("acl-f", "acl-r")]
    entry = NetworkAclEntry(
        id="e", network_acl_id="acl-r", rule_number=100, direction="ingress", action="deny",
        protocol="tcp", port_min=7001, port_max=7001, cidr="0.0.0.0/0", tenant_id="t",
    )  # fmt: skip
    vx = _subnet("v1", "vxlan", "10.0.1.0/24", network_acl_id="acl-r")
    doc = network_acls_section(
        replace(inputs, subnets=[vx, routed], acls=acls, acl_entries=[entry])
    )
    # Each subnet once (a routed one that also came as a VXLAN-side subnet, say a VIP's).
    assert [(a.id, a.subnet_ids) for a in doc] == [("acl-r", ["r", "v1"])]
    assert [(e.action, e.protocol, e.port_min) for e in doc[0].entries] == [("deny", "tcp", 7001)]
