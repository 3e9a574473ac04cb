"""Floating IPs: an external address, optionally mapped 1:1 to a port (DNAT + SNAT)."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from api.common import (
    Description,
    Input,
    Limit,
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
from api.deps import NotifierDep, Principal, PrincipalDep, SessionDep, TenantDep
from api.errors import Conflict, Invalid, NotFound, problems
from api.ports import ROUTER_INTERFACE
from api.routers import allocate_external
from api.services import quotas
from models import ExternalNetwork, FloatingIp, Port, Router
from models.base import new_id
from models.query import filtered, page, scoped
from models.routing import floating_ip_of_port, interface_of_subnet, release_external

router = APIRouter(prefix="/v1/floating-ips", tags=["floating-ips"])


class FloatingIpCreate(Input):
    external_network_id: str
    port_id: str | None = Field(default=None, description="Associate at once with this port.")
    description: Description = ""
    tags: Tags = []


class FloatingIpUpdate(Patch):
    immutable = frozenset({"external_network_id"})
    port_id: str | None = Field(
        default=None, description="A port to associate; null disassociates."
    )
    description: Description | None = NotNull()
    tags: Tags | None = NotNull()


class FloatingIpOut(RealisedOutput):
    external_network_id: str
    port_id: str | None
    description: str
    tags: list[str]
    address: str
    router_id: str | None
    fixed_ip_address: str | None = None


class FloatingIpList(BaseModel):
    items: list[FloatingIpOut]
    next_page_token: str | None = None


def render(session: Session, fip: FloatingIp) -> FloatingIpOut:
    port = session.get(Port, fip.port_id) if fip.port_id else None
    data = {k: getattr(fip, k) for k in FloatingIpOut.model_fields if k != "fixed_ip_address"}
    return FloatingIpOut.model_validate(
        {**data, "fixed_ip_address": port.ip_address if port else None}
    )


def route_for(session: Session, who: Principal, fip: FloatingIp, port_id: str) -> str:
    """The router that carries this port's subnet to the FIP's external network."""
    port = owned(session, Port, port_id, who, "port")
    if port.tenant_id != fip.tenant_id:  # even the admin cannot map one tenant's IP to another
        raise NotFound("port", port_id)
    if port.device_owner == ROUTER_INTERFACE:
        raise Invalid("body.port_id", "a router interface cannot take a floating IP")
    other = floating_ip_of_port(session, port.id)
    if other is not None and other.id != fip.id:
        raise Conflict(f"port {port.id} already has floating IP {other.id} ({other.address})")
    iface = interface_of_subnet(session, port.subnet_id)
    if iface is None:
        raise Conflict(
            f"port {port.id}'s subnet {port.subnet_id} is not attached to a router; "
            "add a router interface on it first"
        )
    r = session.get(Router, iface.router_id)
    assert r is not None
    if r.external_network_id != fip.external_network_id:
        raise Conflict(
            f"router {r.id}, which serves the port's subnet, has no gateway on external network "
            f"{fip.external_network_id}; set its external_network_id first"
        )
    return r.id


@router.post("", status_code=status.HTTP_201_CREATED, responses=problems(401, 403, 404, 409, 422))
def create_floating_ip(
    body: FloatingIpCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    who: TenantDep,
    notifier: NotifierDep,
) -> FloatingIpOut:
    assert who.tenant_id is not None
    network = session.get(ExternalNetwork, body.external_network_id)
    if network is None:
        raise NotFound("external_network", body.external_network_id)
    quotas.check(session, who.tenant_id, "floating_ips", FloatingIp)
    fip = FloatingIp(
        id=new_id(), tenant_id=who.tenant_id, address="", **body.model_dump(exclude={"port_id"})
    )
    if body.port_id is not None:
        fip.router_id = route_for(session, who, fip, body.port_id)
        fip.port_id = body.port_id
    # the address first, so the row is inserted whole at revision 1 (no second UPDATE)
    fip.address = allocate_external(session, network, fip.id)
    session.add(fip)
    session.flush()
    notifier.resources_changed(session, "floating_ip", {fip.id})
    created(request, response, f"/v1/floating-ips/{fip.id}", fip)
    return render(session, fip)


@router.get("", responses=problems(400, 401, 422))
def list_floating_ips(
    session: SessionDep,
    who: PrincipalDep,
    external_network_id: str | None = None,
    port_id: str | None = None,
    router_id: str | None = None,
    tag: str | None = None,
    limit: Limit = 100,
    page_token: PageToken = None,
) -> FloatingIpList:
    stmt = scoped(sa.select(FloatingIp), FloatingIp, who.tenant_id)
    stmt = filtered(
        session,
        FloatingIp,
        stmt,
        {
            "external_network_id": external_network_id,
            "port_id": port_id,
            "router_id": router_id,
            "tag": tag,
        },
    )
    rows, cursor = page(session, FloatingIp, stmt, limit, decode_token(page_token))
    return FloatingIpList(
        items=[render(session, r) for r in rows], next_page_token=encode_token(cursor)
    )


@router.get("/{floating_ip_id}", responses=problems(401, 404))
def get_floating_ip(
    floating_ip_id: str, response: Response, session: SessionDep, who: PrincipalDep
) -> FloatingIpOut:
    fip = owned(session, FloatingIp, floating_ip_id, who, "floating_ip")
    set_etag(response, fip)
    return render(session, fip)


@router.patch("/{floating_ip_id}", responses=problems(401, 404, 409, 412, 422))
def update_floating_ip(
    floating_ip_id: str,
    body: FloatingIpUpdate,
    request: Request,
    response: Response,
    session: SessionDep,
    who: PrincipalDep,
    notifier: NotifierDep,
) -> FloatingIpOut:
    fip = owned(session, FloatingIp, floating_ip_id, who, "floating_ip")
    check_if_match(request, fip)
    changes = body.changes()
    notifier.resources_changed(session, "floating_ip", {fip.id})  # its old router's host
    if "port_id" in changes:
        port_id = changes["port_id"]
        changes["router_id"] = route_for(session, who, fip, port_id) if port_id else None
    if apply_changes(fip, changes):
        fip.status = "pending"
    session.flush()
    notifier.resources_changed(session, "floating_ip", {fip.id})
    set_etag(response, fip)
    return render(session, fip)


@router.delete(
    "/{floating_ip_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 404, 412),
)
def delete_floating_ip(
    floating_ip_id: str,
    request: Request,
    session: SessionDep,
    who: PrincipalDep,
    notifier: NotifierDep,
) -> None:
    fip = owned(session, FloatingIp, floating_ip_id, who, "floating_ip")
    check_if_match(request, fip)
    notifier.resources_changed(session, "floating_ip", {fip.id})
    release_external(session, fip.id)
    session.delete(fip)
