"""Security groups, pure: the controller's section, the agent's rendering, the plan."""

from __future__ import annotations

from dataclasses import replace

from models import Port, SecurityGroup, SecurityGroupRule, Subnet
from tests.unit.kernel_model import apply_ops
from workers.agent import names
from workers.agent.desired import Desired
from workers.agent.observed import Observed
from workers.agent.plan import plan
from workers.agent.planners.firewall import CutConntrack, FillIpsets, RestoreRuleset, SetSysctls
from workers.agent.planners.firewall import render as render_firewall
from workers.agent.planners.secgroups import (
    BUCKET_ARP,
    BUCKET_IN,
    BUCKET_OUT,
    FORWARD_CHAIN,
    HOOK,
    SYSCTLS,
    VETH_PREFIX,
    Cut,
    egress_chain,
    group_set,
    ingress_chain,
    render_security,
    rule_spec,
)
from workers.controller.compile import Inputs, build
from workers.protocol import (
    HostState,
    PortState,
    SecurityGroupRuleState,
    SecurityGroupState,
    SubnetState,
)

# ------------------------------------------------------------------ controller


def _group(gid: str, rev: int = 1) -> SecurityGroup:
    return SecurityGroup(id=gid, revision=rev, vpc_id="v", tenant_id="t", name=gid)


def _rule(rid: str, gid: str, **kw: object) -> SecurityGroupRule:
    fields = {"direction": "ingress", "protocol": "any", "port_min": None, "port_max": None}
    fields |= {"remote_cidr": None, "remote_group_id": None, **kw}
    return SecurityGroupRule(id=rid, security_group_id=gid, tenant_id="t", **fields)


def _inputs(**kw: object) -> Inputs:
    subnet = Subnet(
        id="s1", revision=1, vni=10, cidr="10.0.1.0/24", gateway_ip="10.0.1.1",
        host_routes=[], allocation_pools=[], vpc_id="v", tenant_id="t",
    )  # fmt: skip
    ports = [
        Port(
            id=pid,
            revision=1,
            subnet_id="s1",
            ip_address=ip,
            mac_address=mac,
            host="h1",
            netns=pid,
            interface_name="eth0",
            tenant_id="t",
            device_owner="",
        )
        for pid, ip, mac in (("p1", "10.0.1.2", "FA:16:3E:00:00:01"), ("p2", "10.0.1.3", "x"))
    ]
    return Inputs(host="h1", vtep_ip="198.18.0.1", ports=ports, subnets=[subnet], **kw)  # type: ignore[arg-type]


def test_section_carries_used_groups_rules_and_named_groups_members() -> None:
    state = build(
        _inputs(
            port_groups={"p1": ["web", "default"], "p2": []},
            groups=[_group("web", 3), _group("default"), _group("app", 5), _group("other")],
            rules=[
                _rule("r2", "web", protocol="tcp", port_min=80, port_max=80),
                _rule("r1", "web", remote_group_id="app"),
                _rule("r3", "default", remote_group_id="default"),
                _rule("r4", "app", direction="egress"),  # app: no local port uses it
            ],
            members={"app": ["10.0.2.9", "10.0.2.1"], "default": ["10.0.1.2"]},
        )
    )
    assert [p.security_group_ids for p in state.ports] == [["web", "default"], []]
    by_id = {g.id: g for g in state.security_groups}
    assert sorted(by_id) == ["app", "default", "web"]  # "other" is nobody's business here
    assert [r.id for r in by_id["web"].rules] == ["r1", "r2"] and by_id["web"].revision == 3
    assert by_id["web"].members == []  # no rule names it
    assert by_id["app"].rules == [] and by_id["app"].members == ["10.0.2.1", "10.0.2.9"]
    assert by_id["default"].members == ["10.0.1.2"]


def test_without_the_section_ports_carry_no_group_ids() -> None:
    state = build(_inputs(port_groups={"p1": ["web"]}, groups=[_group("web")]))
    wire = state.wire(("subnets", "ports"))
    assert "security_groups" not in wire
    assert all("security_group_ids" not in p for p in wire["ports"])
    assert state.wire(("subnets", "ports", "security_groups"))["ports"][0]["security_group_ids"]


