"""Security groups rendered as iptables chains and ipsets (DESIGN §4), pure.

Bridged traffic passes the host namespace's FORWARD chain (br_netfilter, with
net.bridge.bridge-nf-call-iptables=1 in that namespace). One hook sends it to
`vpcd-sg-FORWARD`, which jumps, by physdev on each filtered port's host-side veth, first
to the port's egress chain (`--physdev-in`: the workload sent it) and then to the
ingress chain of the receiving port (`--physdev-out`), so traffic between two ports of
one host is checked on both ends in one pass.

- egress `vpcd-o-<token>`: anti-spoofing first (a source IP or MAC other than the
  port's is dropped, established flows included), RELATED,ESTABLISHED returns, INVALID
  drops, then the union of the port's egress rules returns; the rest is dropped. A port
  with no group may send anything.
- ingress `vpcd-i-<token>`: RELATED,ESTABLISHED accepts, INVALID drops, the union of the
  port's ingress rules accepts, the rest is dropped (a port with no group: all of it).

Allowed egress returns to FORWARD (its policy decides: vpcd never accepts traffic it
did not check on both ends). A remote group is one `hash:ip` set `vpcd-g-<token>` per
group (IPv4, the only family of tenant ports), so the rule count never depends on how
many members a group has and a member change is an `ipset` swap, no iptables-restore.
"""

from __future__ import annotations

import hashlib
import ipaddress
import shlex
from collections.abc import Callable, Mapping
from typing import NamedTuple

from workers.agent import names
from workers.agent.desired import Desired
from workers.agent.ruleset import (
    BRIDGE_NF,
    BUCKET_ARP,
    BUCKET_IN,
    BUCKET_OUT,
    EB,
    TCP_LOOSE,
    IpsetState,
)
from workers.protocol import PortState, SecurityGroupRuleState

FORWARD_CHAIN = "vpcd-sg-FORWARD"
ARP_TABLE = f"{EB}filter"
ARP_CHAIN = "vpcd-ARP"
ARP_HOOK = ("FORWARD", f"-p ARP -j {ARP_CHAIN}")
# Bucket chains of the per-port jumps (see _bucketed), by a port veth's first token digit.
VETH_PREFIX = names.PREFIX + names.PORT
HOOK = ("FORWARD", f"-m physdev --physdev-is-bridged -j {FORWARD_CHAIN}")
# Bridged IPv4 through iptables; and a TCP segment of a flow conntrack has forgotten
# (a cut) is INVALID, not picked up again as a new flow from whichever end speaks first.
SYSCTLS = {BRIDGE_NF: "1", TCP_LOOSE: "0"}
GROUP_SET_PREFIX = "vpcd-g-"
_SET = "--match-set"
_ESTABLISHED = "-m conntrack --ctstate RELATED,ESTABLISHED"
_INVALID = "-m conntrack --ctstate INVALID -j DROP"
# DHCP (the subnet's dnsmasq) works whatever a port's groups say, as in Neutron: a client
# asks from 0.0.0.0 before it has its lease, and only service ports may answer, since
# every workload's egress drops server replies. Written as iptables-save prints them.
_DHCP_DISCOVER = "-s 0.0.0.0/32 -d 255.255.255.255/32 -p udp -m udp --sport 68 --dport 67 -j RETURN"
_DHCP_CLIENT = "-p udp -m udp --sport 68 --dport 67 -j RETURN"
_DHCP_SERVER_DROP = "-p udp -m udp --sport 67 --dport 68 -j DROP"
_DHCP_OFFER = "-p udp -m udp --sport 67 --dport 68 -j ACCEPT"


def _token(port_id: str) -> str:
    return names.host_veth_name(port_id)[3:]


_PORT_CHAINS = ("vpcd-i-", "vpcd-o-")


def ingress_chain(port_id: str) -> str:
    return f"{_PORT_CHAINS[0]}{_token(port_id)}"


def egress_chain(port_id: str) -> str:
    return f"{_PORT_CHAINS[1]}{_token(port_id)}"


def group_set(group_id: str) -> str:
    """`vpcd-g-` + 12 hex digits of the group id's hash (room for the swap's `-tmp`)."""
    return GROUP_SET_PREFIX + hashlib.blake2b(group_id.encode(), digest_size=6).hexdigest()


