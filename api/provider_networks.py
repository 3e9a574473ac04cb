"""Admin-made networks for the other network types (DESIGN §4):

- physical networks: provider segments that `flat` subnets sit on; agents map each name to
  a host interface. Tenants use one when it is `shared` or lists them in `tenant_ids`.
- address scopes: blocks that `routed` subnets draw from. Without encapsulation the
  underlay cannot tell overlapping addresses apart, so routed CIDRs never overlap across
  tenants; scopes never overlap each other either.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

from fastapi import APIRouter, status
from pydantic import Field
from sqlalchemy.orm import Session

from api.deps import AdminDep, PrincipalDep, SessionDep
from api.errors import Conflict, Invalid, problems
from api.netcheck import AnyCidr, PhysnetName
from api.rest.pages import Page, PagesDep
from api.rest.preconditions import LookupDep, ResourceRoute
from api.rest.schemas import Description, Input, Name, NotNull, Output, Patch, apply_changes
from api.services import blockers
from models import AddressScope, PhysicalNetwork, Tenant
from models.nettypes import (
    grants_of,
    physical_network_named,
    scopes,
    set_grants,
)

router = APIRouter(tags=["provider-networks"], route_class=ResourceRoute)
DELETE: dict[str, Any] = {
    "status_code": status.HTTP_204_NO_CONTENT,
    "responses": problems(401, 403, 404, 409, 412),
}

TenantIds = Annotated[list[str], Field(max_length=1000)]


class PhysicalNetworkCreate(Input):
    name: PhysnetName = Field(description="What agents map with --physical-interface NAME=IFACE.")
    description: Description = ""
    shared: bool = Field(default=False, description="Every tenant may put flat subnets on it.")
    tenant_ids: TenantIds = Field(default=[], description="Tenants granted its use.")


class PhysicalNetworkUpdate(Patch):
    immutable = frozenset({"name"})
    description: Description | None = NotNull()
    shared: bool | None = NotNull()
    tenant_ids: TenantIds | None = NotNull()


class PhysicalNetworkOut(Output):
    name: str
    description: str
    shared: bool
    tenant_ids: list[str]


class PhysicalNetworkList(Page[PhysicalNetworkOut]):
    pass


def _render_physnet(session: Session, net: PhysicalNetwork) -> PhysicalNetworkOut:
    fields = {k: getattr(net, k) for k in PhysicalNetworkOut.model_fields if k != "tenant_ids"}
    return PhysicalNetworkOut.model_validate({**fields, "tenant_ids": grants_of(session, net.id)})


def _grant(session: Session, net: PhysicalNetwork, tenant_ids: list[str]) -> None:
    for i, tenant_id in enumerate(tenant_ids):
        if session.get(Tenant, tenant_id) is None:
            raise Invalid(f"body.tenant_ids.{i}", f"no tenant {tenant_id}")
    set_grants(session, net.id, tenant_ids)


@router.post(
    "/v1/physical-networks",
    status_code=status.HTTP_201_CREATED,
    responses=problems(401, 403, 409, 422),
)
def create_physical_network(
    body: PhysicalNetworkCreate, session: SessionDep, _: AdminDep
) -> PhysicalNetworkOut:
    if physical_network_named(session, body.name) is not None:
        raise Conflict(f"a physical network named {body.name!r} exists")
    net = PhysicalNetwork(**body.model_dump(exclude={"tenant_ids"}))
    session.add(net)
    session.flush()
    _grant(session, net, body.tenant_ids)
    return _render_physnet(session, net)


@router.get("/v1/physical-networks", responses=problems(400, 401, 403, 422))
def list_physical_networks(
    pages: PagesDep, session: SessionDep, who: AdminDep, name: str | None = None
) -> PhysicalNetworkList:
    return pages.of(
        PhysicalNetworkList,
        PhysicalNetwork,
        who,
        {"name": name},
        render=lambda n: _render_physnet(session, n),
    )


@router.get("/v1/physical-networks/{physical_network_id}", responses=problems(401, 403, 404))
def get_physical_network(
    physical_network_id: str, session: SessionDep, _: AdminDep, lookup: LookupDep
) -> PhysicalNetworkOut:
    return _render_physnet(session, lookup.target(PhysicalNetwork, physical_network_id))


@router.patch(
    "/v1/physical-networks/{physical_network_id}", responses=problems(401, 403, 404, 412, 422)
)
def update_physical_network(
    physical_network_id: str,
    body: PhysicalNetworkUpdate,
    session: SessionDep,
    _: AdminDep,
    lookup: LookupDep,
) -> PhysicalNetworkOut:
    """Revoking a grant keeps the tenant's existing subnets; it stops new ones."""
    net = lookup.target(PhysicalNetwork, physical_network_id)
    changes = body.changes(net)
    tenant_ids = changes.pop("tenant_ids", None)
    changed = apply_changes(net, changes)
    if tenant_ids is not None and sorted(set(tenant_ids)) != grants_of(session, net.id):
        _grant(session, net, tenant_ids)
        if not changed:
            net.touch()
    session.flush()
    return _render_physnet(session, net)