# ----------------------------------------------------------------------- agent


def rule(direction: str = "ingress", protocol: str = "any", **kw: object) -> SecurityGroupRuleState:
    return SecurityGroupRuleState(id="r", direction=direction, protocol=protocol, **kw)  # type: ignore[arg-type]


def test_rule_specs_are_in_iptables_save_form() -> None:
    assert rule_spec(rule(), "ACCEPT") == "-j ACCEPT"
    assert rule_spec(rule(remote_cidr="0.0.0.0/0"), "ACCEPT") == "-j ACCEPT"
    assert (
        rule_spec(rule(protocol="tcp", port_min=80, port_max=90, remote_cidr="10.1.2.3/16"), "X")
        == "-s 10.1.0.0/16 -p tcp -m tcp --dport 80:90 -j X"
    )
    assert rule_spec(rule(protocol="udp", port_min=53, port_max=53), "X") == (
        "-p udp -m udp --dport 53 -j X"
    )
    assert rule_spec(rule("egress", "icmp", remote_cidr="10.0.0.5"), "RETURN") == (
        "-d 10.0.0.5/32 -p icmp -j RETURN"
    )
    assert rule_spec(rule("egress", remote_group_id="g"), "RETURN") == (
        f"-m set --match-set {group_set('g')} dst -j RETURN"
    )
    assert rule_spec(rule(remote_cidr="2001:db8::/32"), "ACCEPT") is None  # never matches v4


def _port(pid: str, n: int, groups: list[str] | None) -> PortState:
    return PortState(
        id=pid, revision=1, subnet_id="s1", netns=f"ns{n}", mac=f"02:00:00:00:00:0{n}",
        ip=f"10.0.1.{n}", prefixlen=24, security_group_ids=groups,
    )  # fmt: skip


def _desired(ports: list[PortState], groups: list[SecurityGroupState], rev: int = 1) -> Desired:
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
            security_groups=groups,
        )
    )


def test_port_chains_default_group_no_group_and_unfiltered() -> None:
    default = SecurityGroupState(
        id="d", revision=1, rules=[rule(remote_group_id="d"), rule("egress")], members=["10.0.1.2"]
    )
    ports = [_port("p2", 2, ["d"]), _port("p3", 3, []), _port("p4", 4, None)]
    chains, hooks, sets = render_security(_desired(ports, [default]))
    assert hooks == (HOOK,)
    assert sets[group_set("d")].members == {"10.0.1.2"}
    spoof = [
        "-m mac ! --mac-source 02:00:00:00:00:02 -j DROP",
        "-s 0.0.0.0/32 -d 255.255.255.255/32 -p udp -m udp --sport 68 --dport 67 -j RETURN",
        "! -s 10.0.1.2/32 -j DROP",
        "-p udp -m udp --sport 68 --dport 67 -j RETURN",  # DHCP, whatever the groups say
        "-p udp -m udp --sport 67 --dport 68 -j DROP",  # no rogue DHCP server
    ]
    state = ["-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"]
    state.append("-m conntrack --ctstate INVALID -j DROP")
    assert chains[egress_chain("p2")] == (*spoof, *state, "-j RETURN", "-j DROP")
    assert chains[ingress_chain("p2")] == (
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-m conntrack --ctstate INVALID -j DROP",
        "-p udp -m udp --sport 67 --dport 68 -j ACCEPT",
        f"-m set --match-set {group_set('d')} src -j ACCEPT",
        "-j DROP",
    )
    assert chains[egress_chain("p3")][-1] == "-j RETURN"  # no group: anything goes out
    assert chains[ingress_chain("p3")][-1] == "-j DROP" and len(chains[ingress_chain("p3")]) == 4
    assert egress_chain("p4") not in chains  # port security off: not filtered
    veth = names.host_veth_name("p2")
    digit = veth[len(VETH_PREFIX)]
    buckets = chains[FORWARD_CHAIN]  # egress buckets first, then ingress, by wildcard
    half = len(buckets) // 2
    assert all("--physdev-in" in j for j in buckets[:half])
    assert all("--physdev-out" in j for j in buckets[half:])
    assert (
        f"-m physdev --physdev-in {VETH_PREFIX}{digit}+ --physdev-is-bridged -j "
        + (BUCKET_OUT + digit)
        in buckets[:half]
    )
    assert any(veth in j and egress_chain("p2") in j for j in chains[BUCKET_OUT + digit])
    assert any(veth in j and ingress_chain("p2") in j for j in chains[BUCKET_IN + digit])
    jumps = [j for b in buckets for j in chains[b.split()[-1]]]
    assert len(jumps) == 4  # p2 and p3 are filtered, each an egress and an ingress jump


