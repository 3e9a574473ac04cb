"""plan(desired, observed) -> ops: the whole of the agent's decision making, kept pure.

No I/O, no drivers, no pyroute2 (import-linter contracts check it): the same inputs
always give the same list, sorted by phase and then by target, so unit tests can pin it
down exactly and an apply is reproducible. Each domain has one planner in
workers/agent/planners; a new domain appends its planner to PLANNERS. Owned objects
that are not desired go; nothing without our name prefix is ever a target.
"""

from __future__ import annotations

from collections.abc import Callable

from workers.agent.desired import Desired
from workers.agent.observed import Observed
from workers.agent.ops import Op, ordered
from workers.agent.planners.dhcp_dns import plan_dhcp_dns
from workers.agent.planners.firewall import plan_firewall
from workers.agent.planners.l2 import plan_l2
from workers.agent.planners.lb import plan_lb
from workers.agent.planners.nat import plan_nat
from workers.agent.planners.ports import plan_ports
from workers.agent.planners.router import plan_router
from workers.agent.planners.typed import plan_typed

Planner = Callable[[Desired, Observed], list[Op]]

PLANNERS: tuple[Planner, ...] = (
    plan_l2,
    plan_ports,
    plan_firewall,
    plan_router,
    plan_nat,
    plan_dhcp_dns,
    plan_lb,
    plan_typed,
)


def plan(desired: Desired, observed: Observed) -> list[Op]:
    """The ops that take the kernel from `observed` to `desired`, in apply order."""
    return ordered([op for planner in PLANNERS for op in planner(desired, observed)])
