"""The load balancers' part of a report: one result per load balancer, listener, pool,
member and health monitor, with the operating statuses measured from haproxy.

A load balancer is realised when its VIP port is and nothing of its own (haproxy,
forwarding) failed or was left unconverged; its children share its fate, since they
are realised by the same haproxy configuration and rules.
"""

from __future__ import annotations

from collections.abc import Mapping

from workers.agent.desired import Desired
from workers.agent.lbconf import measure
from workers.agent.ops import Op
from workers.protocol import LoadBalancerState, Report, ResourceResult

Failures = dict[tuple[str, str] | None, list[str]]


def _tree(lb: LoadBalancerState) -> list[tuple[str, str, int]]:
    """(kind, id, revision) of the load balancer and everything under it."""
    out = [("load_balancer", lb.id, lb.revision)]
    out += [("listener", x.id, x.revision) for x in lb.listeners]
    for p in lb.pools:
        out.append(("pool", p.id, p.revision))
        out += [("member", m.id, m.revision) for m in p.members]
        if p.monitor is not None:
            out.append(("health_monitor", p.monitor.id, p.monitor.revision))
    return out


def lb_results(
    desired: Desired,
    failures: Failures,
    leftover: list[Op],
    ports_ok: Mapping[str, str | None],
    stats: Mapping[str, str],
    probed: Mapping[str, bool] | None = None,
) -> list[ResourceResult]:
    """`ports_ok` maps port id -> None (ok) or why not; `stats` maps load balancer id ->
    its `show stat` text; `probed` maps UDP member id -> up by the agent's probes."""
    results = []
    for lb in desired.state.load_balancers:
        reasons = list(failures.get(("load_balancer", lb.id), []))
        reasons += [repr(op) for op in leftover if op.resource == ("load_balancer", lb.id)]
        vip = ports_ok.get(lb.vip_port_id, "VIP port not in this host's state")
        if vip is not None:
            reasons.append(f"VIP port {lb.vip_port_id}: {vip}")
        detail = "; ".join(reasons)[:2000] or None
        measured = measure(lb, stats.get(lb.id, ""), probed)
        for kind, rid, revision in _tree(lb):
            status = measured.get(rid)
            if detail is not None and status is not None:
                status = "ERROR"
            results.append(
                ResourceResult(
                    kind=kind,
                    id=rid,
                    revision=revision,
                    ok=detail is None,
                    detail=detail,
                    operating_status=status,
                )
            )
    return results


def with_lb_results(report: Report, results: list[ResourceResult]) -> Report:
    if not results:
        return report
    ok = report.ok and all(r.ok for r in results)
    detail = report.detail
    if report.ok and not ok:
        detail = f"{sum(1 for r in results if not r.ok)} load-balancer resource(s) not realised"
    return report.model_copy(
        update={"results": [*report.results, *results], "ok": ok, "detail": detail}
    )
