"""External networks (admin-managed; every tenant may read them to pick one)."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from fastapi import APIRouter, status
from pydantic import ConfigDict, Field

from api.deps import AdminDep, PrincipalDep, SessionDep
from api.errors import Invalid, problems
from api.netcheck import AnyCidr, IPv4, Pool, PoolError, default_pools, validate_pools
from api.rest.pages import Page, PagesDep
from api.rest.preconditions import LookupDep, ResourceRoute
from api.rest.schemas import (
    Description,
    Input,
    Name,
    NotNull,
    Output,
    Patch,
    Tags,
    apply_changes,
)
from api.services import blockers
from models import ExternalNetwork

router = APIRouter(
    prefix="/v1/external-networks", tags=["external-networks"], route_class=ResourceRoute
)

Pools = Annotated[list[Pool], Field(min_length=1, max_length=16)]


class ExternalNetworkCreate(Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name": "internet", "cidr": "203.0.113.0/24", "gateway_ip": "203.0.113.1"}
            ]
        }
    )

    name: Name = ""
    description: Description = ""
    cidr: AnyCidr
    gateway_ip: IPv4 = Field(description="The upstream router on this network.")
    allocation_pools: Pools | None = None
    tags: Tags = []


class ExternalNetworkUpdate(Patch):
    immutable = frozenset({"cidr", "gateway_ip", "allocation_pools"})
    name: Name | None = NotNull()
    description: Description | None = NotNull()
    tags: Tags | None = NotNull()


class ExternalNetworkOut(Output):
    name: str
    description: str
    cidr: str
    gateway_ip: str
    allocation_pools: list[Pool]
    tags: list[str]


class ExternalNetworkList(Page[ExternalNetworkOut]):
    pass


@router.post("", status_code=status.HTTP_201_CREATED, responses=problems(401, 403, 422))
def create_external_network(
    body: ExternalNetworkCreate, session: SessionDep, _: AdminDep
) -> ExternalNetworkOut:
    net = ipaddress.IPv4Network(body.cidr)
    if net.prefixlen > 30:
        raise Invalid(
            "body.cidr", f"prefix /{net.prefixlen} is too long; the longest allowed is /30"
        )
    gateway = ipaddress.IPv4Address(body.gateway_ip)
    if gateway not in net or gateway in (net.network_address, net.broadcast_address):
        raise Invalid("body.gateway_ip", f"{gateway} is not a usable address of {net}")
    if body.allocation_pools is None:
        pools = default_pools(net, gateway)
    else:
        try:
            validate_pools(net, gateway, body.allocation_pools)
        except PoolError as err:
            raise Invalid(f"body.{err.field}", err.message) from err
        pools = [p.model_dump() for p in body.allocation_pools]
    fields = body.model_dump(exclude={"allocation_pools"})
    network = ExternalNetwork(allocation_pools=pools, **fields)
    session.add(network)
    session.flush()
    return ExternalNetworkOut.model_validate(network)


@router.get("", responses=problems(400, 401, 422))
def list_external_networks(
    pages: PagesDep, who: PrincipalDep, name: str | None = None, tag: str | None = None
) -> ExternalNetworkList:
    return pages.of(ExternalNetworkList, ExternalNetwork, who, {"name": name, "tag": tag})


@router.get("/{external_network_id}", responses=problems(401, 404))
def get_external_network(external_network_id: str, lookup: LookupDep) -> ExternalNetworkOut:
    return ExternalNetworkOut.model_validate(lookup.target(ExternalNetwork, external_network_id))


@router.patch("/{external_network_id}", responses=problems(401, 403, 404, 412, 422))
def update_external_network(
    external_network_id: str,
    body: ExternalNetworkUpdate,
    session: SessionDep,
    _: AdminDep,
    lookup: LookupDep,
) -> ExternalNetworkOut:
    network = lookup.target(ExternalNetwork, external_network_id)
    apply_changes(network, body.changes(network))
    session.flush()
    return ExternalNetworkOut.model_validate(network)


@router.delete(
    "/{external_network_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 403, 404, 409, 412),
)
def delete_external_network(
    external_network_id: str, session: SessionDep, _: AdminDep, lookup: LookupDep
) -> None:
    network = lookup.target(ExternalNetwork, external_network_id)
    blockers.external_network(session, network.id)
    session.delete(network)
