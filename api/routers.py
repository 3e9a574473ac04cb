"""Routers: interfaces on subnets (at their gateway IP), static routes, external gateway."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from api.deps import NotifierDep, PrincipalDep, SessionDep, TenantDep
from api.errors import Invalid, NotFound, problems
from api.netcheck import HostRoute
from api.rest.pages import Page, PagesDep
from api.rest.preconditions import LookupDep, ResourceRoute
from api.rest.schemas import (
    Description,
    Input,
    Name,
    NotNull,
    Patch,
    RealisedOutput,
    Tags,
    apply_changes,
)
from api.services import blockers, external_ips, quotas
from api.services.router_legs import add_leg, check_routes, remove_leg
from api.services.scheduling import schedule_router
from models import Port, Router, Subnet, Vpc, placement
from models.base import bump, new_id
from models.placement import NO_NETWORK_HOST
from models.routing import (
    interface_of_subnet,
    interfaces_of_router,
    release_external,
)

router = APIRouter(prefix="/v1/routers", tags=["routers"], route_class=ResourceRoute)

Routes = Annotated[list[HostRoute], Field(max_length=64)]


class RouterCreate(Input):
    vpc_id: str
    name: Name = ""
    description: Description = ""
    external_network_id: str | None = None
    enable_snat: bool = True
    routes: Routes = []
    tags: Tags = []


class RouterUpdate(Patch):
    immutable = frozenset({"vpc_id"})
    name: Name | None = NotNull()
    description: Description | None = NotNull()
    external_network_id: str | None = None
    enable_snat: bool | None = NotNull()
    routes: Routes | None = NotNull()
    tags: Tags | None = NotNull()


class RouterOut(RealisedOutput):
    vpc_id: str
    name: str
    description: str
    external_network_id: str | None
    enable_snat: bool
    routes: list[HostRoute]
    tags: list[str]
    host: str | None
    external_ip: str | None
    subnet_ids: list[str] = Field(description="Subnets this router has an interface on.")


class RouterList(Page[RouterOut]):
    pass


class InterfaceCreate(Input):
    subnet_id: str


class RouterInterfaceOut(BaseModel):
    router_id: str
    subnet_id: str
    port_id: str
    ip_address: str


def render(session: Session, r: Router) -> RouterOut:
    subnets = sorted(i.subnet_id for i in interfaces_of_router(session, r.id))
    data = {k: getattr(r, k) for k in RouterOut.model_fields if k != "subnet_ids"}
    return RouterOut.model_validate({**data, "subnet_ids": subnets})


def interface_out(r: Router, subnet_id: str, port: Port) -> RouterInterfaceOut:
    return RouterInterfaceOut(
        router_id=r.id, subnet_id=subnet_id, port_id=port.id, ip_address=port.ip_address
    )


@router.post("", status_code=status.HTTP_201_CREATED, responses=problems(401, 403, 404, 409, 422))
def create_router(
    body: RouterCreate,
    session: SessionDep,
    who: TenantDep,
    lookup: LookupDep,
    notifier: NotifierDep,
) -> RouterOut:
    assert who.tenant_id is not None
    lookup.get(Vpc, body.vpc_id)
    if body.routes:
        raise Invalid("body.routes.0.nexthop", "a new router has no subnets to reach a nexthop")
    quotas.check(session, who.tenant_id, "routers", Router)
    host = schedule_router(session)
    r = Router(id=new_id(), tenant_id=who.tenant_id, host=host, **body.model_dump())
    if host is None:  # an error now, not an endless pending; the sweep retries
        r.status, r.status_detail = "error", NO_NETWORK_HOST
    if body.external_network_id is not None:
        # before the insert: an unknown network is a 404 (not an FK error), and the row
        # goes in whole at revision 1
        external_ips.attach_gateway(session, r, body.external_network_id)
    session.add(r)
    session.flush()
    notifier.resources_changed(session, "router", {r.id})
    return render(session, r)


@router.get("", responses=problems(400, 401, 422))
def list_routers(
    pages: PagesDep,
    session: SessionDep,
    who: PrincipalDep,
    vpc_id: str | None = None,
    name: str | None = None,
    tag: str | None = None,
    external_network_id: str | None = None,
) -> RouterList:
    return pages.of(
        RouterList,
        Router,
        who,
        {"vpc_id": vpc_id, "name": name, "tag": tag, "external_network_id": external_network_id},
        render=lambda r: render(session, r),
    )


@router.get("/{router_id}", responses=problems(401, 404))
def get_router(router_id: str, session: SessionDep, lookup: LookupDep) -> RouterOut:
    return render(session, lookup.target(Router, router_id))


@router.patch("/{router_id}", responses=problems(401, 404, 409, 412, 422))
def update_router(
    router_id: str,
    body: RouterUpdate,
    session: SessionDep,
    lookup: LookupDep,
    notifier: NotifierDep,
) -> RouterOut:
    r = lookup.target(Router, router_id)
    changes = body.changes(r)
    if "routes" in changes:
        check_routes(session, r, changes["routes"])
    if "external_network_id" in changes and changes["external_network_id"] != r.external_network_id:
        blockers.router_gateway(session, r.id)
        external_ips.change_gateway(session, r, changes["external_network_id"])
    if apply_changes(r, changes):
        placement.changed(r)
    session.flush()
    notifier.resources_changed(session, "router", {r.id})
    return render(session, r)


@router.delete(
    "/{router_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(401, 404, 409, 412)
)
def delete_router(
    router_id: str, session: SessionDep, lookup: LookupDep, notifier: NotifierDep
) -> None:
    r = lookup.target(Router, router_id)
    blockers.router(session, r.id)  # interfaces too: they are removed first, as in Neutron
    notifier.hosts_changed(session, {r.host})
    release_external(session, r.id)
    session.flush()
    session.delete(r)


@router.post(
    "/{router_id}/interfaces",
    status_code=status.HTTP_201_CREATED,
    responses=problems(401, 403, 404, 409, 422),
)
def add_router_interface(
    router_id: str,
    body: InterfaceCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    _: TenantDep,
    lookup: LookupDep,
    notifier: NotifierDep,
) -> RouterInterfaceOut:
    r = lookup.get(Router, router_id)
    subnet = lookup.get(Subnet, body.subnet_id)
    port = add_leg(session, r, subnet)
    notifier.subnets_changed(session, {subnet.id}, r.host)
    response.headers["Location"] = (
        str(request.base_url).rstrip("/") + f"/v1/routers/{r.id}/interfaces/{subnet.id}"
    )
    return interface_out(r, subnet.id, port)


@router.get("/{router_id}/interfaces", responses=problems(401, 404))
def list_router_interfaces(
    router_id: str, session: SessionDep, lookup: LookupDep
) -> list[RouterInterfaceOut]:
    r = lookup.get(Router, router_id)
    out = []
    for iface in interfaces_of_router(session, r.id):
        port = session.get(Port, iface.port_id)
        assert port is not None
        out.append(interface_out(r, iface.subnet_id, port))
    return out


@router.get("/{router_id}/interfaces/{subnet_id}", responses=problems(401, 404))
def get_router_interface(
    router_id: str, subnet_id: str, session: SessionDep, lookup: LookupDep
) -> RouterInterfaceOut:
    """The interface a POST's Location names."""
    r = lookup.get(Router, router_id)
    iface = interface_of_subnet(session, subnet_id)
    port = session.get(Port, iface.port_id) if iface is not None else None
    if iface is None or iface.router_id != r.id or port is None:
        raise NotFound("router interface", f"{router_id}/{subnet_id}")
    return interface_out(r, subnet_id, port)


@router.delete(
    "/{router_id}/interfaces/{subnet_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 404, 409),
)
def remove_router_interface(
    router_id: str, subnet_id: str, session: SessionDep, lookup: LookupDep, notifier: NotifierDep
) -> None:
    r = lookup.get(Router, router_id)
    iface = interface_of_subnet(session, subnet_id)
    if iface is None or iface.router_id != r.id:
        raise NotFound("router interface", f"{router_id}/{subnet_id}")
    blockers.router_interface(session, r, lookup.get(Subnet, subnet_id))
    remove_leg(session, iface)
    notifier.subnets_changed(session, {subnet_id}, r.host)
    # detaches made at once must not fail each other
    bump(session, r, **placement.status_of(r))
