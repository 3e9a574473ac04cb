"""plan(desired, observed) -> ops: the whole of the agent's decision making, kept pure.

No I/O, no drivers, no pyroute2 (import-linter contracts check it): the same inputs
always give the same list, sorted by phase and then by target, so unit tests can pin it
down exactly and an apply is reproducible.

A `Scope` narrows the planners whose work grows with the ports (ports, firewall,
resolv.conf) to the objects it names; the others own a handful of objects and always
plan whole. The caller vouches that everything outside the scope is as desired: an
incremental sync after a clean one passes the delta between the two documents, whose
untouched objects the last verified snapshot matched. Then the scoped plan equals the
whole one, at the cost of the change instead of the host. Each domain has one planner in
workers/agent/planners; a new domain appends its planner to PLANNERS. Owned objects
that are not desired go; nothing without our name prefix is ever a target.
"""

from __future__ import annotations

from collections.abc import Callable

from workers.agent.desired import Desired
from workers.agent.observed import Observed, Scope
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
ScopedPlanner = Callable[[Desired, Observed, Scope | None], list[Op]]

# Planners of per-port objects: they take the scope.
SCOPED: tuple[ScopedPlanner, ...] = (plan_ports, plan_firewall, plan_dhcp_dns)
# Planners of per-subnet, per-router and per-balancer objects: few, planned whole.
WHOLE: tuple[Planner, ...] = (plan_l2, plan_router, plan_nat, plan_lb, plan_typed)


def plan(desired: Desired, observed: Observed, scope: Scope | None = None) -> list[Op]:
    """The ops that take the kernel from `observed` to `desired`, in apply order; with
    `scope`, only for the per-port objects it names (see the module docstring)."""
    ops = [op for planner in WHOLE for op in planner(desired, observed)]
    ops += [op for planner in SCOPED for op in planner(desired, observed, scope)]
    return ordered(ops)
