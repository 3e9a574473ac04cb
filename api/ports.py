"""Ports: an address, a MAC and security groups on a subnet, bound to a host's netns."""

from __future__ import annotations

from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, status
from pydantic import Field
from sqlalchemy.orm import Session

from api.deps import NotifierDep, PrincipalDep, SessionDep, TenantDep
from api.errors import Conflict, Invalid, NotFound, problems
from api.netcheck import DnsLabel, HostName, IfName, IPv4, Mac, NetnsName
from api.rest.pages import Page, PagesDep
from api.rest.preconditions import Lookup, LookupDep, ResourceRoute, kind_of
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
from api.services import dns_names, network_types, quotas
from api.services.port_allocation import allocate_port, check_fixed_ip, check_fixed_mac, set_groups
from api.services.port_binding import check_binding, check_host
from models import Port, SecurityGroup, Subnet, Vpc
from models.loadbalancer import LB_VIP
from models.network import DHCP, DHCP_CONFIG, ROUTER_INTERFACE, in_security_group, vpc_of_subnet
from models.routing import disassociate_port

router = APIRouter(prefix="/v1/ports", tags=["ports"], route_class=ResourceRoute)

GroupIds = Annotated[list[str], Field(max_length=16)]
IpConfig = Literal["static", "dhcp"]
IP_CONFIG_DOC = (
    "static: the agent configures the address; dhcp: the interface comes up without one "
    "and the workload runs its own DHCP client, which gets the same IPAM address."
)
DNS_NAME_DOC = "A DNS label, unique in the VPC: resolves as <dns_name>.<the VPC's dns_domain>."


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
    ip_config: IpConfig = Field(default="static", description=IP_CONFIG_DOC)
    dns_name: DnsLabel | None = Field(default=None, description=DNS_NAME_DOC)
    tags: Tags = []


class PortUpdate(Patch):
    immutable = frozenset({"subnet_id", "ip_address", "mac_address"})
    name: Name | None = NotNull()
    description: Description | None = NotNull()
    host: HostName | None = None
    netns: NetnsName | None = None
    interface_name: IfName | None = NotNull()
    security_group_ids: GroupIds | None = NotNull()
    ip_config: IpConfig | None = NotNull()
    dns_name: DnsLabel | None = Field(default=None, description="null removes the name.")
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
    ip_config: IpConfig
    dns_name: str | None
    tags: list[str]


class PortList(Page[PortOut]):
    pass


def render(session: Session, port: Port) -> PortOut:
    subnet = session.get(Subnet, port.subnet_id)
    assert subnet is not None
    return PortOut.model_validate(
        {
            **{k: getattr(port, k) for k in PortOut.model_fields if k != "vpc_id"},
            "vpc_id": subnet.vpc_id,
        }
    )


def subnet_with_vpc(session: Session, subnet_id: str, tenant_id: str) -> tuple[Subnet, Vpc]:
    """The tenant's subnet (404 otherwise) and its VPC, in one query: every create needs
    both."""
    row = session.execute(
        sa.select(Subnet, Vpc)
        .join(Vpc, Vpc.id == Subnet.vpc_id)
        .where(Subnet.id == subnet_id, Subnet.tenant_id == tenant_id)
    ).first()
    if row is None:
        raise NotFound(kind_of(Subnet), subnet_id)
    subnet, vpc = row
    return subnet, vpc


def resolve_groups(lookup: Lookup, vpc: Vpc, ids: list[str] | None, field: str) -> list[str]:
    """The port's groups: the VPC's default one unless named; each once, of its VPC."""
    if ids is None:
        return [vpc.default_security_group_id] if vpc.default_security_group_id else []
    if len(set(ids)) != len(ids):
        raise Invalid(field, "lists a security group twice")
    for i, gid in enumerate(ids):
        group = lookup.get(SecurityGroup, gid)
        if group.vpc_id != vpc.id:
            raise Invalid(f"{field}.{i}", f"security group {gid} belongs to another VPC")
    return ids


def check_ip_config(subnet: Subnet, ip_config: str | None) -> None:
    if ip_config == DHCP_CONFIG and not subnet.enable_dhcp:
        raise Invalid("body.ip_config", f"subnet {subnet.id} has DHCP disabled (enable_dhcp)")


