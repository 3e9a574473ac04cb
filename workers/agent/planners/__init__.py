"""One pure planner per domain: `plan_<domain>(desired, observed) -> list[Op]`.

Each module defines its domain's op types next to the planner that emits them; the
order in which plan.PLANNERS lists them does not matter (ops sort by phase). No I/O.
"""
