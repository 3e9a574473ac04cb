"""Why a DELETE (or a change) is refused with 409 and `blocking_resources` (DESIGN §3).

What the user attached blocks until the user removes it; what the service made itself (the
VPC's default group, router interface ports) goes with its parent and never appears here.
"""

from __future__ import annotations

import ipaddress

from sqlalchemy.orm import Session

from api.errors import Conflict, InUse
from models import AddressScope, PhysicalNetwork, Router, SecurityGroup, Subnet
from models.loadbalancer import (
    load_balancers_of_vpc,
    load_balancers_on_host,
    load_balancers_on_subnet,
    members_on_subnet,
)
from models.nacl import acls_of_vpc, subnets_with_acl
from models.nettypes import subnets_in_scope, subnets_on_physical_network
from models.network import (
    dhcp_subnets_on_host,
    ports_in_group,
    ports_of_subnet,
    subnets_of_vpc,
    user_ports_on_host,
    vpcs_of_tenant,
)
from models.routing import (
    floating_ips_of_tenant,
    floating_ips_through,
    floating_ips_via_router,
    interface_of_subnet,
    interfaces_of_router,
    routers_of_vpc,
    routers_on_host,
    users_of_external_network,
)
from models.security import groups_of_vpc, rules_referencing

Blocking = list[tuple[str, str]]


def _refuse(detail: str, blocking: Blocking) -> None:
    if blocking:
        raise InUse(detail, blocking)


def vpc(session: Session, vpc_id: str) -> None:
    blocking = [("subnet", s.id) for s in subnets_of_vpc(session, vpc_id)]
    blocking += [("router", r) for r in routers_of_vpc(session, vpc_id)]
    blocking += [("security_group", g) for g in groups_of_vpc(session, vpc_id, user_only=True)]
    blocking += [("network_acl", a) for a in acls_of_vpc(session, vpc_id)]
    blocking += [("load_balancer", lb) for lb in load_balancers_of_vpc(session, vpc_id)]
    _refuse(
        "the VPC still has subnets, routers, security groups, network ACLs or load balancers",
        blocking,
    )


def network_acl(session: Session, acl_id: str) -> None:
    blocking = [("subnet", s) for s in subnets_with_acl(session, acl_id)]
    _refuse("subnets are associated with the network ACL", blocking)


def subnet(session: Session, subnet_id: str) -> None:
    blocking = [("port", p) for p in ports_of_subnet(session, subnet_id, user_only=True)]
    iface = interface_of_subnet(session, subnet_id)
    if iface is not None:
        blocking.append(("router", iface.router_id))
    blocking += [("load_balancer", lb) for lb in load_balancers_on_subnet(session, subnet_id)]
    blocking += [("member", m) for m in members_on_subnet(session, subnet_id)]
    _refuse(
        "the subnet still has ports, a router interface, load balancers or pool members",
        blocking,
    )


def security_group(session: Session, group: SecurityGroup) -> None:
    if group.is_default:
        raise Conflict("the default security group goes with its VPC; delete the VPC")
    blocking = [("port", p) for p in ports_in_group(session, group.id)]
    blocking += [("security_group_rule", r) for r in rules_referencing(session, group.id)]
    _refuse("the security group is used by ports or other groups' rules", blocking)


def router(session: Session, router_id: str) -> None:
    """As in Neutron, a router with interfaces cannot go: automation removes them first
    (each names its interface path, /v1/routers/{router}/interfaces/{subnet})."""
    blocking = [("floating_ip", f) for f in floating_ips_via_router(session, router_id)]
    blocking += [
        ("router_interface", f"{router_id}/{i.subnet_id}")
        for i in interfaces_of_router(session, router_id)
    ]
    _refuse("the router still has interfaces or floating IPs through it", blocking)


def router_gateway(session: Session, router_id: str) -> None:
    """The gateway (external network) of a router changes: no floating IP may use it."""
    fips = floating_ips_via_router(session, router_id)
    _refuse("floating IPs use this router's gateway", [("floating_ip", f) for f in fips])


def router_interface(session: Session, r: Router, subnet: Subnet) -> None:
    fips = floating_ips_through(session, r.id, subnet.id)
    _refuse(
        "floating IPs reach ports of this subnet through the router",
        [("floating_ip", f) for f in fips],
    )
    hop_net = ipaddress.ip_network(subnet.cidr)
    if any(ipaddress.ip_address(rt["nexthop"]) in hop_net for rt in r.routes):
        raise Conflict(
            "a static route of the router uses a nexthop on this subnet; remove it first"
        )


def external_network(session: Session, network_id: str) -> None:
    users = users_of_external_network(session, network_id)
    _refuse("routers or floating IPs use this external network", users)


def tenant(session: Session, tenant_id: str) -> None:
    blocking = [("vpc", i) for i in vpcs_of_tenant(session, tenant_id)]
    blocking += [("floating_ip", i) for i in floating_ips_of_tenant(session, tenant_id)]
    _refuse("the tenant still owns resources; delete them first", blocking)


def host(session: Session, name: str) -> None:
    blocking = [("port", p) for p in user_ports_on_host(session, name)]
    blocking += [("router", r) for r in routers_on_host(session, name)]
    blocking += [("subnet", s) for s in dhcp_subnets_on_host(session, name)]
    blocking += [("load_balancer", lb) for lb in load_balancers_on_host(session, name)]
    _refuse(
        "ports, routers, load balancers or subnets' DHCP/DNS services are bound to this host",
        blocking,
    )


def physical_network(session: Session, net: PhysicalNetwork) -> PhysicalNetwork:
    """The physical network, when no flat subnet is on it (to delete it)."""
    blocking = [("subnet", s) for s in subnets_on_physical_network(session, net.name)]
    _refuse("flat subnets are on the physical network", blocking)
    return net


def address_scope(session: Session, scope: AddressScope) -> AddressScope:
    """The scope, when no routed subnet draws from it (to delete it)."""
    blocking = [("subnet", s) for s in subnets_in_scope(session, scope.id)]
    _refuse("routed subnets draw from the address scope", blocking)
    return scope
