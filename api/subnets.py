"""Subnets: a CIDR inside the VPC, its own VNI, gateway and allocation pools."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from fastapi import APIRouter, status
from pydantic import Field
from sqlalchemy.orm import Session

from api.deps import NotifierDep, PrincipalDep, SessionDep, TenantDep
from api.errors import Exhausted, Invalid, problems
from api.netcheck import (
    HostRoute,
    IPv4,
    PhysnetName,
    Pool,
    PoolError,
    SubnetCidr,
    default_pools,
    validate_pools,
)
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
from api.services import blockers, dhcp, ipam, network_types, quotas
from api.services.scheduling import schedule_dhcp
from models import NetworkAcl, Subnet, Vpc
from models.nacl import mark_acl_changed
from models.network import lock_vpc_subnets, subnets_of_vpc

router = APIRouter(prefix="/v1/subnets", tags=["subnets"], route_class=ResourceRoute)

Nameservers = Annotated[list[IPv4], Field(max_length=5)]
HostRoutes = Annotated[list[HostRoute], Field(max_length=32)]
Pools = Annotated[list[Pool], Field(min_length=1, max_length=16)]
NetworkType = Literal["vxlan", "flat", "routed"]
Vlan = Annotated[int, Field(ge=1, le=4094)]


class SubnetCreate(Input):
    vpc_id: str
    name: Name = ""
    description: Description = ""
    cidr: SubnetCidr
    gateway_ip: IPv4 | None = Field(
        default=None, description="Defaults to the first usable address."
    )
    allocation_pools: Pools | None = Field(
        default=None, description="Defaults to every usable address but the gateway."
    )
    dns_nameservers: Nameservers = Field(
        default=[], description="Upstream resolvers the VPC resolver forwards other names to."
    )
    host_routes: HostRoutes = Field(
        default=[], description="Also handed out by DHCP as classless static routes."
    )
    enable_dhcp: bool | None = Field(
        default=None,
        description="Run the subnet's DHCP and DNS service (dnsmasq); vxlan only (default).",
    )
    network_type: NetworkType = Field(
        default="vxlan",
        description="vxlan (overlay), flat (macvlan on a physical network) or routed "
        "(no encapsulation, from an address scope). Immutable.",
    )
    physical_network: PhysnetName | None = Field(
        default=None, description="flat: the physical network (see /v1/physical-networks)."
    )
    segmentation_id: Vlan | None = Field(
        default=None, description="flat: a VLAN id; every host carrying it must have 8021q."
    )
    tags: Tags = []


class SubnetUpdate(Patch):
    immutable = frozenset(
        {"vpc_id", "cidr", "gateway_ip", "network_type", "physical_network", "segmentation_id"}
    )
    name: Name | None = NotNull()
    description: Description | None = NotNull()
    allocation_pools: Pools | None = NotNull()
    dns_nameservers: Nameservers | None = NotNull()
    host_routes: HostRoutes | None = NotNull()
    enable_dhcp: bool | None = NotNull()
    network_acl_id: str | None = Field(
        default=None, description="The subnet's network ACL; null: none (all allowed)."
    )
    tags: Tags | None = NotNull()


class SubnetOut(RealisedOutput):
    vpc_id: str
    name: str
    description: str
    cidr: str
    gateway_ip: str
    allocation_pools: list[Pool]
    dns_nameservers: list[str]
    host_routes: list[HostRoute]
    enable_dhcp: bool
    tags: list[str]
    vni: int
    dhcp_host: str | None = Field(description="The network host serving DHCP and DNS.")
    dhcp_address: str | None = Field(
        description="The service's address: DHCP server and the workloads' DNS resolver."
    )
    network_acl_id: str | None = None
    network_type: str
    physical_network: str | None
    segmentation_id: int | None
    address_scope_id: str | None = Field(description="routed: the scope it draws from.")


class SubnetList(Page[SubnetOut]):
    pass


def render(session: Session, subnet: Subnet) -> SubnetOut:
    port = dhcp.service_port(session, subnet.id)
    return SubnetOut.model_validate(
        {
            **{k: getattr(subnet, k) for k in SubnetOut.model_fields if k != "dhcp_address"},
            "dhcp_address": port.ip_address if port is not None else None,
        }
    )


def _pools(
    net: ipaddress.IPv4Network, gateway: ipaddress.IPv4Address, pools: list[Pool] | None
) -> list[dict[str, str]]:
    if pools is None:
        result = default_pools(net, gateway)
        if not result:
            raise Invalid("body.cidr", f"{net} leaves no address besides the gateway")
        return result
    try:
        validate_pools(net, gateway, pools)
    except PoolError as err:
        raise Invalid(f"body.{err.field}", err.message) from err
    return [p.model_dump() for p in pools]


def _check_placement(session: Session, vpc: Vpc, net: ipaddress.IPv4Network) -> None:
    vpc_net = ipaddress.ip_network(vpc.cidr)
    if not net.subnet_of(vpc_net):  # type: ignore[arg-type]
        raise Invalid("body.cidr", f"{net} is not inside the VPC's CIDR {vpc.cidr}")
    lock_vpc_subnets(session, vpc.id)
    for sibling in subnets_of_vpc(session, vpc.id):
        if net.overlaps(ipaddress.ip_network(sibling.cidr)):
            raise Invalid(
                "body.cidr", f"{net} overlaps subnet {sibling.id} ({sibling.cidr}) of this VPC"
            )


@router.post("", status_code=status.HTTP_201_CREATED, responses=problems(401, 403, 404, 409, 422))
def create_subnet(
    body: SubnetCreate,
    session: SessionDep,
    who: TenantDep,
    lookup: LookupDep,
    notifier: NotifierDep,
) -> SubnetOut:
    assert who.tenant_id is not None
    vpc = lookup.get(Vpc, body.vpc_id)
    net = ipaddress.IPv4Network(body.cidr)
    _check_placement(session, vpc, net)
    if body.gateway_ip is None:
        gateway = net.network_address + 1
    else:
        gateway = ipaddress.IPv4Address(body.gateway_ip)
        if gateway not in net or gateway in (net.network_address, net.broadcast_address):
            raise Invalid("body.gateway_ip", f"{gateway} is not a usable address of {net}")
    pools = _pools(net, gateway, body.allocation_pools)
    typed = network_types.subnet_fields(session, who.tenant_id, body, net)
    quotas.check(session, who.tenant_id, "subnets", Subnet)
    fields = body.model_dump(exclude={"gateway_ip", "allocation_pools"})
    fields.update(gateway_ip=str(gateway), allocation_pools=pools, tenant_id=who.tenant_id)
    fields.update(typed, enable_dhcp=body.network_type == "vxlan" and body.enable_dhcp is not False)
    if fields["enable_dhcp"]:
        fields["dhcp_host"] = schedule_dhcp(session)
    try:
        subnet = ipam.insert_unique(
            session, ipam.vni_candidates(), lambda v: Subnet(vni=v, **fields)
        )
    except StopIteration as exc:  # pragma: no cover - 16M VNIs
        raise Exhausted("no VNI is free") from exc
    if subnet.enable_dhcp and dhcp.enable(session, subnet) is not None:
        notifier.hosts_changed(session, {subnet.dhcp_host})  # the service starts at once
    return render(session, subnet)


@router.get("", responses=problems(400, 401, 422))
def list_subnets(
    pages: PagesDep,
    session: SessionDep,
    who: PrincipalDep,
    vpc_id: str | None = None,
    name: str | None = None,
    tag: str | None = None,
    cidr: str | None = None,
) -> SubnetList:
    filters = {"vpc_id": vpc_id, "name": name, "tag": tag, "cidr": cidr}
    return pages.of(SubnetList, Subnet, who, filters, render=lambda s: render(session, s))


@router.get("/{subnet_id}", responses=problems(401, 404))
def get_subnet(subnet_id: str, session: SessionDep, lookup: LookupDep) -> SubnetOut:
    return render(session, lookup.target(Subnet, subnet_id))


@router.patch("/{subnet_id}", responses=problems(401, 404, 409, 412, 422))
def update_subnet(
    subnet_id: str,
    body: SubnetUpdate,
    session: SessionDep,
    lookup: LookupDep,
    notifier: NotifierDep,
) -> SubnetOut:
    subnet = lookup.target(Subnet, subnet_id)
    changes = body.changes(subnet)
    network_types.check_dhcp(subnet, changes.get("enable_dhcp"))
    acl_id = changes.get("network_acl_id")
    network_types.check_acl(subnet, acl_id)
    if acl_id is not None and lookup.get(NetworkAcl, acl_id).vpc_id != subnet.vpc_id:
        raise Invalid("body.network_acl_id", "the network ACL belongs to another VPC")
    old_acl = subnet.network_acl_id
    if body.allocation_pools is not None:
        net = ipaddress.IPv4Network(subnet.cidr)
        changes["allocation_pools"] = _pools(
            net, ipaddress.IPv4Address(subnet.gateway_ip), body.allocation_pools
        )
    old_host = subnet.dhcp_host
    if apply_changes(subnet, changes):
        subnet.status = "pending"
        if changes.get("enable_dhcp") is False:
            dhcp.disable(session, subnet)
        elif subnet.enable_dhcp:
            dhcp.enable(session, subnet)
        session.flush()
        notifier.subnets_changed(session, {subnet.id}, old_host, subnet.dhcp_host)
        if subnet.network_acl_id != old_acl:
            for acl_ref in {a for a in (old_acl, subnet.network_acl_id) if a}:
                mark_acl_changed(session, session.get(NetworkAcl, acl_ref))  # hosts changed
    session.flush()
    return render(session, subnet)


@router.delete(
    "/{subnet_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(401, 404, 409, 412)
)
def delete_subnet(
    subnet_id: str, session: SessionDep, lookup: LookupDep, notifier: NotifierDep
) -> None:
    subnet = lookup.target(Subnet, subnet_id)
    blockers.subnet(session, subnet.id)
    notifier.subnets_changed(session, {subnet.id}, subnet.dhcp_host)
    port = dhcp.service_port(session, subnet.id)  # the service's own port goes with it
    if port is not None:
        session.delete(port)
        session.flush()
    session.delete(subnet)
