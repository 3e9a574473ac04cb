"""Firewall and NAT as whole rulesets (DESIGN §4), rendered from `Desired` and diffed.

`render(desired)` is the pure renderer: per namespace (None = the host's), our part of
each table it uses and our ipsets. `plan_firewall` compares that with what observe
parsed from iptables-save / ipset save and emits at most one op per table (a whole
`iptables-restore --noflush` input) and per namespace for the sets, never per rule.

Content so far, the underlay guard: in the host namespace's filter table, VXLAN (UDP
4789) is accepted on INPUT only from known VTEPs, the ipset `vpcd-vteps` holding every
other host the document names (flood lists and remote ports); other UDP 4789 is
dropped. A host that carries no subnet has no VXLAN device and keeps no rules at all.
The underlay's VXLAN is also exempt from conntrack (`-j CT --notrack` in the raw table,
on PREROUTING and OUTPUT): it is stateless UDP that the guard above judges per packet,
and once security groups load conntrack into the host namespace, tracking every
encapsulated packet as well as the inner flow it carries costs throughput for nothing.

Network ACLs (planners/nacls.py) and security groups (planners/secgroups.py) add their
chains, hooks (ACLs first) and sets to the same filter table, and the sysctls they need
(routed ports' too, hooked by interface name: planners/typed_fw.py);
removing an allow rule or a remote-group member also cuts the conntrack entries it let
through (after the new rules are in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from workers.agent.desired import Desired
from workers.agent.observed import Observed, Scope
from workers.agent.ops import Op, Phase
from workers.agent.planners import nacls
from workers.agent.planners.l2 import VXLAN_PORT
from workers.agent.planners.nacls import render_acls
from workers.agent.planners.secgroups import (
    ARP_TABLE,
    FORWARD_CHAIN,
    SYSCTLS,
    Cut,
    conntrack_cuts,
    render_arp,
    render_security,
)
from workers.agent.planners.typed_fw import ROUTED_FORWARD, render_routed_security, with_routed
from workers.agent.planners.udp import LB_TABLES, udp_ruleset
from workers.agent.ruleset import (
    TCP_LOOSE,
    IpsetState,
    NetnsFirewall,
    Ruleset,
    changed_sets,
    ipset_update_text,
    restore_text,
    stale_sets,
)

HOST: None = None  # the host namespace, whatever its name on this machine
VTEP_SET = "vpcd-vteps"
INPUT_CHAIN = "vpcd-INPUT"
RAW_CHAIN = "vpcd-RAW"
# Every table a netns uses: iptables' filter and raw, and ebtables' (ARP anti-spoofing).
TABLES: dict[str | None, tuple[str, ...]] = {HOST: ("filter", "raw", ARP_TABLE)}


def _where(netns: str | None) -> str:
    return "host" if netns is None else netns


@dataclass(frozen=True)
class _NetnsOp(Op):
    """An op on one namespace's firewall state; WHAT names the part it touches."""

    WHAT: ClassVar[str] = ""
    netns: str | None

    @property
    def target(self) -> str:
        return f"{_where(self.netns)}/{self.WHAT}"

    def scope(self) -> Scope:
        return Scope(firewall=frozenset({self.netns}))


@dataclass(frozen=True)
class FillIpsets(_NetnsOp):
    """Rebuild the named sets under temporary names and swap them in (one ipset restore)."""

    PHASE: ClassVar[Phase] = Phase.FILL_IPSETS
    WHAT: ClassVar[str] = "ipset"
    names: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class RestoreRuleset(_NetnsOp):
    """One `iptables-restore --noflush` of our chains and hooks in one table."""

    PHASE: ClassVar[Phase] = Phase.RESTORE_RULESET
    table: str
    text: str

    @property
    def target(self) -> str:
        return f"{_where(self.netns)}/{self.table}"


@dataclass(frozen=True)
class RestoreNetnsRuleset(RestoreRuleset):
    """The same, in a namespace the agent makes (a load balancer's): after it exists."""

    PHASE: ClassVar[Phase] = Phase.RESTORE_NETNS_RULESET


@dataclass(frozen=True)
class DestroyIpsets(_NetnsOp):
    """Remove our sets that nothing desired uses any more (after the rules did)."""

    PHASE: ClassVar[Phase] = Phase.DESTROY_IPSETS
    WHAT: ClassVar[str] = "ipset"
    names: tuple[str, ...]


@dataclass(frozen=True)
class SetSysctls(_NetnsOp):
    """Kernel settings the firewall depends on (br_netfilter's call into iptables)."""

    PHASE: ClassVar[Phase] = Phase.SET_SYSCTLS
    WHAT: ClassVar[str] = "sysctl"
    values: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class CutConntrack(_NetnsOp):
    """Forget the flows a removed allow rule or remote-group member let through."""

    PHASE: ClassVar[Phase] = Phase.CUT_CONNTRACK
    WHAT: ClassVar[str] = "conntrack"
    cuts: tuple[Cut, ...]

    def scope(self) -> Scope:
        return Scope()  # nothing observe reads changes


def firewall_tables(desired: Desired) -> dict[str | None, tuple[str, ...]]:
    """Every table each namespace uses: the host's filter, each load balancer's nat."""
    return TABLES | {ns: LB_TABLES for ns in desired.lb_netns.values()}


