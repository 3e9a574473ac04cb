"""Listeners: a protocol and port on a load balancer's VIP, sending to a default pool."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import NotifierDep, PrincipalDep, SessionDep, TenantDep
from api.errors import problems
from api.rest.pages import Page, PagesDep
from api.rest.preconditions import LookupDep, ResourceRoute
from api.rest.schemas import apply_changes
from api.services import lb_views, quotas
from api.services.lb_build import Builder, attach_default_pool, realise
from api.services.lb_schemas import ListenerCreate, ListenerOut, ListenerUpdate, Protocol
from models import Listener, LoadBalancer

router = APIRouter(prefix="/v1/listeners", tags=["listeners"], route_class=ResourceRoute)


class ListenerList(Page[ListenerOut]):
    pass


@router.post("", status_code=status.HTTP_201_CREATED, responses=problems(401, 403, 404, 409, 422))
def create_listener(
    body: ListenerCreate,
    session: SessionDep,
    who: TenantDep,
    lookup: LookupDep,
    notifier: NotifierDep,
) -> ListenerOut:
    assert who.tenant_id is not None
    lb = lookup.get(LoadBalancer, body.load_balancer_id)
    quotas.check(session, who.tenant_id, "listeners", Listener)
    row = Builder(session, lookup, who.tenant_id).listener(lb, body, None, "body.protocol_port")
    if body.default_pool_id is not None:
        attach_default_pool(lookup, row, body.default_pool_id)
        session.flush()
    realise(notifier, session, lb.id)
    return lb_views.listener(row)


@router.get("", responses=problems(400, 401, 422))
def list_listeners(
    pages: PagesDep,
    who: PrincipalDep,
    load_balancer_id: str | None = None,
    default_pool_id: str | None = None,
    protocol: Protocol | None = None,
    protocol_port: int | None = None,
    name: str | None = None,
    tag: str | None = None,
) -> ListenerList:
    filters: dict[str, object] = {"load_balancer_id": load_balancer_id, "protocol": protocol}
    filters |= {"default_pool_id": default_pool_id, "protocol_port": protocol_port}
    filters |= {"name": name, "tag": tag}
    return pages.of(ListenerList, Listener, who, filters, render=lb_views.listener)


@router.get("/{listener_id}", responses=problems(401, 404))
def get_listener(listener_id: str, lookup: LookupDep) -> ListenerOut:
    return lb_views.listener(lookup.target(Listener, listener_id))


@router.patch("/{listener_id}", responses=problems(401, 404, 409, 412, 422))
def update_listener(
    listener_id: str,
    body: ListenerUpdate,
    session: SessionDep,
    lookup: LookupDep,
    notifier: NotifierDep,
) -> ListenerOut:
    row = lookup.target(Listener, listener_id)
    changes = body.changes(row)
    if "default_pool_id" in changes and changes["default_pool_id"] != row.default_pool_id:
        attach_default_pool(lookup, row, changes.pop("default_pool_id"))
        row.touch()
        row.status = "pending"
    if apply_changes(row, changes):
        row.status = "pending"
    session.flush()
    realise(notifier, session, row.load_balancer_id)
    return lb_views.listener(row)


@router.delete(
    "/{listener_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(401, 404, 412)
)
def delete_listener(
    listener_id: str, session: SessionDep, lookup: LookupDep, notifier: NotifierDep
) -> None:
    row = lookup.target(Listener, listener_id)
    realise(notifier, session, row.load_balancer_id)
    session.delete(row)
