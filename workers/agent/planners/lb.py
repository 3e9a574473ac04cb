"""Load balancers (DESIGN §4): haproxy in each load balancer's namespace, forwarding on.

The namespace and the VIP leg are a port's (desired.py adds each VIP to the ports, so
the L2 and ports planners realise them); this planner adds what makes it a load
balancer: haproxy (master-worker) with the rendered configuration for TCP and HTTP
listeners, started when it is not running (also after a kill by hand) and reloaded
seamlessly when the configuration changed; IPv4 forwarding for UDP listeners, whose
DNAT rules the firewall renderer writes. The haproxy of a load balancer no longer
desired is stopped before its namespace goes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from workers.agent.desired import Desired
from workers.agent.lbconf import haproxy_listeners, render
from workers.agent.observed import Observed, Scope
from workers.agent.ops import Op, Phase


@dataclass(frozen=True)
class _LbOp(Op):
    lb_id: str
    netns: str
    desired: bool = True  # False: the load balancer is going

    @property
    def target(self) -> str:
        return f"lb/{self.lb_id}"

    @property
    def resource(self) -> tuple[str, str] | None:
        return ("load_balancer", self.lb_id) if self.desired else None

    def scope(self) -> Scope:
        return Scope()  # load balancers are observed whole on every observation


@dataclass(frozen=True)
class StopHaproxy(_LbOp):
    PHASE: ClassVar[Phase] = Phase.STOP_DAEMON


@dataclass(frozen=True)
class StartHaproxy(_LbOp):
    """Write the configuration and start the master (-W) in the namespace."""

    PHASE: ClassVar[Phase] = Phase.CONFIGURE_LB
    config: str = field(default="", repr=False)  # reports name the op, not the file


@dataclass(frozen=True)
class ReloadHaproxy(_LbOp):
    """Write the configuration and reload the master: new workers take the listening
    sockets, old ones finish their connections (no connection is dropped)."""

    PHASE: ClassVar[Phase] = Phase.CONFIGURE_LB
    config: str = field(default="", repr=False)


@dataclass(frozen=True)
class EnableForwarding(_LbOp):
    PHASE: ClassVar[Phase] = Phase.CONFIGURE_LB


def plan_lb(desired: Desired, observed: Observed) -> list[Op]:
    """Observation names every desired load balancer (and its stats socket's path)."""
    ops: list[Op] = []
    for lb_id, have in sorted(observed.lbs.items()):
        if lb_id not in desired.lbs and have.haproxy:
            ops.append(StopHaproxy(lb_id, have.netns, desired=False))
    for lb_id, lb in sorted(desired.lbs.items()):
        netns = desired.lb_netns[lb_id]
        obs = observed.lbs.get(lb_id)
        running = obs is not None and obs.haproxy
        if not lb.admin_state_up or not haproxy_listeners(lb):
            if running:
                ops.append(StopHaproxy(lb_id, netns))
        else:
            config = render(lb, obs.socket if obs is not None else "")
            if not running:
                ops.append(StartHaproxy(lb_id, netns, config=config))
            elif obs is not None and obs.config != config:
                ops.append(ReloadHaproxy(lb_id, netns, config=config))
        udp = any(x.protocol == "UDP" for x in lb.listeners)
        if udp and not (obs is not None and obs.forwarding):
            ops.append(EnableForwarding(lb_id, netns))
    return ops
