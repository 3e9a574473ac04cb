"""Ports: an address, a MAC and security groups on a subnet, bound to a host's netns."""

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
from api.deps import NotifierDep, Principal, PrincipalDep, SessionDep, TenantDep
from api.errors import Conflict, Exhausted, Invalid, problems
from api.netcheck import HostName, IfName, IPv4, Mac, NetnsName
from api.services import ipam, quotas
from models import Port, PortSecurityGroup, SecurityGroup, Subnet, Vpc
from models.network import address_taken, mac_taken, ports_in_netns, used_addresses
from models.query import filtered, page, scoped
from models.routing import floating_ip_of_port

router = APIRouter(prefix="/v1/ports", tags=["ports"])

GroupIds = Annotated[list[str], Field(max_length=16)]
ROUTER_INTERFACE = "router_interface"


class PortCreate(Input):
    subnet_id: str
    name: Name = ""
    description: Description = ""
    host: HostName | None = None
    netns: NetnsName | None = None
    interface_name: IfName = "eth0"
    ip_address: IPv4 | None = Field(default=None, description="Fixed IP; allocated if omitted.")
    mac_address: Mac | None = Field(default=None, description="Generated if omitted.")
    security_group_ids: GroupIds | None = Field(
        default=None, description="Defaults to the VPC's default security group."
    )
    tags: Tags = []


class PortUpdate(Patch):
    immutable = frozenset({"subnet_id", "ip_address", "mac_address"})
    name: Name | None = NotNull()
    description: Description | None = NotNull()
    host: HostName | None = None
    netns: NetnsName | None = None
    interface_name: IfName | None = NotNull()
    security_group_ids: GroupIds | None = NotNull()
    tags: Tags | None = NotNull()


class PortOut(RealisedOutput):
    subnet_id: str
    vpc_id: str
    name: str
    description: str
    host: str | None
    netns: str | None
    interface_name: str
    ip_address: str
    mac_address: str
    security_group_ids: list[str]
    device_owner: str
    device_id: str | None
    tags: list[str]


class PortList(BaseModel):
    items: list[PortOut]
    next_page_token: str | None = None


def render(session: Session, port: Port) -> PortOut:
    subnet = session.get(Subnet, port.subnet_id)
    assert subnet is not None
    return PortOut.model_validate(
        {
            **{k: getattr(port, k) for k in PortOut.model_fields if k != "vpc_id"},
            "vpc_id": subnet.vpc_id,
        }
    )


def resolve_groups(
    session: Session, who: Principal, vpc: Vpc, ids: list[str] | None, field: str
) -> list[str]:
    if ids is None:
        return [vpc.default_security_group_id] if vpc.default_security_group_id else []
    if len(set(ids)) != len(ids):
        raise Invalid(field, "lists a security group twice")
    for i, gid in enumerate(ids):
        group = owned(session, SecurityGroup, gid, who, "security_group")
        if group.vpc_id != vpc.id:
            raise Invalid(f"{field}.{i}", f"security group {gid} belongs to another VPC")
    return ids


def set_groups(port: Port, ids: list[str]) -> None:
    port.security_groups = [
        PortSecurityGroup(security_group_id=gid, position=i) for i, gid in enumerate(ids)
    ]


def check_fixed_ip(session: Session, subnet: Subnet, address: str, field: str) -> None:
    net = ipaddress.IPv4Network(subnet.cidr)
    ip = ipaddress.IPv4Address(address)
    if ip not in net:
        raise Invalid(field, f"{ip} is outside the subnet {net}")
    if ip in (net.network_address, net.broadcast_address):
        raise Invalid(field, f"{ip} is the network or broadcast address of {net}")
    if address == subnet.gateway_ip:
        raise Conflict(
            f"{ip} is the subnet's gateway address",
            errors=[{"field": field, "message": "is the gateway address"}],
        )
    owner = address_taken(session, subnet.id, address)
    if owner:
        raise Conflict(
            f"{ip} is already used by port {owner}",
            errors=[{"field": field, "message": f"already used by port {owner}"}],
        )


def check_binding(
    session: Session,
    tenant_id: str,
    host: str | None,
    netns: str | None,
    interface_name: str,
    port_id: str | None = None,
) -> None:
    """A workload namespace on a host is one tenant's, and each interface name in it is once.

    Namespace names are shared by every tenant on a host (as with any name a CNI caller
    gives), so the clash is reported without saying whose the other port is.
    """
    if not host or not netns:
        return
    for other in ports_in_netns(session, host, netns):
        if other.id == port_id:
            continue
        if other.tenant_id != tenant_id:
            raise Conflict(
                f"netns {netns!r} on host {host!r} is in use; choose another name",
                errors=[{"field": "body.netns", "message": "in use on this host"}],
            )
        if other.interface_name == interface_name:
            raise Conflict(
                f"netns {netns!r} on host {host!r} already has {interface_name} (port {other.id})",
                errors=[{"field": "body.interface_name", "message": "in use in this netns"}],
            )


def allocate_port(session: Session, subnet: Subnet, fields: dict[str, object]) -> Port:
    """Insert the port, allocating IP and MAC unless fixed; retries on collisions."""
    fixed_ip = fields.pop("ip_address", None)
    fixed_mac = fields.pop("mac_address", None)
    groups: list[str] = fields.pop("security_group_ids", [])  # type: ignore[assignment]
    made: list[Port] = []

    def make(address: int) -> Port:
        mac = fixed_mac or ipam.random_mac()
        port = Port(
            subnet_id=subnet.id,
            ip_address=str(ipaddress.IPv4Address(address)),
            mac_address=mac,
            **fields,
        )
        set_groups(port, groups)
        made.append(port)
        return port

    if fixed_ip is not None:
        # Same address again: a collision may be on the random MAC, which `make` redraws.
        candidates = iter([int(ipaddress.IPv4Address(str(fixed_ip)))] * 8)
    else:
        spans = ipam.pool_spans(subnet.allocation_pools)
        candidates = ipam.address_candidates(
            spans, lambda: used_addresses(session, subnet.id), set()
        )
    try:
        ipam.insert_unique(session, candidates, make)
    except StopIteration as exc:
        if fixed_ip is not None:
            raise Conflict(
                f"{fixed_ip} was taken by a concurrent request",
                errors=[{"field": "body.ip_address", "message": "already used"}],
            ) from exc
        raise Exhausted(f"subnet {subnet.id} ({subnet.cidr}) has no free address left") from exc
    return made[-1]


