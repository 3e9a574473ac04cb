"""A one-port change on a host full of filtered ports touches only that port's rules.

The planner's restore inputs are read line by line: the other ports' chains are never
named (so never flushed nor refilled), the jump chains get a positioned insert or
delete, and the group's set one add or delete; the in-memory kernel model then checks
that the result reads exactly as desired (a converged plan).
"""

from __future__ import annotations

from tests.unit.kernel_model import apply_ops
from workers.agent import names
from workers.agent.desired import Desired
from workers.agent.observed import Observed
from workers.agent.plan import plan
from workers.agent.planners import secgroups
from workers.agent.planners.firewall import CutConntrack, FillIpsets, RestoreRuleset
from workers.agent.planners.secgroups import (
    ARP_TABLE,
    BUCKET_ARP,
    BUCKET_IN,
    BUCKET_OUT,
    VETH_PREFIX,
    egress_chain,
    group_set,
    ingress_chain,
)
from workers.agent.ruleset import IpsetState, chain_edits, ipset_update_text
from workers.protocol import (
    HostState,
    PortState,
    SecurityGroupRuleState,
    SecurityGroupState,
    SubnetState,
)

COUNT = 40


def _port(n: int) -> PortState:
    return PortState(
        id=f"port-{n:03d}", revision=1, subnet_id="s1", netns=f"ns{n}",
        mac=f"02:00:00:00:01:{n:02x}", ip=f"10.0.1.{n + 2}", prefixlen=24,
        security_group_ids=["d"],
    )  # fmt: skip


def _desired(ports: list[PortState], rev: int) -> Desired:
    default = SecurityGroupState(
        id="d",
        revision=1,
        rules=[
            SecurityGroupRuleState(
                id="r1", direction="ingress", protocol="any", remote_group_id="d"
            ),
            SecurityGroupRuleState(id="r2", direction="egress", protocol="any"),
        ],
        members=[p.ip for p in ports],
    )
    subnet = SubnetState(
        id="s1", revision=1, vni=10, cidr="10.0.1.0/24", gateway_ip="10.0.1.1",
        remote_vteps=["198.18.0.2"],
    )  # fmt: skip
    return Desired.build(
        HostState(
            host="h1",
            revision=rev,
            vtep_ip="198.18.0.1",
            subnets=[subnet],
            ports=ports,
            security_groups=[default],
        )
    )


def _arp_chain(port: PortState) -> str:
    return f"vpcd-a-{names.host_veth_name(port.id)[3:]}"


def _buckets(port: PortState) -> tuple[str, str, str]:
    """The bucket chains holding the port's jumps: egress, ingress, ARP."""
    digit = names.host_veth_name(port.id)[len(VETH_PREFIX)]
    return BUCKET_OUT + digit, BUCKET_IN + digit, BUCKET_ARP + digit


def _port_chains(port: PortState) -> set[str]:
    return {egress_chain(port.id), ingress_chain(port.id), _arp_chain(port)}


def _named_chains(text: str) -> set[str]:
    """Every vpcd chain a restore input names (declares, fills, edits or removes)."""
    words = (word.lstrip(":") for line in text.splitlines() for word in line.split()[:2])
    return {word for word in words if word.startswith("vpcd-")}


def _firewall_ops(ops: list[object]) -> dict[str, str]:
    return {op.table: op.text for op in ops if isinstance(op, RestoreRuleset)}


def test_adding_a_port_restores_only_its_chains_and_inserts_its_jumps() -> None:
    ports = [_port(n) for n in range(COUNT)]
    observed = apply_ops(Observed(), plan(_desired(ports, 1), Observed()))
    new = _port(COUNT)
    assert any(_buckets(p) == _buckets(new) for p in ports)  # its buckets exist already
    grown = [*ports[:17], new, *ports[17:]]  # documents keep their own order
    ops = plan(_desired(grown, 2), observed)
    texts = _firewall_ops(ops)
    assert set(texts) == {"filter", ARP_TABLE}
    filt = texts["filter"]
    named = _named_chains(filt)
    out, into, arp_bucket = _buckets(new)
    assert named == {out, into, egress_chain(new.id), ingress_chain(new.id)}
    assert f":{out}" not in filt and f":{into}" not in filt  # buckets edited, never flushed
    jumps = [line for line in filt.splitlines() if line.startswith((f"-I {out} ", f"-I {into} "))]
    assert len(jumps) == 2 and all(names.host_veth_name(new.id) in j for j in jumps)
    arp = texts[ARP_TABLE]
    assert _named_chains(arp) == {arp_bucket, _arp_chain(new)}
    assert f":{arp_bucket}" not in arp
    assert not any(ch in filt + arp for p in ports for ch in _port_chains(p))
    (fill,) = [op for op in ops if isinstance(op, FillIpsets)]
    assert fill.text == f"add {group_set('d')} {new.ip} -exist\n"
    after = apply_ops(observed, ops)
    assert plan(_desired(grown, 2), after) == []