def _cidr(value: str) -> str | None:
    """The CIDR as iptables-save prints it; None for "anything" (which it omits)."""
    net = ipaddress.ip_network(value, strict=False)
    return None if net.prefixlen == 0 else str(net)


def _ports(rule: SecurityGroupRuleState) -> str:
    low, high = rule.port_min, rule.port_max
    if low is None and high is None:
        return ""
    low, high = low or 1, high or low or 65535
    return f" --dport {low}" if low == high else f" --dport {low}:{high}"


def rule_spec(rule: SecurityGroupRuleState, target: str) -> str | None:
    """One rule in iptables-save's canonical form; None when it can match nothing
    (an IPv6 CIDR on an IPv4 port, or a remote group the document does not carry)."""
    ingress = rule.direction == "ingress"
    parts: list[str] = []
    if rule.remote_cidr is not None:
        if ipaddress.ip_network(rule.remote_cidr, strict=False).version != 4:
            return None
        cidr = _cidr(rule.remote_cidr)
        if cidr is not None:
            parts.append(f"-s {cidr}" if ingress else f"-d {cidr}")
    if rule.protocol != "any":
        parts.append(f"-p {rule.protocol}")
        if rule.protocol in ("tcp", "udp"):
            parts[-1] += f" -m {rule.protocol}{_ports(rule)}"
    if rule.remote_group_id is not None:
        where = "src" if ingress else "dst"
        parts.append(f"-m set --match-set {group_set(rule.remote_group_id)} {where}")
    parts.append(f"-j {target}")
    return " ".join(parts)


_Memo = dict[tuple[tuple[str, ...], str], tuple[str, ...]]


def _rules(
    desired: Desired, port: PortState, direction: str, target: str, memo: _Memo
) -> tuple[str, ...]:
    """The union of the port's groups' rules in one direction, each spec once (ports
    with the same groups share the answer: `memo`, one per render)."""
    key = (tuple(port.security_group_ids or ()), direction)
    if key in memo:
        return memo[key]
    out: dict[str, None] = {}
    for gid in key[0]:
        group = desired.groups.get(gid)
        for rule in group.rules if group is not None else ():
            if rule.direction != direction:
                continue
            if rule.remote_group_id is not None and rule.remote_group_id not in desired.groups:
                continue
            spec = rule_spec(rule, target)
            if spec is not None:
                out.setdefault(spec, None)
    memo[key] = tuple(out)
    return memo[key]


def port_chains(
    desired: Desired, port: PortState, memo: _Memo | None = None
) -> dict[str, tuple[str, ...]]:
    """A filtered port's two chains."""
    memo = {} if memo is None else memo
    egress = [
        f"-m mac ! --mac-source {port.mac.lower()} -j DROP",
        _DHCP_DISCOVER,  # a DHCP client has no address yet: from 0.0.0.0, own MAC only
        f"! -s {port.ip}/32 -j DROP",
        _DHCP_CLIENT,  # renewals, whatever the groups say (as Neutron allows)
        _DHCP_SERVER_DROP,  # a workload never answers as a DHCP server
        f"{_ESTABLISHED} -j RETURN",
        _INVALID,
    ]
    if port.security_group_ids:
        egress += [*_rules(desired, port, "egress", "RETURN", memo), "-j DROP"]
    else:
        egress.append("-j RETURN")
    ingress = [f"{_ESTABLISHED} -j ACCEPT", _INVALID, _DHCP_OFFER]
    ingress += [*_rules(desired, port, "ingress", "ACCEPT", memo), "-j DROP"]
    return {egress_chain(port.id): tuple(egress), ingress_chain(port.id): tuple(ingress)}


class _Parts(NamedTuple):
    """Everything a filtered port contributes to the host's tables."""

    veth: str  # its host end
    chains: dict[str, tuple[str, ...]]  # its egress and ingress chains
    jump_out: str  # its line in FORWARD_CHAIN to the egress chain
    jump_in: str  # and to the ingress chain
    arp_chain: str
    arp_rules: tuple[str, ...]
    arp_jump: str


