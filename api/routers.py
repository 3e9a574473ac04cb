"""Routers: interfaces on subnets (at their gateway IP), static routes, external gateway."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from api.common import (
    Description,
    Input,
    Limit,
    Name,
    NotNull,
    PageToken,
    Patch,
    RealisedOutput,
    Tags,
    apply_changes,
    check_if_match,
    created,
    decode_token,
    encode_token,
    owned,
    set_etag,
)
from api.deps import NotifierDep, PrincipalDep, SessionDep, TenantDep
from api.errors import Conflict, Exhausted, InUse, Invalid, NotFound, problems
from api.netcheck import HostRoute
from api.ports import ROUTER_INTERFACE
from api.services import ipam, quotas
from models import (
    ExternalIp,
    ExternalNetwork,
    FloatingIp,
    Host,
    Port,
    Router,
    RouterInterface,
    Subnet,
    Vpc,
)
from models.base import new_id
from models.query import filtered, page, scoped
from models.routing import (
    floating_ips_via_router,
    interface_of_subnet,
    interfaces_of_router,
    release_external,
    used_external,
)

router = APIRouter(prefix="/v1/routers", tags=["routers"])

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


class RouterList(BaseModel):
    items: list[RouterOut]
    next_page_token: str | None = None


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


def schedule(session: Session) -> str | None:
    """Place the router on the network host carrying the fewest routers."""
    hosts = [
        h for h in session.scalars(sa.select(Host).order_by(Host.name)) if "network" in h.roles
    ]
    if not hosts:
        return None
    load = dict(
        session.execute(
            sa.select(Router.host, sa.func.count())
            .where(Router.host.is_not(None))
            .group_by(Router.host)
        ).all()
    )
    return min(hosts, key=lambda h: (load.get(h.name, 0), h.name)).name


def attach_gateway(session: Session, r: Router, network_id: str) -> None:
    network = session.get(ExternalNetwork, network_id)
    if network is None:
        raise NotFound("external_network", network_id)
    r.external_ip = allocate_external(session, network, r.id)


def allocate_external(session: Session, network: ExternalNetwork, owner_id: str) -> str:
    spans = ipam.pool_spans(network.allocation_pools)
    candidates = ipam.address_candidates(spans, lambda: used_external(session, network.id), set())
    try:
        value = ipam.insert_unique(
            session,
            candidates,
            lambda a: ExternalIp(
                external_network_id=network.id,
                address=str(ipaddress.IPv4Address(a)),
                owner_id=owner_id,
            ),
        )
    except StopIteration as exc:
        raise Exhausted(f"external network {network.id} has no free address left") from exc
    return str(ipaddress.IPv4Address(value))


def check_routes(session: Session, r: Router, routes: list[dict[str, str]]) -> None:
    """Each nexthop must sit on one of the router's subnets, as Neutron requires."""
    nets = [
        ipaddress.ip_network(s.cidr)
        for s in session.scalars(
            sa.select(Subnet)
            .join(RouterInterface, RouterInterface.subnet_id == Subnet.id)
            .where(RouterInterface.router_id == r.id)
        )
    ]
    for i, route in enumerate(routes):
        hop = ipaddress.ip_address(route["nexthop"])
        if not any(hop in n for n in nets):
            raise Invalid(
                f"body.routes.{i}.nexthop",
                f"{hop} is not on any subnet attached to this router",
            )


@router.post("", status_code=status.HTTP_201_CREATED, responses=problems(401, 403, 404, 409, 422))
def create_router(
    body: RouterCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    who: TenantDep,
    notifier: NotifierDep,
) -> RouterOut:
    assert who.tenant_id is not None
    owned(session, Vpc, body.vpc_id, who, "vpc")
    if body.routes:
        raise Invalid("body.routes.0.nexthop", "a new router has no subnets to reach a nexthop")
    quotas.check(session, who.tenant_id, "routers", Router)
    r = Router(id=new_id(), tenant_id=who.tenant_id, host=schedule(session), **body.model_dump())
    if body.external_network_id is not None:
        # before the insert: an unknown network is a 404 (not an FK error), and the row
        # goes in whole at revision 1
        attach_gateway(session, r, body.external_network_id)
    session.add(r)
    session.flush()
    notifier.resources_changed(session, "router", {r.id})
    created(request, response, f"/v1/routers/{r.id}", r)
    return render(session, r)


