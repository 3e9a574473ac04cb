"""A router's legs: one service-made port per attached subnet, at the subnet's gateway IP,
and the static routes whose nexthops those legs reach.

The user attaches and detaches subnets; the legs' ports are the service's own (device_owner
`router_interface`) and go with the interface or the router, never blocking the user.
"""

from __future__ import annotations

import ipaddress

from sqlalchemy.orm import Session

from api.errors import Conflict, Invalid
from api.services import external_ips, ipam, network_types
from models import ExternalNetwork, Port, Router, RouterInterface, Subnet, placement
from models.base import bump
from models.network import ROUTER_INTERFACE, address_taken
from models.routing import interface_of_subnet, subnets_of_router


def add_leg(session: Session, r: Router, subnet: Subnet) -> Port:
    if subnet.vpc_id != r.vpc_id:
        raise Invalid("body.subnet_id", "the subnet belongs to another VPC than the router")
    network_types.check_router_leg(subnet)
    existing = interface_of_subnet(session, subnet.id)
    if existing is not None:
        raise Conflict(
            f"subnet {subnet.id} already has an interface on router {existing.router_id}"
        )
    network = session.get(ExternalNetwork, r.external_network_id or "")
    if network is not None:
        external_ips.check_overlap(network, {subnet.id: subnet.cidr})
    if address_taken(session, subnet.id, subnet.gateway_ip):
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
    bump(session, r, **placement.status_of(r))  # attaches at once must not fail each other
    session.flush()
    return port


def remove_leg(session: Session, iface: RouterInterface) -> None:
    """The interface and its port (the interface row first: it references the port)."""
    port = session.get(Port, iface.port_id)
    session.delete(iface)
    session.flush()
    if port is not None:
        session.delete(port)


def check_routes(session: Session, r: Router, routes: list[dict[str, str]]) -> None:
    """Each nexthop must sit on one of the router's subnets, as Neutron requires."""
    nets = [ipaddress.ip_network(s.cidr) for s in subnets_of_router(session, r.id)]
    for i, route in enumerate(routes):
        hop = ipaddress.ip_address(route["nexthop"])
        if not any(hop in n for n in nets):
            raise Invalid(
                f"body.routes.{i}.nexthop",
                f"{hop} is not on any subnet attached to this router",
            )