def firewall_sysctls(chains: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """What the filter chains need of the kernel: bridged (physdev) chains both settings;
    routed ports' chains (nothing bridged) only strict TCP tracking, so a segment of a
    flow a cut made conntrack forget is INVALID there too, not a new flow."""
    if FORWARD_CHAIN in chains or nacls.FORWARD_CHAIN in chains:
        return SYSCTLS
    if ROUTED_FORWARD in chains or nacls.ROUTED_CHAIN in chains:
        return {TCP_LOOSE: SYSCTLS[TCP_LOOSE]}
    return {}


# The last rendering and the Desired it is of (held, so its id is never reused): a sync
# renders one Desired three times (scope, plan, verify), each ~30 ms at 1000 ports.
_last: tuple[Desired, dict[str | None, NetnsFirewall]] | None = None


def render(desired: Desired) -> dict[str | None, NetnsFirewall]:
    """Our tables and sets per namespace; every table of `firewall_tables` is present,
    maybe empty. Callers never mutate the answer: it is shared."""
    global _last
    if _last is None or _last[0] is not desired:
        _last = (desired, _render(desired))
    return _last[1]


def _render(desired: Desired) -> dict[str | None, NetnsFirewall]:
    chains: dict[str, tuple[str, ...]] = {}
    hooks: tuple[tuple[str, str], ...] = ()
    sets: dict[str, IpsetState] = {}
    raw = Ruleset()
    if desired.needed:  # only a host with VXLAN devices has an underlay to guard
        vxlan = f"-p udp -m udp --dport {VXLAN_PORT}"
        raw = Ruleset(
            chains={RAW_CHAIN: (f"{vxlan} -j CT --notrack",)},
            hooks=(("PREROUTING", f"-j {RAW_CHAIN}"), ("OUTPUT", f"-j {RAW_CHAIN}")),
        )
        chains[INPUT_CHAIN] = (
            f"{vxlan} -m set --match-set {VTEP_SET} src -j ACCEPT",
            f"{vxlan} -j DROP",
        )
        hooks = (("INPUT", f"-j {INPUT_CHAIN}"),)
        sets[VTEP_SET] = IpsetState(VTEP_SET, "hash:ip", desired.vteps)
    acl_chains, acl_hooks = render_acls(desired)  # before security groups, as on AWS
    sg_chains, sg_hooks, sg_sets = render_security(desired)
    arp_chains, arp_hooks = render_arp(desired)
    rt_chains, rt_hooks, rt_sets = render_routed_security(desired)  # flat/routed ports
    chains.update(acl_chains)
    chains.update(sg_chains)
    sets.update(sg_sets)
    chains.update(rt_chains)
    sets.update(rt_sets)
    sg_hooks += rt_hooks
    host = {table: Ruleset() for table in TABLES[HOST]}
    host["filter"] = Ruleset(chains=chains, hooks=hooks + acl_hooks + sg_hooks)
    host["raw"] = raw
    host[ARP_TABLE] = Ruleset(chains=arp_chains, hooks=arp_hooks)
    sysctls = firewall_sysctls(chains)
    out: dict[str | None, NetnsFirewall] = {
        HOST: NetnsFirewall(tables=host, sets=sets, sysctls=sysctls)
    }
    for lb_id, lb in desired.lbs.items():
        out[desired.lb_netns[lb_id]] = NetnsFirewall(
            tables={"nat": udp_ruleset(lb, desired.udp_down)}
        )
    return out


def plan_firewall(desired: Desired, observed: Observed, scope: Scope | None = None) -> list[Op]:
    """Ops for namespaces whose observed firewall differs from the rendered one; with
    `scope`, only for the namespaces in its `firewall` (plan.py).

    A namespace missing from `observed.firewall` is taken as empty (nothing of ours).
    """
    ops: list[Op] = []
    for netns, want in render(desired).items():
        if scope is not None and netns not in scope.firewall:
            continue
        have = observed.firewall.get(netns, NetnsFirewall())
        wrong = tuple((k, v) for k, v in sorted(want.sysctls.items()) if have.sysctls.get(k) != v)
        if wrong:
            ops.append(SetSysctls(netns, wrong))
        if (want.tables, want.sets) == (have.tables, have.sets):
            continue
        fill = changed_sets(want.sets, have.sets)
        if fill:
            sets = ipset_update_text((want.sets[n] for n in fill), have.sets)
            ops.append(FillIpsets(netns, tuple(fill), sets))
        for table, rules in want.tables.items():
            text = restore_text(table, rules, have.tables.get(table, Ruleset()))
            if text is not None:
                restore = RestoreRuleset if netns is HOST else RestoreNetnsRuleset
                ops.append(restore(netns, table, text))
        stale = stale_sets(want.sets, have.sets)
        if stale:
            ops.append(DestroyIpsets(netns, tuple(stale)))
        filters = want.tables.get("filter", Ruleset()).chains
        before = have.tables.get("filter", Ruleset()).chains
        cuts = conntrack_cuts(with_routed(desired), filters, before, want.sets, have.sets)
        if cuts:
            ops.append(CutConntrack(netns, cuts))
    return ops
