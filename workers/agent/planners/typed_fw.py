"""Security groups on flat and routed ports (DESIGN §4, network types), pure.

- routed: nothing is bridged, so physdev cannot see these ports. Their traffic is
  routed by the host, so the host's FORWARD chain sees it with the routed veth as the
  in or out interface: one hook jumps to `vpcd-rt-FORWARD`, which sends `-i vpw…` to the
  port's egress chain and `-o vpw…` to its ingress chain, the same chains (and the same
  remote-group sets) a VXLAN port gets (secgroups.port_chains), so a routed port obeys
  exactly the rules any port does; removing a rule cuts the conntrack entries it let
  through, as for any port (`with_routed`).
- flat: none. A macvlan child's traffic never passes the host's netfilter (the parent's
  driver switches it between children and onto the wire), so there is no sound place on
  the host to enforce groups: the API refuses groups on flat ports (409, saying why)
  and gives them none by default; the segment's own switch/firewall is the boundary.
"""

from __future__ import annotations

import shlex
from dataclasses import replace

from workers.agent.desired import Desired
from workers.agent.planners.secgroups import (
    egress_chain,
    group_set,
    ingress_chain,
    port_chains,
)
from workers.agent.ruleset import IpsetState
from workers.agent.typed_state import routed_veth_name
from workers.protocol import PortState

ROUTED_FORWARD = "vpcd-rt-FORWARD"
ROUTED_HOOK = ("FORWARD", f"-j {ROUTED_FORWARD}")


def _routed_filtered(desired: Desired) -> list[PortState]:
    return sorted(
        (
            tp.port
            for tp in desired.typed.ports
            if tp.routed and tp.port.security_group_ids is not None
        ),
        key=lambda p: routed_veth_name(p.id),
    )


def with_routed(desired: Desired) -> Desired:
    """`desired` with its filtered routed ports among the filtered ones, for what reads
    ports alike whatever their wiring (the conntrack cuts of removed rules)."""
    routed = _routed_filtered(desired)
    return replace(desired, filtered=(*desired.filtered, *routed)) if routed else desired


def render_routed_security(
    desired: Desired,
) -> tuple[dict[str, tuple[str, ...]], tuple[tuple[str, str], ...], dict[str, IpsetState]]:
    """Chains, hooks and sets in the host's filter table for the filtered routed ports."""
    ports = _routed_filtered(desired)
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
