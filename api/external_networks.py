"""External networks (admin-managed; every tenant may read them to pick one)."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, Field

from api.common import (
    Description,
    Input,
    Limit,
    Name,
    NotNull,
    Output,
    PageToken,
    Patch,
    Tags,
    apply_changes,
    check_if_match,
    created,
    decode_token,
    encode_token,
    set_etag,
)
from api.deps import AdminDep, PrincipalDep, SessionDep
from api.errors import InUse, Invalid, NotFound, problems
from api.netcheck import AnyCidr, IPv4, Pool, PoolError, default_pools, validate_pools
from models import ExternalNetwork
from models.query import filtered, page
from models.routing import users_of_external_network

router = APIRouter(prefix="/v1/external-networks", tags=["external-networks"])

Pools = Annotated[list[Pool], Field(min_length=1, max_length=16)]


class ExternalNetworkCreate(Input):
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


class ExternalNetworkList(BaseModel):
    items: list[ExternalNetworkOut]
    next_page_token: str | None = None


def _get(session: SessionDep, ident: str) -> ExternalNetwork:
    network = session.get(ExternalNetwork, ident)
    if network is None:
        raise NotFound("external_network", ident)
    return network


@router.post("", status_code=status.HTTP_201_CREATED, responses=problems(401, 403, 422))
def create_external_network(
    body: ExternalNetworkCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    _: AdminDep,
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
    created(request, response, f"/v1/external-networks/{network.id}", network)
    return ExternalNetworkOut.model_validate(network)


@router.get("", responses=problems(400, 401, 422))
def list_external_networks(
    session: SessionDep,
    _: PrincipalDep,
    name: str | None = None,
    tag: str | None = None,
    limit: Limit = 100,
    page_token: PageToken = None,
) -> ExternalNetworkList:
    stmt = filtered(
        session, ExternalNetwork, sa.select(ExternalNetwork), {"name": name, "tag": tag}
    )
    rows, cursor = page(session, ExternalNetwork, stmt, limit, decode_token(page_token))
    return ExternalNetworkList(
        items=[ExternalNetworkOut.model_validate(r) for r in rows],
        next_page_token=encode_token(cursor),
    )


@router.get("/{external_network_id}", responses=problems(401, 404))
def get_external_network(
    external_network_id: str, response: Response, session: SessionDep, _: PrincipalDep
) -> ExternalNetworkOut:
    network = _get(session, external_network_id)
    set_etag(response, network)
    return ExternalNetworkOut.model_validate(network)


@router.patch("/{external_network_id}", responses=problems(401, 403, 404, 412, 422))
def update_external_network(
    external_network_id: str,
    body: ExternalNetworkUpdate,
    request: Request,
    response: Response,
    session: SessionDep,
    _: AdminDep,
) -> ExternalNetworkOut:
    network = _get(session, external_network_id)
    check_if_match(request, network)
    apply_changes(network, body.changes())
    session.flush()
    set_etag(response, network)
    return ExternalNetworkOut.model_validate(network)


@router.delete(
    "/{external_network_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 403, 404, 409, 412),
)
def delete_external_network(
    external_network_id: str, request: Request, session: SessionDep, _: AdminDep
) -> None:
    network = _get(session, external_network_id)
    check_if_match(request, network)
    users = users_of_external_network(session, network.id)
    if users:
        raise InUse("routers or floating IPs use this external network", users)
    session.delete(network)
