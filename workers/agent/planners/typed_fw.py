"""Security groups on flat and routed ports (DESIGN §4, network types), pure.

- routed: nothing is bridged, so physdev cannot see these ports. Their traffic is
  routed by the host, so the host's FORWARD chain sees it with the routed veth as the
  in or out interface: one hook jumps to `vpcd-rt-FORWARD`, which sends `-i vpw…` to the
  port's egress chain and `-o vpw…` to its ingress chain, the same chains (and the same
  remote-group sets) a VXLAN port gets (secgroups.port_chains), so a routed port obeys
  exactly the rules any port does.
- flat: see render_flat_security.
"""

from __future__ import annotations

import ipaddress
import shlex

from workers.agent.desired import Desired
from workers.agent.planners.secgroups import (
    _ESTABLISHED,
    _INVALID,
    egress_chain,
    group_set,
    ingress_chain,
    port_chains,
    rule_spec,
)
from workers.agent.ruleset import IpsetState, NetnsFirewall, Ruleset
from workers.agent.typed_state import routed_veth_name
from workers.protocol import PortState

ROUTED_FORWARD = "vpcd-rt-FORWARD"
ROUTED_HOOK = ("FORWARD", f"-j {ROUTED_FORWARD}")


def render_routed_security(
    desired: Desired,
) -> tuple[dict[str, tuple[str, ...]], tuple[tuple[str, str], ...], dict[str, IpsetState]]:
    """Chains, hooks and sets in the host's filter table for the filtered routed ports."""
    ports = sorted(
        (
            tp.port
            for tp in desired.typed.ports
            if tp.routed and tp.port.security_group_ids is not None
        ),
        key=lambda p: routed_veth_name(p.id),
    )
    if not ports:
        return {}, (), {}
    chains: dict[str, tuple[str, ...]] = {}
    out, into = [], []
    for port in ports:
        veth = routed_veth_name(port.id)
        chains.update(port_chains(desired, port))
        out.append(f"-i {veth} -j {egress_chain(port.id)}")
        into.append(f"-o {veth} -j {ingress_chain(port.id)}")
    chains[ROUTED_FORWARD] = (*out, *into)
    used = {word for rules in chains.values() for r in rules for word in shlex.split(r)}
    sets = {
        group_set(g.id): IpsetState(group_set(g.id), "hash:ip", frozenset(g.members))
        for g in desired.groups.values()
        if group_set(g.id) in used
    }
    return chains, (ROUTED_HOOK,), sets


def flat_netns(desired: Desired) -> frozenset[str]:
    """Workload namespaces holding a flat port whose groups are enforced."""
    return frozenset(
        tp.netns
        for tp in desired.typed.ports
        if not tp.routed and tp.port.security_group_ids is not None
    )


def _flat_rules(desired: Desired, port: PortState, direction: str, target: str) -> list[str]:
    """The union of the port's groups' rules one way, a remote group written out member
    by member (no ipset in a workload's namespace: it may not exist yet when sets fill)."""
    out: dict[str, None] = {}
    ingress = direction == "ingress"
    for gid in port.security_group_ids or ():
        group = desired.groups.get(gid)
        for rule in group.rules if group is not None else ():
            if rule.direction != direction:
                continue
            remote = desired.groups.get(rule.remote_group_id or "")
            if rule.remote_group_id is not None and remote is None:
                continue
            base = rule_spec(rule.model_copy(update={"remote_group_id": None}), target)
            if base is None:
                continue
            if remote is None:
                out.setdefault(base, None)
                continue
            flag = "-s" if ingress else "-d"
            for member in sorted(remote.members, key=ipaddress.ip_address):
                out.setdefault(f"{flag} {member}/32 {base}", None)
    return list(out)


def render_flat_security(desired: Desired) -> dict[str | None, NetnsFirewall]:
    """- flat: a macvlan child's traffic never passes the host's netfilter (the parent's
    driver switches it), so a flat port's groups are enforced in its workload namespace:
    INPUT `-i <ifname>` to its ingress chain, OUTPUT `-o <ifname>` to its egress chain,
    with the same rules as any port (anti-spoofing by source address; a remote group
    member by member). A workload with CAP_NET_ADMIN in its own namespace could remove
    them, as with any in-guest firewall; the agent puts them back at the next sync."""
    out: dict[str | None, NetnsFirewall] = {}
    by_netns: dict[str, list[PortState]] = {}
    for tp in desired.typed.ports:
        if not tp.routed and tp.port.security_group_ids is not None:
            by_netns.setdefault(tp.netns, []).append(tp.port)
    for netns, ports in sorted(by_netns.items()):
        chains: dict[str, tuple[str, ...]] = {}
        hooks: list[tuple[str, str]] = []
        for port in sorted(ports, key=lambda p: p.id):
            egress = [f"! -s {port.ip}/32 -j DROP", f"{_ESTABLISHED} -j RETURN", _INVALID]
            if port.security_group_ids:
                egress += [*_flat_rules(desired, port, "egress", "RETURN"), "-j DROP"]
            else:
                egress.append("-j RETURN")
            ingress = [f"{_ESTABLISHED} -j ACCEPT", _INVALID]
            ingress += [*_flat_rules(desired, port, "ingress", "ACCEPT"), "-j DROP"]
            chains[egress_chain(port.id)] = tuple(egress)
            chains[ingress_chain(port.id)] = tuple(ingress)
            hooks.append(("INPUT", f"-i {port.interface_name} -j {ingress_chain(port.id)}"))
            hooks.append(("OUTPUT", f"-o {port.interface_name} -j {egress_chain(port.id)}"))
        out[netns] = NetnsFirewall(tables={"filter": Ruleset(chains=chains, hooks=tuple(hooks))})
    return out
