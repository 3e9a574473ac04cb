"""Network ACLs rendered as iptables chains (stateless, per subnet), pure.

AWS evaluates a subnet's ACL where traffic crosses the subnet's edge. vpcd has no single
edge device per subnet on a host (a subnet is a bridge with the VXLAN device and, where
a router serves it, a router leg on it), so the ACL is applied on each local port's
host-side veth, by physdev, in the host namespace's FORWARD chain, before security
groups: `--physdev-in` (the port sent it: egress entries) and `--physdev-out` (the port
receives it: ingress entries). Traffic to and from other subnets and the outside passes
there on every host carrying the subnet; so does traffic between two ports of one
subnet, which AWS would not filter (documented in the README).

Each ACL is two chains, `vpcd-ni-<token>` and `vpcd-ne-<token>`: the entries of that
direction in rule-number order, allow -> RETURN (security groups decide next), deny ->
DROP, and a final DROP (no entry matched). There is no conntrack state: return traffic
needs its own entry.

Routed ports (network types) have no bridge, so physdev cannot see them: their jumps
(`-i vpw…` egress, `-o vpw…` ingress, to the same per-ACL chains) are in
`vpcd-acl-rt-FORWARD`, hooked from FORWARD by interface name, and that hook comes
before the groups' `vpcd-rt-FORWARD` as the physdev one comes before theirs. Flat ports
get none: their traffic never crosses the host's netfilter (docs/network-types.md).
"""

from __future__ import annotations

import hashlib
import ipaddress

from workers.agent import names
from workers.agent.desired import Desired
from workers.agent.typed_state import routed_veth_name
from workers.protocol import NetworkAclEntryState

FORWARD_CHAIN = "vpcd-acl-FORWARD"
HOOK = ("FORWARD", f"-m physdev --physdev-is-bridged -j {FORWARD_CHAIN}")
ROUTED_CHAIN = "vpcd-acl-rt-FORWARD"
ROUTED_HOOK = ("FORWARD", f"-j {ROUTED_CHAIN}")


def _token(acl_id: str) -> str:
    return hashlib.blake2b(acl_id.encode(), digest_size=6).hexdigest()


def ingress_chain(acl_id: str) -> str:
    return f"vpcd-ni-{_token(acl_id)}"


def egress_chain(acl_id: str) -> str:
    return f"vpcd-ne-{_token(acl_id)}"


def entry_spec(entry: NetworkAclEntryState) -> str | None:
    """One entry in iptables-save's canonical form; None if it can match nothing here
    (an IPv6 CIDR)."""
    net = ipaddress.ip_network(entry.cidr, strict=False)
    if net.version != 4:
        return None
    parts: list[str] = []
    if net.prefixlen:
        parts.append(f"{'-s' if entry.direction == 'ingress' else '-d'} {net}")
    if entry.protocol != "any":
        parts.append(f"-p {entry.protocol}")
        low, high = entry.port_min, entry.port_max
        if entry.protocol in ("tcp", "udp") and (low is not None or high is not None):
            low, high = low or 1, high or low or 65535
            ports = str(low) if low == high else f"{low}:{high}"
            parts[-1] += f" -m {entry.protocol} --dport {ports}"
    parts.append("-j RETURN" if entry.action == "allow" else "-j DROP")
    return " ".join(parts)


def _routed_ports(desired: Desired, subnets: set[str]) -> list[str]:
    """The host-side veths of the local routed ports of these subnets, sorted."""
    return sorted(
        routed_veth_name(tp.port.id)
        for tp in desired.typed.ports
        if tp.routed and tp.port.subnet_id in subnets
    )


def render_acls(
    desired: Desired,
) -> tuple[dict[str, tuple[str, ...]], tuple[tuple[str, str], ...]]:
    """Our ACL chains and hooks in the host's filter table."""
    chains: dict[str, tuple[str, ...]] = {}
    out_jumps: list[str] = []
    in_jumps: list[str] = []
    rt_out: list[str] = []
    rt_in: list[str] = []
    for acl in sorted(desired.acls, key=lambda a: a.id):
        subnets = set(acl.subnet_ids)
        ports = [p for p in desired.ports if p.subnet_id in subnets]
        routed = _routed_ports(desired, subnets)
        if not ports and not routed:
            continue
        for chain, direction in (
            (ingress_chain(acl.id), "ingress"),
            (egress_chain(acl.id), "egress"),
        ):
            entries = sorted(
                (e for e in acl.entries if e.direction == direction), key=lambda e: e.rule_number
            )
            specs = [s for s in map(entry_spec, entries) if s is not None]
            chains[chain] = (*specs, "-j DROP")
        for port in sorted(ports, key=lambda p: names.host_veth_name(p.id)):
            veth = names.host_veth_name(port.id)
            out_jumps.append(
                f"-m physdev --physdev-in {veth} --physdev-is-bridged -j {egress_chain(acl.id)}"
            )
            in_jumps.append(
                f"-m physdev --physdev-out {veth} --physdev-is-bridged -j {ingress_chain(acl.id)}"
            )
        rt_out += [f"-i {veth} -j {egress_chain(acl.id)}" for veth in routed]
        rt_in += [f"-o {veth} -j {ingress_chain(acl.id)}" for veth in routed]
    if not chains:
        return {}, ()
    hooks: tuple[tuple[str, str], ...] = ()
    if out_jumps:
        chains[FORWARD_CHAIN] = (*out_jumps, *in_jumps)
        hooks += (HOOK,)
    if rt_out:
        chains[ROUTED_CHAIN] = (*rt_out, *rt_in)
        hooks += (ROUTED_HOOK,)
    return chains, hooks