_PartsKey = tuple[str, str, str, bool, tuple[str, ...], tuple[str, ...]]
# The last render's parts by port id. A port's parts are a function of its key alone (id,
# MAC, IP, whether it has groups, the union of its groups' rules each way), so a port
# whose key is unchanged gets the very same objects again: at 1000 ports a one-port
# change renders one port, and the diffs downstream (plan, chain edits, conntrack cuts)
# compare the other 999 by identity. Swapped whole per render: it never outgrows a host.
_parts: dict[str, tuple[_PartsKey, _Parts]] = {}


def _port_parts(desired: Desired, port: PortState, memo: _Memo, fresh: dict) -> _Parts:
    key: _PartsKey = (
        port.id,
        port.mac,
        port.ip,
        bool(port.security_group_ids),
        _rules(desired, port, "egress", "RETURN", memo),
        _rules(desired, port, "ingress", "ACCEPT", memo),
    )
    cached = _parts.get(port.id)
    if cached is not None and cached[0] == key:
        fresh[port.id] = cached
        return cached[1]
    veth = names.host_veth_name(port.id)
    arp_chain = f"vpcd-a-{_token(port.id)}"
    parts = _Parts(
        veth=veth,
        chains=port_chains(desired, port, memo),
        jump_out=f"-m physdev --physdev-in {veth} --physdev-is-bridged -j {egress_chain(port.id)}",
        jump_in=f"-m physdev --physdev-out {veth} --physdev-is-bridged -j {ingress_chain(port.id)}",
        arp_chain=arp_chain,
        arp_rules=(
            f"-p ARP --arp-ip-src ! {port.ip} -j DROP",
            f"-p ARP --arp-mac-src ! {port.mac.lower()} -j DROP",
        ),
        arp_jump=f"-p ARP -i {veth} -j {arp_chain}",
    )
    fresh[port.id] = (key, parts)
    return parts


_last: tuple[Desired, list[_Parts], _Memo] | None = None  # held: its id is never reused


def _filtered_parts(desired: Desired) -> tuple[list[_Parts], _Memo]:
    """The parts of every filtered port, in host veth order, and the rules memo (once
    per Desired: render_security and render_arp both ask)."""
    global _parts, _last
    if _last is not None and _last[0] is desired:
        return _last[1], _last[2]
    ports = sorted(desired.filtered, key=lambda p: names.host_veth_name(p.id))
    memo: _Memo = {}
    fresh: dict[str, tuple[_PartsKey, _Parts]] = {}
    out = [_port_parts(desired, port, memo, fresh) for port in ports]
    _parts, _last = fresh, (desired, out, memo)
    return out, memo


def render_security(
    desired: Desired,
) -> tuple[dict[str, tuple[str, ...]], tuple[tuple[str, str], ...], dict[str, IpsetState]]:
    """Our chains, hooks and sets in the host's filter table for the filtered ports."""
    parts, memo = _filtered_parts(desired)
    if not parts:
        return {}, (), {}
    chains: dict[str, tuple[str, ...]] = {}
    for part in parts:
        chains.update(part.chains)
    egress = _bucketed(parts, lambda p: p.jump_out, BUCKET_OUT, "-m physdev --physdev-in")
    ingress = _bucketed(parts, lambda p: p.jump_in, BUCKET_IN, "-m physdev --physdev-out")
    chains.update(egress)
    chains.update(ingress)
    # Every egress bucket before any ingress bucket: a packet between two ports of this
    # host passes its sender's egress chain before the receiver's ingress may accept it.
    chains[FORWARD_CHAIN] = (*egress[FORWARD_CHAIN], *ingress[FORWARD_CHAIN])
    # The groups' rules are the only lines that match on sets: scan each union once.
    return chains, (HOOK,), used_sets(desired, {str(i): r for i, r in enumerate(memo.values())})


def used_sets(desired: Desired, chains: Mapping[str, tuple[str, ...]]) -> dict[str, IpsetState]:
    """The remote groups' sets that `chains` match on. Our own specs carry no quoting,
    so str.split finds them (shlex.split cost seconds a render at 1000 ports)."""
    used = {w for rules in chains.values() for r in rules if _SET in r for w in r.split()}
    return {
        group_set(g.id): IpsetState(group_set(g.id), "hash:ip", frozenset(g.members))
        for g in desired.groups.values()
        if group_set(g.id) in used
    }