@router.delete("/v1/physical-networks/{physical_network_id}", **DELETE)
def delete_physical_network(
    physical_network_id: str, session: SessionDep, _: AdminDep, lookup: LookupDep
) -> None:
    net = lookup.target(PhysicalNetwork, physical_network_id)
    session.delete(blockers.physical_network(session, net))


# -- address scopes ----------------------------------------------------------------------------


class AddressScopeCreate(Input):
    name: Name = ""
    description: Description = ""
    cidr: AnyCidr = Field(description="The block routed subnets draw from.")


class AddressScopeUpdate(Patch):
    immutable = frozenset({"cidr"})
    name: Name | None = NotNull()
    description: Description | None = NotNull()


class AddressScopeOut(Output):
    name: str
    description: str
    cidr: str


class AddressScopeList(Page[AddressScopeOut]):
    pass


@router.post(
    "/v1/address-scopes",
    status_code=status.HTTP_201_CREATED,
    responses=problems(401, 403, 409, 422),
)
def create_address_scope(
    body: AddressScopeCreate, session: SessionDep, _: AdminDep
) -> AddressScopeOut:
    net = ipaddress.IPv4Network(body.cidr)
    if net.prefixlen > 30:
        raise Invalid("body.cidr", f"prefix /{net.prefixlen} is too long; the longest is /30")
    for other in scopes(session):
        if net.overlaps(ipaddress.IPv4Network(other.cidr)):
            raise Conflict(
                f"{net} overlaps address scope {other.id} ({other.cidr}): routed addresses "
                "must be unique on the underlay"
            )
    scope = AddressScope(**body.model_dump())
    session.add(scope)
    session.flush()
    return AddressScopeOut.model_validate(scope)


@router.get("/v1/address-scopes", responses=problems(400, 401, 422))
def list_address_scopes(
    pages: PagesDep, who: PrincipalDep, name: str | None = None
) -> AddressScopeList:
    """Every tenant may read the scopes, to pick a routed subnet's CIDR."""
    return pages.of(AddressScopeList, AddressScope, who, {"name": name})


@router.get("/v1/address-scopes/{address_scope_id}", responses=problems(401, 404))
def get_address_scope(address_scope_id: str, lookup: LookupDep) -> AddressScopeOut:
    return AddressScopeOut.model_validate(lookup.target(AddressScope, address_scope_id))


@router.patch("/v1/address-scopes/{address_scope_id}", responses=problems(401, 403, 404, 412, 422))
def update_address_scope(
    address_scope_id: str,
    body: AddressScopeUpdate,
    session: SessionDep,
    _: AdminDep,
    lookup: LookupDep,
) -> AddressScopeOut:
    scope = lookup.target(AddressScope, address_scope_id)
    apply_changes(scope, body.changes(scope))
    session.flush()
    return AddressScopeOut.model_validate(scope)


@router.delete("/v1/address-scopes/{address_scope_id}", **DELETE)
def delete_address_scope(address_scope_id: str, _: AdminDep, lookup: LookupDep) -> None:
    scope = lookup.target(AddressScope, address_scope_id)
    lookup.session.delete(blockers.address_scope(lookup.session, scope))
