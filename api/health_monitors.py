"""Health monitors: how a pool's members are checked, and when they leave and rejoin."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import NotifierDep, PrincipalDep, SessionDep, TenantDep
from api.errors import problems
from api.rest.pages import Page, PagesDep
from api.rest.preconditions import LookupDep, ResourceRoute
from api.services import lb_checks, lb_views, quotas
from api.services.lb_build import Builder, realise, realise_changes
from api.services.lb_schemas import MonitorCreate, MonitorOut, MonitorType, MonitorUpdate
from models import HealthMonitor, Pool

router = APIRouter(
    prefix="/v1/health-monitors", tags=["health-monitors"], route_class=ResourceRoute
)


class HealthMonitorList(Page[MonitorOut]):
    pass


@router.post("", status_code=status.HTTP_201_CREATED, responses=problems(401, 403, 404, 409, 422))
def create_health_monitor(
    body: MonitorCreate,
    session: SessionDep,
    who: TenantDep,
    lookup: LookupDep,
    notifier: NotifierDep,
) -> MonitorOut:
    assert who.tenant_id is not None
    pool = lookup.get(Pool, body.pool_id)
    quotas.check(session, who.tenant_id, "health_monitors", HealthMonitor)
    row = Builder(session, lookup, who.tenant_id).monitor(pool, body, "body")
    realise(notifier, session, pool.load_balancer_id)
    return lb_views.monitor(row)


@router.get("", responses=problems(400, 401, 422))
def list_health_monitors(
    pages: PagesDep,
    who: PrincipalDep,
    pool_id: str | None = None,
    type: MonitorType | None = None,
    name: str | None = None,
    tag: str | None = None,
) -> HealthMonitorList:
    filters = {"pool_id": pool_id, "type": type, "name": name, "tag": tag}
    return pages.of(HealthMonitorList, HealthMonitor, who, filters, render=lb_views.monitor)


@router.get("/{health_monitor_id}", responses=problems(401, 404))
def get_health_monitor(health_monitor_id: str, lookup: LookupDep) -> MonitorOut:
    return lb_views.monitor(lookup.target(HealthMonitor, health_monitor_id))


@router.patch("/{health_monitor_id}", responses=problems(401, 404, 409, 412, 422))
def update_health_monitor(
    health_monitor_id: str,
    body: MonitorUpdate,
    session: SessionDep,
    lookup: LookupDep,
    notifier: NotifierDep,
) -> MonitorOut:
    row = lookup.target(HealthMonitor, health_monitor_id)
    pool = lookup.get(Pool, row.pool_id)
    fields = {k: getattr(row, k) for k in MonitorCreate.model_fields if k != "pool_id"}
    merged = lb_checks.monitor_fields(fields | body.changes(row), pool.protocol, "body")
    changes = {k: merged[k] for k in fields}
    realise_changes(notifier, session, row, changes, pool.load_balancer_id)
    return lb_views.monitor(row)


@router.delete(
    "/{health_monitor_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 404, 412),
)
def delete_health_monitor(
    health_monitor_id: str, session: SessionDep, lookup: LookupDep, notifier: NotifierDep
) -> None:
    row = lookup.target(HealthMonitor, health_monitor_id)
    pool = lookup.get(Pool, row.pool_id)
    realise(notifier, session, pool.load_balancer_id)
    session.delete(row)