def render_arp(
    desired: Desired,
) -> tuple[dict[str, tuple[str, ...]], tuple[tuple[str, str], ...]]:
    """ARP anti-spoofing in ebtables' filter table (iptables never sees ARP): a filtered
    port's ARP must carry its own IP and MAC as sender, so it cannot answer for an
    address it does not own."""
    parts, _ = _filtered_parts(desired)
    if not parts:
        return {}, ()
    chains = {p.arp_chain: p.arp_rules for p in parts}
    chains.update(_bucketed(parts, lambda p: p.arp_jump, BUCKET_ARP, "-p ARP -i", ARP_CHAIN))
    return chains, (ARP_HOOK,)


def _bucketed(
    parts: list[_Parts],
    jump: Callable[[_Parts], str],
    prefix: str,
    match: str,
    top: str = FORWARD_CHAIN,
) -> dict[str, tuple[str, ...]]:
    """The ports' jumps spread over bucket chains by the first digit of their veth's
    token, and `top` (its key in the answer, maybe shared) jumping to each bucket by an
    interface wildcard (`match` is the rule up to the interface, as the -save tools
    print it): a packet scans 16 jumps and one bucket, not a jump per port, and a port
    change edits a bucket of ~1/16 of the ports (iptables-nft reads the rules of the
    chain it inserts into: an insert among 2000 jumps cost ~15 ms more)."""
    buckets: dict[str, list[str]] = {}
    for part in parts:  # in veth order: buckets come sorted
        buckets.setdefault(part.veth[len(VETH_PREFIX)], []).append(jump(part))
    bridged = " --physdev-is-bridged" if "physdev" in match else ""
    out = {f"{prefix}{b}": tuple(jumps) for b, jumps in buckets.items()}
    out[top] = tuple(f"{match} {VETH_PREFIX}{b}+{bridged} -j {prefix}{b}" for b in buckets)
    return out


# -------------------------------------------------------------------- conntrack


class Cut(NamedTuple):
    """One `conntrack -D` filter: the flows a removed rule or member allowed."""

    proto: str | None = None
    orig_src: str | None = None
    orig_dst: str | None = None
    dport: int | None = None


def _rule_cut(spec: str, port_ip: str, ingress: bool) -> Cut | None:
    """The flows an allow rule of ours let through, as narrow as conntrack can say
    (protocol, the port's address, a single destination port); None for our own
    housekeeping lines (anti-spoofing, state, the final verdict)."""
    words = shlex.split(spec)
    if words[-1] not in ("ACCEPT", "RETURN") or "--ctstate" in words or len(words) == 2:
        return None
    proto = words[words.index("-p") + 1] if "-p" in words else None
    dport = None
    if "--dport" in words and ":" not in words[words.index("--dport") + 1]:
        dport = int(words[words.index("--dport") + 1])
    if ingress:
        return Cut(proto, None, port_ip, dport)
    return Cut(proto, port_ip, None, dport)


def conntrack_cuts(
    desired: Desired,
    want: Mapping[str, tuple[str, ...]],
    have: Mapping[str, tuple[str, ...]],
    want_sets: Mapping[str, IpsetState],
    have_sets: Mapping[str, IpsetState],
) -> tuple[Cut, ...]:
    """Flows to forget because a rule or a remote-group member that allowed them went
    (Neutron does the same). A flow another rule still allows is cut too and must start
    again: conntrack cannot tell which rule admitted it."""
    cuts: set[Cut] = set()
    # Only chains kept with other rules: a port's chains that came or went cut nothing
    # here (and at 1000 ports, naming every port's chains is what a change would cost).
    changed = {c for c in want.keys() & have.keys() if c.startswith(_PORT_CHAINS)}
    changed = {c for c in changed if want[c] != have[c]}
    for port in desired.filtered if changed else ():
        for chain, ingress in ((ingress_chain(port.id), True), (egress_chain(port.id), False)):
            if chain not in changed:
                continue
            for spec in set(have[chain]) - set(want[chain]):
                cut = _rule_cut(spec, port.ip, ingress)
                if cut is not None:
                    cuts.add(cut)
    for name, state in want_sets.items():
        old = have_sets.get(name)
        if not name.startswith(GROUP_SET_PREFIX) or old is None:
            continue
        for member in old.members - state.members:
            cuts |= {Cut(orig_src=member), Cut(orig_dst=member)}
    return tuple(sorted(cuts, key=repr))