@router.post("", status_code=status.HTTP_201_CREATED, responses=problems(401, 403, 404, 409, 422))
def create_port(
    body: PortCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    who: TenantDep,
    notifier: NotifierDep,
) -> PortOut:
    assert who.tenant_id is not None
    subnet = owned(session, Subnet, body.subnet_id, who, "subnet")
    vpc = session.get(Vpc, subnet.vpc_id)
    assert vpc is not None
    groups = resolve_groups(session, who, vpc, body.security_group_ids, "body.security_group_ids")
    if body.ip_address is not None:
        check_fixed_ip(session, subnet, body.ip_address, "body.ip_address")
    if body.mac_address is not None and (owner := mac_taken(session, subnet.id, body.mac_address)):
        raise Conflict(
            f"MAC {body.mac_address} is already used by port {owner} on this subnet",
            errors=[{"field": "body.mac_address", "message": f"already used by port {owner}"}],
        )
    check_binding(session, who.tenant_id, body.host, body.netns, body.interface_name)
    quotas.check(session, who.tenant_id, "ports", Port)
    fields = body.model_dump(exclude={"subnet_id"})
    fields.update(tenant_id=who.tenant_id, security_group_ids=groups)
    port = allocate_port(session, subnet, fields)
    notifier.subnets_changed(session, {subnet.id}, port.host)
    created(request, response, f"/v1/ports/{port.id}", port)
    return render(session, port)


@router.get("", responses=problems(400, 401, 422))
def list_ports(
    session: SessionDep,
    who: PrincipalDep,
    subnet_id: str | None = None,
    host: str | None = None,
    name: str | None = None,
    tag: str | None = None,
    device_id: str | None = None,
    ip_address: str | None = None,
    security_group_id: str | None = None,
    limit: Limit = 100,
    page_token: PageToken = None,
) -> PortList:
    stmt = scoped(sa.select(Port), Port, who.tenant_id)
    stmt = filtered(
        session,
        Port,
        stmt,
        {
            "subnet_id": subnet_id,
            "host": host,
            "name": name,
            "tag": tag,
            "device_id": device_id,
            "ip_address": ip_address,
        },
    )
    if security_group_id is not None:
        stmt = stmt.where(
            Port.id.in_(
                sa.select(PortSecurityGroup.port_id).where(
                    PortSecurityGroup.security_group_id == security_group_id
                )
            )
        )
    rows, cursor = page(session, Port, stmt, limit, decode_token(page_token))
    return PortList(items=[render(session, r) for r in rows], next_page_token=encode_token(cursor))


@router.get("/{port_id}", responses=problems(401, 404))
def get_port(port_id: str, response: Response, session: SessionDep, who: PrincipalDep) -> PortOut:
    port = owned(session, Port, port_id, who, "port")
    set_etag(response, port)
    return render(session, port)


def _not_router_owned(port: Port) -> None:
    if port.device_owner == ROUTER_INTERFACE:
        raise Conflict(
            f"port {port.id} belongs to router {port.device_id}; "
            "change it through the router's interfaces"
        )


@router.patch("/{port_id}", responses=problems(401, 404, 409, 412, 422))
def update_port(
    port_id: str,
    body: PortUpdate,
    request: Request,
    response: Response,
    session: SessionDep,
    who: PrincipalDep,
    notifier: NotifierDep,
) -> PortOut:
    port = owned(session, Port, port_id, who, "port")
    check_if_match(request, port)
    _not_router_owned(port)
    old_host = port.host
    changes = body.changes()
    if {"host", "netns", "interface_name"} & changes.keys():
        check_binding(
            session,
            port.tenant_id,
            changes.get("host", port.host),
            changes.get("netns", port.netns),
            changes.get("interface_name", port.interface_name),
            port.id,
        )
    groups = changes.pop("security_group_ids", None)
    changed = apply_changes(port, changes)
    if groups is not None and groups != port.security_group_ids:
        subnet = session.get(Subnet, port.subnet_id)
        vpc = session.get(Vpc, subnet.vpc_id) if subnet else None
        assert vpc is not None
        set_groups(port, resolve_groups(session, who, vpc, groups, "body.security_group_ids"))
        port.touch()
        changed = True
    if changed:
        port.status = "pending"
        session.flush()
        notifier.subnets_changed(session, {port.subnet_id}, old_host, port.host)
    session.flush()
    set_etag(response, port)
    return render(session, port)


@router.delete(
    "/{port_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(401, 404, 409, 412)
)
def delete_port(
    port_id: str, request: Request, session: SessionDep, who: PrincipalDep, notifier: NotifierDep
) -> None:
    port = owned(session, Port, port_id, who, "port")
    check_if_match(request, port)
    _not_router_owned(port)
    fip = floating_ip_of_port(session, port.id)
    if fip is not None:  # as Neutron does: deleting a port disassociates its floating IP
        fip.port_id, fip.router_id = None, None
        fip.touch()
        session.flush()
    notifier.subnets_changed(session, {port.subnet_id}, port.host)
    session.delete(port)