def test_removing_a_port_deletes_its_jumps_by_position_and_only_its_chains() -> None:
    ports = [_port(n) for n in range(COUNT)]
    observed = apply_ops(Observed(), plan(_desired(ports, 1), Observed()))
    gone = ports[23]
    rest = [p for p in ports if p is not gone]
    ops = plan(_desired(rest, 2), observed)
    filt = _firewall_ops(ops)["filter"]
    out, into, _ = _buckets(gone)
    assert any(_buckets(p) == _buckets(gone) for p in rest)  # its buckets stay
    assert _named_chains(filt) == {out, into, egress_chain(gone.id), ingress_chain(gone.id)}
    deletes = [line for line in filt.splitlines() if line.startswith((f"-D {out} ", f"-D {into} "))]
    assert len(deletes) == 2 and all(line.split()[-1].isdigit() for line in deletes)
    assert f"-X {egress_chain(gone.id)}" in filt and f"-X {ingress_chain(gone.id)}" in filt
    (fill,) = [op for op in ops if isinstance(op, FillIpsets)]
    assert fill.text == f"del {group_set('d')} {gone.ip} -exist\n"
    (cut,) = [op for op in ops if isinstance(op, CutConntrack)]
    assert {c.orig_src or c.orig_dst for c in cut.cuts} == {gone.ip}
    assert plan(_desired(rest, 2), apply_ops(observed, ops)) == []


def test_chain_edits_fall_back_to_a_refill_when_order_or_size_says_so() -> None:
    have = tuple(f"-s 10.0.0.{i}/32 -j RETURN" for i in range(20))
    assert chain_edits("vpcd-x", (*have[:5], "-j DROP", *have[5:]), have) == ["-I vpcd-x 6 -j DROP"]
    assert chain_edits("vpcd-x", have[:3] + have[4:], have) == ["-D vpcd-x 4"]
    assert chain_edits("vpcd-x", (have[1], have[0], *have[2:]), have) == []  # moved
    assert chain_edits("vpcd-x", have[:4], have) == []  # most went: flush and refill
    assert chain_edits("vpcd-x", have, ()) == []  # a new chain is filled whole
    assert chain_edits("vpcd-x", (*have, have[0]), have) == []  # duplicates: no positions


def test_ipset_update_adds_a_few_members_and_rebuilds_a_new_or_much_changed_set() -> None:
    old = IpsetState("vpcd-g-1", "hash:ip", frozenset(f"10.0.0.{i}" for i in range(1, 21)))
    one_more = IpsetState(old.name, old.type, old.members | {"10.0.0.99"})
    assert ipset_update_text([one_more], {old.name: old}) == "add vpcd-g-1 10.0.0.99 -exist\n"
    few = IpsetState(old.name, old.type, frozenset({"10.0.0.1"}))
    rebuilt = ipset_update_text([few], {old.name: old})
    assert "swap vpcd-g-1-tmp vpcd-g-1" in rebuilt and "del " not in rebuilt
    assert "swap" in ipset_update_text([old], {})


def test_a_bucket_of_jumps_is_edited_in_place_however_small() -> None:
    one, two = "-m physdev --physdev-in vpta1 -j A", "-m physdev --physdev-in vpta2 -j B"
    assert chain_edits(f"{BUCKET_OUT}a", (one, two), (one,)) == [f"-I {BUCKET_OUT}a 2 {two}"]
    assert chain_edits(f"{BUCKET_ARP}a", (two,), (one, two)) == [f"-D {BUCKET_ARP}a 1"]
    assert chain_edits(secgroups.FORWARD_CHAIN, (one, two), (one,)) == [  # buckets' parent
        f"-I {secgroups.FORWARD_CHAIN} 2 {two}"
    ]
    assert chain_edits("vpcd-INPUT", (one, two), (one,)) == []  # elsewhere: refilled