@router.get("", responses=problems(400, 401, 422))
def list_routers(
    session: SessionDep,
    who: PrincipalDep,
    vpc_id: str | None = None,
    name: str | None = None,
    tag: str | None = None,
    external_network_id: str | None = None,
    limit: Limit = 100,
    page_token: PageToken = None,
) -> RouterList:
    stmt = scoped(sa.select(Router), Router, who.tenant_id)
    stmt = filtered(
        session,
        Router,
        stmt,
        {"vpc_id": vpc_id, "name": name, "tag": tag, "external_network_id": external_network_id},
    )
    rows, cursor = page(session, Router, stmt, limit, decode_token(page_token))
    return RouterList(
        items=[render(session, r) for r in rows], next_page_token=encode_token(cursor)
    )


@router.get("/{router_id}", responses=problems(401, 404))
def get_router(
    router_id: str, response: Response, session: SessionDep, who: PrincipalDep
) -> RouterOut:
    r = owned(session, Router, router_id, who, "router")
    set_etag(response, r)
    return render(session, r)


@router.patch("/{router_id}", responses=problems(401, 404, 409, 412, 422))
def update_router(
    router_id: str,
    body: RouterUpdate,
    request: Request,
    response: Response,
    session: SessionDep,
    who: PrincipalDep,
    notifier: NotifierDep,
) -> RouterOut:
    r = owned(session, Router, router_id, who, "router")
    check_if_match(request, r)
    changes = body.changes()
    if "routes" in changes:
        check_routes(session, r, changes["routes"])
    if "external_network_id" in changes and changes["external_network_id"] != r.external_network_id:
        fips = floating_ips_via_router(session, r.id)
        if fips:
            raise InUse(
                "floating IPs use this router's gateway", [("floating_ip", f) for f in fips]
            )
        release_external(session, r.id)  # a Core DELETE: nothing of `r` is flushed early
        if changes["external_network_id"] is not None:
            attach_gateway(session, r, changes["external_network_id"])
        else:
            r.external_ip = None
        r.touch()
    if apply_changes(r, changes):
        r.status = "pending"
    session.flush()
    notifier.resources_changed(session, "router", {r.id})
    set_etag(response, r)
    return render(session, r)


@router.delete(
    "/{router_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(401, 404, 409, 412)
)
def delete_router(
    router_id: str, request: Request, session: SessionDep, who: PrincipalDep, notifier: NotifierDep
) -> None:
    r = owned(session, Router, router_id, who, "router")
    check_if_match(request, r)
    fips = floating_ips_via_router(session, r.id)
    if fips:
        raise InUse(
            "floating IPs are associated through this router", [("floating_ip", f) for f in fips]
        )
    ifaces = interfaces_of_router(session, r.id)
    notifier.subnets_changed(session, {i.subnet_id for i in ifaces}, r.host)
    for iface in ifaces:  # service-made legs go with the router
        port = session.get(Port, iface.port_id)
        session.delete(iface)
        session.flush()
        if port is not None:
            session.delete(port)
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
    who: TenantDep,
    notifier: NotifierDep,
) -> RouterInterfaceOut:
    r = owned(session, Router, router_id, who, "router")
    subnet = owned(session, Subnet, body.subnet_id, who, "subnet")
    if subnet.vpc_id != r.vpc_id:
        raise Invalid("body.subnet_id", "the subnet belongs to another VPC than the router")
    existing = interface_of_subnet(session, subnet.id)
    if existing is not None:
        raise Conflict(
            f"subnet {subnet.id} already has an interface on router {existing.router_id}"
        )
    if session.scalar(
        sa.select(Port.id).where(Port.subnet_id == subnet.id, Port.ip_address == subnet.gateway_ip)
    ):
        raise Conflict(f"the gateway address {subnet.gateway_ip} is used by a port")
    port = Port(
        tenant_id=r.tenant_id,
        subnet_id=subnet.id,
        name=f"router-interface-{r.id[:8]}",
        ip_address=subnet.gateway_ip,
        mac_address=ipam.random_mac(),
        device_owner=ROUTER_INTERFACE,
        device_id=r.id,
        host=r.host,
    )
    session.add(port)
    session.flush()
    session.add(RouterInterface(router_id=r.id, subnet_id=subnet.id, port_id=port.id))
    r.touch()
    r.status = "pending"
    session.flush()
    notifier.subnets_changed(session, {subnet.id}, r.host)
    response.headers["Location"] = (
        str(request.base_url).rstrip("/") + f"/v1/routers/{r.id}/interfaces/{subnet.id}"
    )
    return RouterInterfaceOut(
        router_id=r.id, subnet_id=subnet.id, port_id=port.id, ip_address=port.ip_address
    )


