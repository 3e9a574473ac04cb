"""UDP listeners in the kernel (DESIGN §4): DNAT in the load balancer's namespace.

Per UDP listener, one chain of DNAT rules over the listener's pool: with equal weights
`-m statistic --mode nth` (strict rotation: rule i takes every (n-i)th of what the
rules before it left), otherwise `--mode random` with each member's share of the weight
still left. The DNAT holds for the flow (conntrack), so a client's datagrams from one
source port stay with one member. Replies come back through the load balancer (SNAT to
the VIP), since the member would otherwise answer the client from its own address.
Members admin-down, of weight 0, or failed by the agent's UDP probes get no rule.
"""

from __future__ import annotations

from workers.agent import names
from workers.agent.ruleset import Ruleset
from workers.protocol import ListenerState, LoadBalancerState, MemberState

LB_TABLES: tuple[str, ...] = ("nat",)
PRE_CHAIN = "vpcd-lb-PRE"
POST_CHAIN = "vpcd-lb-POST"


def listener_chain(listener_id: str) -> str:
    return f"vpcd-u-{names.lb_token(listener_id)}"


def _dnat(members: list[MemberState]) -> tuple[str, ...]:
    rules = []
    equal = len({m.weight for m in members}) == 1
    left = sum(m.weight for m in members)
    for i, m in enumerate(members):
        to = f"-j DNAT --to-destination {m.address}:{m.protocol_port}"
        if i == len(members) - 1:
            rules.append(f"-p udp {to}")
        elif equal:
            rules.append(
                f"-p udp -m statistic --mode nth --every {len(members) - i} --packet 0 {to}"
            )
        else:
            share = m.weight / left
            rules.append(f"-p udp -m statistic --mode random --probability {share:.11f} {to}")
        left -= m.weight
    return tuple(rules)


def _targets(
    lb: LoadBalancerState, listener: ListenerState, down: frozenset[str]
) -> list[MemberState]:
    pool = next((p for p in lb.pools if p.id == listener.default_pool_id), None)
    if pool is None or not pool.admin_state_up or not listener.admin_state_up:
        return []
    return [m for m in pool.members if m.admin_state_up and m.weight > 0 and m.id not in down]


def udp_ruleset(lb: LoadBalancerState, down: frozenset[str] = frozenset()) -> Ruleset:
    """The nat table of a load balancer's namespace; `down` are members its probes failed."""
    listeners = [x for x in lb.listeners if x.protocol == "UDP"]
    if not listeners or not lb.admin_state_up:
        return Ruleset()
    chains: dict[str, tuple[str, ...]] = {}
    pre = []
    for x in listeners:
        chain = listener_chain(x.id)
        pre.append(f"-d {lb.vip_address}/32 -p udp -m udp --dport {x.protocol_port} -j {chain}")
        chains[chain] = _dnat(_targets(lb, x, down))
    chains[PRE_CHAIN] = tuple(pre)
    chains[POST_CHAIN] = (f"-m conntrack --ctstate DNAT -j SNAT --to-source {lb.vip_address}",)
    return Ruleset(
        chains=chains,
        hooks=(("PREROUTING", f"-j {PRE_CHAIN}"), ("POSTROUTING", f"-j {POST_CHAIN}")),
    )
