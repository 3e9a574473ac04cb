"""An incremental sync's Python work scales with the change, not with the host.

With 40 filtered ports in place, one port added or removed: the planners visit that
port alone when given the sync's delta (and plan exactly what the whole plan would),
a new render computes that port's chains alone (the other ports' parts are the last
render's objects), the report rebuilds that port's result alone, and a resolver change
brings its subnet's namespaces into the delta (else a scoped plan would miss them).
Objects visited are counted, never timed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from tests.unit import test_plan as l2
from tests.unit import test_router as l3
from tests.unit import test_typed_plan as typed
from tests.unit.kernel_model import apply_ops
from tests.unit.test_firewall_incremental import COUNT, _desired, _port
from workers.agent import agent as agent_mod
from workers.agent.delta import delta_scope
from workers.agent.desired import Desired
from workers.agent.observed import Observed
from workers.agent.plan import plan
from workers.agent.planners import ports as ports_planner
from workers.agent.planners import secgroups
from workers.agent.report import build_report
from workers.protocol import PortState, ResolverState


def _counting(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[str]:
    """Port ids passed to module.name from now on (its second argument is the port)."""
    seen: list[str] = []
    real: Callable[..., Any] = getattr(module, name)

    def counted(*args: Any) -> Any:
        seen.append(args[1].id)
        return real(*args)

    monkeypatch.setattr(module, name, counted)
    return seen


def _converged(ports: list[PortState]) -> tuple[Desired, Observed]:
    desired = _desired(ports, 1)
    observed = apply_ops(Observed(), plan(desired, Observed()))
    assert plan(desired, observed) == []
    return desired, observed


@pytest.mark.parametrize("change", ["add", "remove"])
def test_a_scoped_plan_visits_the_changed_port_only_and_equals_the_whole_plan(
    monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    ports = [_port(n) for n in range(COUNT)]
    before, observed = _converged(ports)
    changed = _port(COUNT) if change == "add" else ports[23]
    after_ports = [*ports, changed] if change == "add" else [p for p in ports if p is not changed]
    after = _desired(after_ports, 2)
    delta = delta_scope(before, after, agent_mod.render(before), agent_mod.render(after))
    assert delta.ports == {changed.id}

    visited = _counting(monkeypatch, ports_planner, "_plan_port")
    scoped = plan(after, observed, delta)
    assert visited == ([changed.id] if change == "add" else [])
    visited.clear()
    assert scoped == plan(after, observed)  # the whole plan finds nothing more
    assert len(visited) == len(after_ports)

    done = apply_ops(observed, scoped)
    assert plan(after, done) == []  # and re-planning after the apply is empty


def test_a_render_after_one_port_came_computes_that_port_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ports = [_port(n) for n in range(COUNT)]
    new = _port(COUNT)
    old = agent_mod.render(_desired(ports, 1))
    rendered = _counting(monkeypatch, secgroups, "port_chains")
    grown = _desired([*ports, new], 2)
    fresh = agent_mod.render(grown)
    assert rendered == [new.id]
    want = fresh[None].tables["filter"].chains
    have = old[None].tables["filter"].chains
    assert all(want[c] is have[c] for p in ports for c in secgroups.port_chains(grown, p))

    monkeypatch.setattr(secgroups, "_parts", {})  # a cold render: every port again
    monkeypatch.setattr(secgroups, "_last", None)
    rendered.clear()
    assert agent_mod.render(_desired([*ports, new], 2)) == fresh
    assert len(rendered) >= COUNT + 1


def test_a_report_rebuilds_the_changed_ports_results_only() -> None:
    ports = [_port(n) for n in range(COUNT)]
    first = build_report(_desired(ports, 1), {}, [])
    new = _port(COUNT)
    grown = _desired([*ports, new], 2)
    reuse = {r.id: r for r in first.results if r.kind == "port"}
    report = build_report(grown, {}, [], reuse, {new.id})
    assert report == build_report(grown, {}, [])
    by_id = {r.id: r for r in report.results}
    assert all(by_id[p.id] is reuse[p.id] for p in ports)
    assert by_id[new.id] is not None and by_id[new.id].ok
    failed = build_report(grown, {("port", ports[3].id): ["boom"]}, [], reuse, {new.id})
    assert not {r.id: r for r in failed.results}[ports[3].id].ok  # a failure is never reused


def test_a_resolver_change_puts_its_subnets_namespaces_in_the_delta() -> None:
    ports = [_port(n) for n in range(4)]
    before, observed = _converged(ports)
    resolver = ResolverState(subnet_id="s1", nameserver="10.0.1.2", domain="vpc.internal")
    state = before.state.model_copy(update={"revision": 2, "resolvers": [resolver]})
    after = Desired.build(state)
    delta = delta_scope(before, after)
    assert {after.port_netns[p.id] for p in ports} <= delta.netns
    scoped = plan(after, observed, delta)
    assert scoped == plan(after, observed) and len(scoped) == len(ports)  # a resolv.conf each


def _scoped_equals_whole(old: Desired, new: Desired) -> None:
    """From a host converged on `old`, the plan for `new` scoped to their delta is the
    whole plan."""
    observed = apply_ops(Observed(), plan(old, Observed()))
    assert plan(old, observed) == []
    delta = delta_scope(old, new, agent_mod.render(old), agent_mod.render(new))
    assert plan(new, observed, delta) == plan(new, observed)


@pytest.mark.parametrize(("before", "after"), list(itertools.permutations(typed.STATES, 2)))
def test_a_scoped_plan_of_flat_and_routed_ports_equals_the_whole_plan(
    before: str, after: str
) -> None:
    """Typed ports are planned whole, but their namespaces by the ports planner: a
    namespace that comes or goes with them must be in the delta."""

    def desired(name: str) -> Desired:
        return Desired.build(typed.STATES[name], "h1-", physical_interfaces=typed.PHYS)

    _scoped_equals_whole(desired(before), desired(after))


@pytest.mark.parametrize(("before", "after"), list(itertools.permutations(l2.STATES, 2)))
def test_a_scoped_plan_of_subnets_and_ports_equals_the_whole_plan(before: str, after: str) -> None:
    _scoped_equals_whole(Desired.build(l2.STATES[before]), Desired.build(l2.STATES[after]))


@pytest.mark.parametrize(("before", "after"), list(itertools.permutations(sorted(l3.SHAPES), 2)))
def test_a_scoped_plan_of_routers_equals_the_whole_plan(before: str, after: str) -> None:
    _scoped_equals_whole(l3.desire(l3.SHAPES[before]), l3.desire(l3.SHAPES[after]))
