"""Load balancers (Octavia's model): a VIP on a subnet, realised on a network host; created
alone or fully populated (listeners, pools, members, monitors in one POST)."""

from __future__ import annotations

from fastapi import APIRouter, Query, status

from api.deps import NotifierDep, PrincipalDep, SessionDep, TenantDep
from api.errors import InUse, problems
from api.rest.pages import Page, PagesDep
from api.rest.preconditions import LookupDep, ResourceRoute
from api.services import lb_views
from api.services.lb_build import Builder, children, delete_tree, realise, realise_changes
from api.services.lb_schemas import LoadBalancerCreate, LoadBalancerOut, LoadBalancerUpdate
from models import LoadBalancer

router = APIRouter(prefix="/v1/load-balancers", tags=["load-balancers"], route_class=ResourceRoute)


class LoadBalancerList(Page[LoadBalancerOut]):
    pass


@router.post("", status_code=status.HTTP_201_CREATED, responses=problems(401, 403, 404, 409, 422))
def create_load_balancer(
    body: LoadBalancerCreate,
    session: SessionDep,
    who: TenantDep,
    lookup: LookupDep,
    notifier: NotifierDep,
) -> LoadBalancerOut:
    assert who.tenant_id is not None
    lb = Builder(session, lookup, who.tenant_id).load_balancer(body)
    realise(notifier, session, lb.id)
    return lb_views.load_balancer(session, lb)


@router.get("", responses=problems(400, 401, 422))
def list_load_balancers(
    pages: PagesDep,
    session: SessionDep,
    who: PrincipalDep,
    vpc_id: str | None = None,
    vip_subnet_id: str | None = None,
    vip_address: str | None = None,
    name: str | None = None,
    tag: str | None = None,
) -> LoadBalancerList:
    filters = {"vpc_id": vpc_id, "vip_subnet_id": vip_subnet_id, "vip_address": vip_address}
    return pages.of(
        LoadBalancerList,
        LoadBalancer,
        who,
        filters | {"name": name, "tag": tag},
        render=lambda lb: lb_views.load_balancer(session, lb),
    )


@router.get("/{load_balancer_id}", responses=problems(401, 404))
def get_load_balancer(
    load_balancer_id: str, session: SessionDep, lookup: LookupDep
) -> LoadBalancerOut:
    return lb_views.load_balancer(session, lookup.target(LoadBalancer, load_balancer_id))


@router.patch("/{load_balancer_id}", responses=problems(401, 404, 409, 412, 422))
def update_load_balancer(
    load_balancer_id: str,
    body: LoadBalancerUpdate,
    session: SessionDep,
    lookup: LookupDep,
    notifier: NotifierDep,
) -> LoadBalancerOut:
    lb = lookup.target(LoadBalancer, load_balancer_id)
    realise_changes(notifier, session, lb, body.changes(lb), lb.id)
    return lb_views.load_balancer(session, lb)


@router.delete(
    "/{load_balancer_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 404, 409, 412),
)
def delete_load_balancer(
    load_balancer_id: str,
    session: SessionDep,
    lookup: LookupDep,
    notifier: NotifierDep,
    cascade: bool = Query(
        default=False, description="Delete listeners, pools, members and monitors too."
    ),
) -> None:
    lb = lookup.target(LoadBalancer, load_balancer_id)
    blocking = children(session, lb.id)
    if blocking and not cascade:
        raise InUse(
            "the load balancer still has listeners or pools; delete them or pass cascade=true",
            blocking,
        )
    realise(notifier, session, lb.id)
    delete_tree(session, lb)