def test_rule_count_is_flat_in_group_size_and_a_member_change_swaps_a_set() -> None:
    def rendered(members: int) -> Desired:
        g = SecurityGroupState(
            id="g",
            revision=1,
            rules=[rule(remote_group_id="g")],
            members=[f"10.0.{i // 250}.{i % 250 + 1}" for i in range(members)],
        )
        return _desired([_port("p2", 2, ["g"])], [g])

    small, big = render_firewall(rendered(10)), render_firewall(rendered(1000))
    assert small[None].tables == big[None].tables
    assert len(big[None].sets[group_set("g")].members) == 1000
    observed = apply_ops(Observed(), plan(rendered(10), Observed()))
    ops = plan(rendered(11), observed)
    assert [type(op) for op in ops] == [FillIpsets]
    gone = plan(rendered(9), observed)
    assert [type(op) for op in gone] == [FillIpsets, CutConntrack]
    assert gone[1].cuts == (Cut(orig_src="10.0.0.10"), Cut(orig_dst="10.0.0.10"))  # type: ignore[attr-defined]


def test_sysctls_first_and_a_removed_rule_cuts_its_flows() -> None:
    g1 = SecurityGroupState(
        id="g", revision=1,
        rules=[rule(protocol="tcp", port_min=22, port_max=22), rule(protocol="icmp")],
    )  # fmt: skip
    want = _desired([_port("p2", 2, ["g"])], [g1])
    ops = plan(want, Observed())
    assert isinstance(ops[0], SetSysctls) and dict(ops[0].values) == SYSCTLS
    observed = apply_ops(Observed(), ops)
    assert plan(want, observed) == []
    g2 = g1.model_copy(update={"revision": 2, "rules": [rule(protocol="icmp")]})
    ops = plan(_desired([_port("p2", 2, ["g"])], [g2], rev=2), observed)
    assert [type(op) for op in ops] == [RestoreRuleset, CutConntrack]
    assert ops[1].cuts == (Cut(proto="tcp", orig_dst="10.0.1.2", dport=22),)  # type: ignore[attr-defined]
    # Nothing is cut when a port (with its chains) goes: its flows go with it.
    assert not [
        op for op in plan(_desired([], [g2], rev=3), observed) if isinstance(op, CutConntrack)
    ]


# ------------------------------------------------------------------ network ACLs


def test_acl_section_lists_the_acls_of_the_host_subnets_in_rule_order() -> None:
    from models import NetworkAcl, NetworkAclEntry

    inputs = _inputs()
    subnet = inputs.subnets[0]
    subnet.network_acl_id = "acl"

    def e(n: int, direction: str) -> NetworkAclEntry:
        return NetworkAclEntry(
            id=f"e{n}{direction}", network_acl_id="acl", rule_number=n, direction=direction,
            action="allow", protocol="any", cidr="0.0.0.0/0", tenant_id="t",
        )  # fmt: skip

    state = build(
        replace(
            inputs,
            acls=[NetworkAcl(id="acl", revision=4, vpc_id="v", tenant_id="t")],
            acl_entries=[e(200, "ingress"), e(100, "egress"), e(100, "ingress")],
        )
    )
    (acl,) = state.network_acls
    assert (acl.id, acl.revision, acl.subnet_ids) == ("acl", 4, ["s1"])
    assert [(x.direction, x.rule_number) for x in acl.entries] == [
        ("egress", 100),
        ("ingress", 100),
        ("ingress", 200),
    ]


