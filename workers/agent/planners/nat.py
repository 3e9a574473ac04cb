"""NAT in each router namespace (DESIGN §4), rendered whole and diffed like the firewall.

`render(desired)` is pure: per router namespace, our chains in the nat table (hooked
from PREROUTING and POSTROUTING) and a forward guard in the filter table.

- Floating IP: `-d FIP -j DNAT` to the fixed IP, from outside and from the router's own
  legs alike (hairpin); the fixed IP leaving by the gateway leg is SNATed to the FIP;
  a hairpinned flow (DNATed, from one of the router's subnets) is SNATed to the leg's
  gateway IP, so the answer comes back through the router and is un-NATed.
- SNAT: with `enable_snat`, the router's subnets leaving by the gateway leg are SNATed
  to its external IP. Nothing is NATed between the router's own subnets (every SNAT but
  the hairpin one matches `-o` the gateway leg).
- Forward guard: from the external network only replies and DNATed flows are forwarded,
  so a hand-added route on the outside never reaches a private subnet.

`plan_nat` restores a table whose state differs (one iptables-restore each), deletes the
conntrack entries of a floating IP mapping that went (an established connection is cut),
and sends a gratuitous ARP for a floating IP newly mapped here and for a new external IP.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import ClassVar

from workers.agent import names
from workers.agent.desired import Desired
from workers.agent.observed import Observed, RouterObs, Scope
from workers.agent.ops import Op, Phase
from workers.agent.ruleset import NetnsFirewall, Ruleset, restore_text
from workers.protocol import RouterState

PRE, POST, FWD = "vpcd-PREROUTING", "vpcd-POSTROUTING", "vpcd-FORWARD"
TABLES = ("nat", "filter")
_DNAT_RE = re.compile(r"^-d (\S+)/32 -j DNAT --to-destination (\S+)\Z")


@dataclass(frozen=True)
class _NatOp(Op):
    router_id: str
    netns: str

    @property
    def resource(self) -> tuple[str, str] | None:
        return ("router", self.router_id)

    def scope(self) -> Scope:
        return Scope(firewall=frozenset({self.netns}))


@dataclass(frozen=True)
class RestoreRouterRuleset(_NatOp):
    """One `iptables-restore --noflush` of our chains and hooks in one router table."""

    PHASE: ClassVar[Phase] = Phase.RESTORE_ROUTER_RULESET
    table: str = ""
    text: str = ""

    @property
    def target(self) -> str:
        return f"{self.netns}/{self.table}"


@dataclass(frozen=True)
class FlushConntrack(_NatOp):
    """Delete the entries of a floating IP mapping that went: flows to the FIP, and the
    fixed IP's flows SNATed to it."""

    PHASE: ClassVar[Phase] = Phase.FLUSH_CONNTRACK
    address: str = ""
    fixed_ip: str = ""

    @property
    def target(self) -> str:
        return f"{self.netns}/{self.address}"


@dataclass(frozen=True)
class Announce(_NatOp):
    """A gratuitous ARP for `address` from the router's gateway leg."""

    PHASE: ClassVar[Phase] = Phase.ANNOUNCE
    ifname: str = ""
    address: str = ""

    @property
    def target(self) -> str:
        return f"{self.netns}/{self.address}"

    def scope(self) -> Scope:
        return Scope()  # nothing to observe: an announcement leaves no state


def _net(cidr: str) -> str:
    return str(ipaddress.ip_network(cidr, strict=False))


def render_router(desired: Desired, r: RouterState) -> NetnsFirewall:
    """Our nat and filter tables in one router namespace."""
    gw = r.external_gateway
    if gw is None:
        return NetnsFirewall(tables={t: Ruleset() for t in TABLES})
    dev = names.router_gateway_name(r.id)
    legs = [(ipaddress.ip_network(desired.subnets[i.subnet_id].cidr), i) for i in r.interfaces]
    inside = [str(net) for net, _ in legs]
    pre: list[str] = []
    post: list[str] = []
    egress: list[str] = []
    for f in r.floating_ips:
        pre.append(f"-d {f.address}/32 -j DNAT --to-destination {f.fixed_ip}")
        hop = next((i for net, i in legs if ipaddress.ip_address(f.fixed_ip) in net), None)
        if hop is not None:
            post += [
                f"-s {c} -d {f.fixed_ip}/32 -m conntrack --ctstate DNAT "
                f"-j SNAT --to-source {hop.gateway_ip}"
                for c in inside
            ]
        egress.append(f"-s {f.fixed_ip}/32 -o {dev} -j SNAT --to-source {f.address}")
    if r.enable_snat:
        egress += [f"-s {c} -o {dev} -j SNAT --to-source {gw.external_ip}" for c in inside]
    nat = Ruleset(
        chains={PRE: tuple(pre), POST: tuple(post + egress)},
        hooks=(("PREROUTING", f"-j {PRE}"), ("POSTROUTING", f"-j {POST}")),
    )
    guard = Ruleset(
        chains={
            FWD: (
                f"-i {dev} -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT",
                f"-i {dev} -j DROP",
            )
        },
        hooks=(("FORWARD", f"-j {FWD}"),),
    )
    return NetnsFirewall(tables={"nat": nat, "filter": guard})


def render(desired: Desired) -> dict[str | None, NetnsFirewall]:
    """Per realisable router's namespace, its rendered NAT and forward guard."""
    return {desired.router_netns[r.id]: render_router(desired, r) for r in desired.routers}


def tables(desired: Desired) -> dict[str | None, tuple[str, ...]]:
    """The tables observe must read per router namespace."""
    return {desired.router_netns[r.id]: TABLES for r in desired.routers}


def dnat_pairs(fw: NetnsFirewall) -> set[tuple[str, str]]:
    """(floating IP, fixed IP) of the DNAT rules in our PREROUTING chain."""
    rules = fw.tables.get("nat", Ruleset()).chains.get(PRE, ())
    return {(m.group(1), m.group(2)) for m in map(_DNAT_RE.match, rules) if m is not None}


def plan_nat(desired: Desired, observed: Observed) -> list[Op]:
    ops: list[Op] = []
    for r in desired.routers:
        ns = desired.router_netns[r.id]
        want = render_router(desired, r)
        have = observed.firewall.get(ns, NetnsFirewall())
        for table in TABLES:
            text = restore_text(table, want.tables[table], have.tables.get(table, Ruleset()))
            if text is not None:
                ops.append(RestoreRouterRuleset(r.id, ns, table=table, text=text))
        wanted, mapped = dnat_pairs(want), dnat_pairs(have)
        ops += [FlushConntrack(r.id, ns, address=a, fixed_ip=x) for a, x in sorted(mapped - wanted)]
        if r.external_gateway is None:
            continue
        dev = names.router_gateway_name(r.id)
        link = (observed.routers.get(ns) or RouterObs(ns)).links.get(dev)
        present = {a.split("/")[0] for a in link.addresses} if link is not None else set()
        fresh = {a for a, _ in wanted - mapped}
        if r.external_gateway.external_ip not in present:
            fresh.add(r.external_gateway.external_ip)
        ops += [Announce(r.id, ns, ifname=dev, address=a) for a in sorted(fresh)]
    return ops