@router.post("", status_code=status.HTTP_201_CREATED, responses=problems(401, 403, 404, 409, 422))
def create_port(
    body: PortCreate,
    session: SessionDep,
    who: TenantDep,
    lookup: LookupDep,
    notifier: NotifierDep,
) -> PortOut:
    assert who.tenant_id is not None
    subnet, vpc = subnet_with_vpc(session, body.subnet_id, who.tenant_id)
    groups = resolve_groups(lookup, vpc, body.security_group_ids, "body.security_group_ids")
    groups = network_types.port_groups(subnet, groups, body.security_group_ids)
    if body.ip_address is not None:
        check_fixed_ip(session, subnet, body.ip_address, "body.ip_address")
    if body.mac_address is not None:
        check_fixed_mac(session, subnet, body.mac_address)
    check_host(session, body.host, "body.host")
    network_types.check_port_host(session, subnet, body.host)
    check_ip_config(subnet, body.ip_config)
    check_binding(session, who.tenant_id, body.host, body.netns, body.interface_name)
    quotas.check(session, who.tenant_id, "ports", Port)
    fields = body.model_dump(exclude={"subnet_id"})
    fields.update(tenant_id=who.tenant_id, security_group_ids=groups)
    port = allocate_port(session, subnet, fields)
    notifier.subnets_changed(session, {subnet.id}, port.host)
    if port.dns_name is not None:  # a new port holds no name to release
        dns_names.claim(session, port.id, vpc.id, port.dns_name)
        notifier.names_changed(session, vpc.id)
    notifier.members_changed(session, set(groups))
    return render(session, port)


@router.get("", responses=problems(400, 401, 422))
def list_ports(
    pages: PagesDep,
    session: SessionDep,
    who: PrincipalDep,
    subnet_id: str | None = None,
    host: str | None = None,
    name: str | None = None,
    tag: str | None = None,
    device_id: str | None = None,
    ip_address: str | None = None,
    security_group_id: str | None = None,
) -> PortList:
    filters = {"subnet_id": subnet_id, "host": host, "name": name, "tag": tag}
    filters |= {"device_id": device_id, "ip_address": ip_address}
    in_group = () if security_group_id is None else (in_security_group(security_group_id),)
    return pages.of(
        PortList, Port, who, filters, render=lambda p: render(session, p), where=in_group
    )


@router.get("/{port_id}", responses=problems(401, 404))
def get_port(port_id: str, session: SessionDep, lookup: LookupDep) -> PortOut:
    return render(session, lookup.target(Port, port_id))


def _not_service_owned(port: Port) -> None:
    if port.device_owner == ROUTER_INTERFACE:
        raise Conflict(
            f"port {port.id} belongs to router {port.device_id}; "
            "change it through the router's interfaces"
        )
    if port.device_owner == DHCP:
        raise Conflict(
            f"port {port.id} is the DHCP/DNS service port of subnet {port.device_id}; "
            "it goes with the subnet (or with enable_dhcp=false)"
        )
    if port.device_owner == LB_VIP:
        raise Conflict(
            f"port {port.id} is the VIP of load balancer {port.device_id}; "
            "it goes with the load balancer"
        )


@router.patch("/{port_id}", responses=problems(401, 404, 409, 412, 422))
def update_port(
    port_id: str,
    body: PortUpdate,
    session: SessionDep,
    lookup: LookupDep,
    notifier: NotifierDep,
) -> PortOut:
    port = lookup.target(Port, port_id)
    _not_service_owned(port)
    old_host = port.host
    changes = body.changes(port)
    if changes.get("host", port.host) != port.host:
        check_host(session, changes["host"], "body.host")
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
    subnet = session.get(Subnet, port.subnet_id)
    assert subnet is not None
    if "ip_config" in changes:
        check_ip_config(subnet, changes["ip_config"])
    if changes.get("host", port.host) != port.host:
        network_types.check_port_host(session, subnet, changes["host"])
    renamed = "dns_name" in changes and changes["dns_name"] != port.dns_name
    if renamed:
        dns_names.claim(session, port.id, subnet.vpc_id, changes["dns_name"])
    old_groups = set(port.security_group_ids)
    changed = apply_changes(port, changes)
    if groups is not None and groups != port.security_group_ids:
        vpc = session.get(Vpc, subnet.vpc_id)
        assert vpc is not None
        resolved = resolve_groups(lookup, vpc, groups, "body.security_group_ids")
        set_groups(port, network_types.port_groups(subnet, resolved, groups))
        port.touch()
        changed = True
    if changed:
        port.status = "pending"
        session.flush()
        notifier.subnets_changed(session, {port.subnet_id}, old_host, port.host)
        if renamed:
            notifier.names_changed(session, subnet.vpc_id)
        if old_groups != set(port.security_group_ids) or old_host != port.host:
            # only membership or placement changes what remote-group sets hold
            notifier.members_changed(session, old_groups | set(port.security_group_ids))
    session.flush()
    return render(session, port)


@router.delete(
    "/{port_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(401, 404, 409, 412)
)
def delete_port(
    port_id: str, session: SessionDep, lookup: LookupDep, notifier: NotifierDep
) -> None:
    port = lookup.target(Port, port_id)
    _not_service_owned(port)
    disassociate_port(session, port.id)  # as Neutron does: its floating IP stays, unmapped
    notifier.subnets_changed(session, {port.subnet_id}, port.host)
    if port.dns_name is not None:
        notifier.names_changed(session, vpc_of_subnet(session, port.subnet_id))
        dns_names.claim(session, port.id, "", None)
    notifier.members_changed(session, set(port.security_group_ids))
    session.delete(port)