@router.get("/{router_id}/interfaces", responses=problems(401, 404))
def list_router_interfaces(
    router_id: str, session: SessionDep, who: PrincipalDep
) -> list[RouterInterfaceOut]:
    r = owned(session, Router, router_id, who, "router")
    out = []
    for iface in interfaces_of_router(session, r.id):
        port = session.get(Port, iface.port_id)
        assert port is not None
        out.append(
            RouterInterfaceOut(
                router_id=r.id,
                subnet_id=iface.subnet_id,
                port_id=port.id,
                ip_address=port.ip_address,
            )
        )
    return out


@router.get("/{router_id}/interfaces/{subnet_id}", responses=problems(401, 404))
def get_router_interface(
    router_id: str, subnet_id: str, session: SessionDep, who: PrincipalDep
) -> RouterInterfaceOut:
    """The interface a POST's Location names."""
    r = owned(session, Router, router_id, who, "router")
    iface = interface_of_subnet(session, subnet_id)
    port = session.get(Port, iface.port_id) if iface is not None else None
    if iface is None or iface.router_id != r.id or port is None:
        raise NotFound("router interface", f"{router_id}/{subnet_id}")
    return RouterInterfaceOut(
        router_id=r.id, subnet_id=subnet_id, port_id=port.id, ip_address=port.ip_address
    )


@router.delete(
    "/{router_id}/interfaces/{subnet_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 404, 409),
)
def remove_router_interface(
    router_id: str, subnet_id: str, session: SessionDep, who: PrincipalDep, notifier: NotifierDep
) -> None:
    r = owned(session, Router, router_id, who, "router")
    iface = interface_of_subnet(session, subnet_id)
    if iface is None or iface.router_id != r.id:
        raise NotFound("router interface", f"{router_id}/{subnet_id}")
    fips = list(
        session.scalars(
            sa.select(FloatingIp.id)
            .join(Port, Port.id == FloatingIp.port_id)
            .where(FloatingIp.router_id == r.id, Port.subnet_id == subnet_id)
        )
    )
    if fips:
        raise InUse(
            "floating IPs reach ports of this subnet through the router",
            [("floating_ip", f) for f in fips],
        )
    hop_nets = ipaddress.ip_network(session.get(Subnet, subnet_id).cidr)  # type: ignore[union-attr]
    if any(ipaddress.ip_address(rt["nexthop"]) in hop_nets for rt in r.routes):
        raise Conflict(
            "a static route of the router uses a nexthop on this subnet; remove it first"
        )
    port = session.get(Port, iface.port_id)
    session.delete(iface)
    session.flush()
    if port is not None:
        session.delete(port)
    notifier.subnets_changed(session, {subnet_id}, r.host)
    r.touch()
    r.status = "pending"
