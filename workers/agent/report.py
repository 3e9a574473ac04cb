"""The agent's answer for one sync: a Report with one result per resource.

A resource is ok when no op of its failed, nothing of it was left unconverged after
apply, and the document itself did not make it unrealisable (Desired.problems).
Host housekeeping (namespaces, the firewall) failing makes the whole report not ok.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Literal

from workers.agent.desired import Desired
from workers.agent.ops import Op
from workers.protocol import Report, ResourceResult

Failures = dict[tuple[str, str] | None, list[str]]


def build_report(
    desired: Desired,
    failures: Failures,
    leftover: list[Op],
    reuse: Mapping[str, ResourceResult] | None = None,
    changed: Collection[str] = (),
) -> Report:
    """With `reuse` (the last report's port results, by id), a port not in `changed`
    that was ok, whose revision is the same and whose subnet is ok, with no failure nor leftover
    now, keeps its last result object: an incremental sync then builds results for
    what it touched only, and a report diff finds the rest unchanged by identity."""
    state = desired.state
    unconverged: dict[tuple[str, str] | None, list[Op]] = {}
    for op in leftover:
        unconverged.setdefault(op.resource, []).append(op)

    def result(
        kind: Literal["subnet", "port", "router", "security_group", "network_acl"],
        rid: str,
        revision: int,
        extra: str | None = None,
    ) -> ResourceResult:
        reasons = list(failures.get((kind, rid), []))
        if extra:
            reasons.append(extra)
        if (kind, rid) in unconverged and not reasons:
            ops = unconverged[(kind, rid)]
            reasons.append("not converged after apply: " + ", ".join(map(repr, ops[:3])))
        return ResourceResult(
            kind=kind,
            id=rid,
            revision=revision,
            ok=not reasons,
            detail="; ".join(reasons) or None,
        )

    results = [result("subnet", s.id, s.revision) for s in state.subnets]
    subnet_ok = {r.id: r.ok for r in results}
    for port in state.ports:
        old = None if reuse is None or port.id in changed else reuse.get(port.id)
        if (
            old is not None
            and old.ok
            and old.revision == port.revision
            and subnet_ok.get(port.subnet_id, True)
            and ("port", port.id) not in failures
            and ("port", port.id) not in unconverged
        ):
            results.append(old)
            continue
        extra = desired.problems.get(port.id)
        if extra is None and not subnet_ok.get(port.subnet_id, True):
            extra = f"subnet {port.subnet_id} is not realised on this host"
            if ("port", port.id) in failures:
                extra = None
        results.append(result("port", port.id, port.revision, extra))
    for net in state.typed_networks:  # flat and routed subnets and their ports
        results.append(result("subnet", net.id, net.revision))
        for port in net.ports:
            extra = desired.typed.problems.get(port.id)
            results.append(result("port", port.id, port.revision, extra))
    results += router_results(
        desired,
        [
            result("router", r.id, r.revision, desired.router_problems.get(r.id))
            for r in state.routers
        ],
    )
    for svc in state.dhcp_dns:  # a service's leg is its port
        extra = None
        if svc not in desired.services.values():
            extra = f"subnet {svc.subnet_id} is not in this host's state"
        elif not subnet_ok.get(svc.subnet_id, True):
            extra = f"subnet {svc.subnet_id} is not realised on this host"
        results.append(result("port", svc.port_id, svc.port_revision, extra))
    host_level = failures.get(None, []) + [repr(op) for op in unconverged.get(None, [])]
    firewall = "; ".join(host_level[:3]) or None  # a group lives in the host's firewall
    for gid in sorted(_enforced_groups(desired)):
        results.append(result("security_group", gid, desired.groups[gid].revision, firewall))
    for acl in desired.acls:
        results.append(result("network_acl", acl.id, acl.revision, firewall))
    ok = all(r.ok for r in results) and not host_level
    detail = None
    if host_level:
        detail = "; ".join(host_level[:5])
    elif not ok:
        bad = [r for r in results if not r.ok]
        detail = f"{len(bad)} resource(s) not realised"
    return Report(host=state.host, revision=state.revision, ok=ok, detail=detail, results=results)


def router_results(desired: Desired, routers: list[ResourceResult]) -> list[ResourceResult]:
    """Each router's result, then its legs (kind "port") and floating IPs, which are
    realised exactly when their router is."""
    out: list[ResourceResult] = []
    by_id = {r.id: r for r in routers}
    for r in desired.state.routers:
        mine = by_id[r.id]
        out.append(mine)
        detail = None if mine.ok else f"router {r.id}: {mine.detail}"
        out += [
            ResourceResult(
                kind="port", id=i.port_id, revision=i.port_revision, ok=mine.ok, detail=detail
            )
            for i in r.interfaces
        ]
        out += [
            ResourceResult(
                kind="floating_ip", id=f.id, revision=f.revision, ok=mine.ok, detail=detail
            )
            for f in r.floating_ips
        ]
    return out


def _enforced_groups(desired: Desired) -> set[str]:
    """Groups whose rules this host enforces: those of its filtered ports."""
    ports = [*desired.state.ports, *(p for t in desired.state.typed_networks for p in t.ports)]
    used = {g for p in ports for g in p.security_group_ids or ()}
    return used & set(desired.groups)


def failed_report(desired: Desired, detail: str) -> Report:
    """Every resource failed for one reason (the sync itself broke)."""
    state = desired.state
    results = (
        [
            ResourceResult(kind="subnet", id=s.id, revision=s.revision, ok=False, detail=detail)
            for s in state.subnets
        ]
        + [
            ResourceResult(kind="port", id=p.id, revision=p.revision, ok=False, detail=detail)
            for p in state.ports
        ]
        + [
            ResourceResult(
                kind="port", id=d.port_id, revision=d.port_revision, ok=False, detail=detail
            )
            for d in state.dhcp_dns
        ]
        + [
            ResourceResult(kind=kind, id=rid, revision=rev, ok=False, detail=detail)
            for net in state.typed_networks
            for kind, rid, rev in [
                ("subnet", net.id, net.revision),
                *(("port", p.id, p.revision) for p in net.ports),
            ]
        ]
    )
    results += [
        ResourceResult(
            kind="security_group",
            id=gid,
            revision=desired.groups[gid].revision,
            ok=False,
            detail=detail,
        )
        for gid in sorted(_enforced_groups(desired))
    ]
    results += [
        ResourceResult(kind="network_acl", id=a.id, revision=a.revision, ok=False, detail=detail)
        for a in desired.acls
    ]
    results += router_results(
        desired,
        [
            ResourceResult(kind="router", id=r.id, revision=r.revision, ok=False, detail=detail)
            for r in state.routers
        ],
    )
    return Report(
        host=state.host, revision=state.revision, ok=False, detail=detail, results=results
    )