def test_acl_chains_in_rule_number_order_first_match_wins() -> None:
    from workers.agent.planners.nacls import HOOK as ACL_HOOK
    from workers.agent.planners.nacls import egress_chain as acl_out
    from workers.agent.planners.nacls import ingress_chain as acl_in
    from workers.protocol import NetworkAclEntryState, NetworkAclState

    def e(n: int, direction: str, action: str, **kw: object) -> NetworkAclEntryState:
        return NetworkAclEntryState(
            rule_number=n, direction=direction, action=action,  # type: ignore[arg-type]
            protocol=kw.pop("protocol", "any"), cidr=kw.pop("cidr", "0.0.0.0/0"), **kw,  # type: ignore[arg-type]
        )  # fmt: skip

    entries = [
        e(200, "ingress", "allow"),
        e(100, "ingress", "deny", protocol="tcp", port_min=22, cidr="10.0.0.0/8"),
        e(100, "egress", "allow", protocol="udp", port_min=53, port_max=54),
    ]
    state = _desired([_port("p2", 2, None)], []).state
    doc = state.model_copy(
        update={
            "network_acls": [
                NetworkAclState(id="a", revision=1, subnet_ids=["s1"], entries=entries)
            ]
        }
    )
    fw = render_firewall(Desired.build(doc))[None].tables["filter"]
    assert fw.chains[acl_in("a")] == (
        "-s 10.0.0.0/8 -p tcp -m tcp --dport 22 -j DROP",
        "-j RETURN",
        "-j DROP",
    )
    assert fw.chains[acl_out("a")] == ("-p udp -m udp --dport 53:54 -j RETURN", "-j DROP")
    assert fw.hooks[-1] == ACL_HOOK  # the only filter on this unfiltered port
    sg = render_firewall(_desired([_port("p2", 2, [])], []))[None].tables["filter"]
    both = render_firewall(Desired.build(doc.model_copy(update={"ports": [_port("p2", 2, [])]})))
    hooks = both[None].tables["filter"].hooks
    assert hooks.index(ACL_HOOK) < hooks.index(HOOK)  # ACLs first, as on AWS
    assert ACL_HOOK not in sg.hooks


def test_arp_chains_in_ebtables_and_their_restore_text() -> None:
    from workers.agent.planners.secgroups import ARP_CHAIN, ARP_HOOK, ARP_TABLE
    from workers.agent.ruleset import Ruleset, restore_text

    fw = render_firewall(_desired([_port("p2", 2, []), _port("p4", 4, None)], []))[None]
    arp = fw.tables[ARP_TABLE]
    veth = names.host_veth_name("p2")
    bucket = BUCKET_ARP + veth[len(VETH_PREFIX)]
    (chain,) = [c for c in arp.chains if c not in (ARP_CHAIN, bucket)]
    assert arp.hooks == (ARP_HOOK,)
    assert arp.chains[ARP_CHAIN] == (f"-p ARP -i {veth[:4]}+ -j {bucket}",)
    assert arp.chains[bucket] == (f"-p ARP -i {veth} -j {chain}",)  # p4 is not filtered
    assert arp.chains[chain] == (
        "-p ARP --arp-ip-src ! 10.0.1.2 -j DROP",
        "-p ARP --arp-mac-src ! 02:00:00:00:00:02 -j DROP",
    )
    text = restore_text(ARP_TABLE, arp, Ruleset())
    assert text is not None and text.startswith(f"*filter\n:{ARP_CHAIN} RETURN\n")
    assert f"-I FORWARD 1 -p ARP -j {ARP_CHAIN}" in text
    observed = apply_ops(Observed(), plan(_desired([_port("p2", 2, [])], []), Observed()))
    assert plan(_desired([_port("p2", 2, [])], []), observed) == []  # converged, eb table too
