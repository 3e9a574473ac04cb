"""Floating IPs: an external address, optionally mapped 1:1 to a port (DNAT + SNAT)."""

from __future__ import annotations

from fastapi import APIRouter, status
from pydantic import Field
from sqlalchemy.orm import Session

from api.deps import NotifierDep, PrincipalDep, SessionDep, TenantDep
from api.errors import problems
from api.rest.pages import Page, PagesDep
from api.rest.preconditions import LookupDep, ResourceRoute
from api.rest.schemas import (
    Description,
    Input,
    NotNull,
    Patch,
    RealisedOutput,
    Tags,
    apply_changes,
)
from api.services import external_ips, quotas
from api.services.fip_routing import router_for
from models import FloatingIp, Port
from models.base import new_id
from models.routing import release_external

router = APIRouter(prefix="/v1/floating-ips", tags=["floating-ips"], route_class=ResourceRoute)


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


class FloatingIpList(Page[FloatingIpOut]):
    pass


def render(session: Session, fip: FloatingIp) -> FloatingIpOut:
    port = session.get(Port, fip.port_id) if fip.port_id else None
    data = {k: getattr(fip, k) for k in FloatingIpOut.model_fields if k != "fixed_ip_address"}
    return FloatingIpOut.model_validate(
        {**data, "fixed_ip_address": port.ip_address if port else None}
    )


@router.post("", status_code=status.HTTP_201_CREATED, responses=problems(401, 403, 404, 409, 422))
def create_floating_ip(
    body: FloatingIpCreate,
    session: SessionDep,
    who: TenantDep,
    lookup: LookupDep,
    notifier: NotifierDep,
) -> FloatingIpOut:
    assert who.tenant_id is not None
    network = external_ips.external_network(session, body.external_network_id)
    quotas.check(session, who.tenant_id, "floating_ips", FloatingIp)
    fip = FloatingIp(
        id=new_id(), tenant_id=who.tenant_id, address="", **body.model_dump(exclude={"port_id"})
    )
    if body.port_id is not None:
        fip.router_id = router_for(session, lookup, fip, body.port_id)
        fip.port_id = body.port_id
    # the address first, so the row is inserted whole at revision 1 (no second UPDATE)
    fip.address = external_ips.allocate(session, network, fip.id)
    session.add(fip)
    session.flush()
    notifier.resources_changed(session, "floating_ip", {fip.id})
    return render(session, fip)


@router.get("", responses=problems(400, 401, 422))
def list_floating_ips(
    pages: PagesDep,
    session: SessionDep,
    who: PrincipalDep,
    external_network_id: str | None = None,
    port_id: str | None = None,
    router_id: str | None = None,
    tag: str | None = None,
) -> FloatingIpList:
    return pages.of(
        FloatingIpList,
        FloatingIp,
        who,
        {
            "external_network_id": external_network_id,
            "port_id": port_id,
            "router_id": router_id,
            "tag": tag,
        },
        render=lambda f: render(session, f),
    )


@router.get("/{floating_ip_id}", responses=problems(401, 404))
def get_floating_ip(floating_ip_id: str, session: SessionDep, lookup: LookupDep) -> FloatingIpOut:
    return render(session, lookup.target(FloatingIp, floating_ip_id))


@router.patch("/{floating_ip_id}", responses=problems(401, 404, 409, 412, 422))
def update_floating_ip(
    floating_ip_id: str,
    body: FloatingIpUpdate,
    session: SessionDep,
    lookup: LookupDep,
    notifier: NotifierDep,
) -> FloatingIpOut:
    fip = lookup.target(FloatingIp, floating_ip_id)
    changes = body.changes(fip)
    notifier.resources_changed(session, "floating_ip", {fip.id})  # its old router's host
    if "port_id" in changes:
        port_id = changes["port_id"]
        changes["router_id"] = router_for(session, lookup, fip, port_id) if port_id else None
    if apply_changes(fip, changes):
        fip.status = "pending"
    session.flush()
    notifier.resources_changed(session, "floating_ip", {fip.id})
    return render(session, fip)


@router.delete(
    "/{floating_ip_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 404, 412),
)
def delete_floating_ip(
    floating_ip_id: str, session: SessionDep, lookup: LookupDep, notifier: NotifierDep
) -> None:
    fip = lookup.target(FloatingIp, floating_ip_id)
    notifier.resources_changed(session, "floating_ip", {fip.id})
    release_external(session, fip.id)
    session.delete(fip)
