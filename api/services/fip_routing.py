"""Which router carries a floating IP: the one with a leg on its port's subnet and a
gateway on the floating IP's external network (DNAT and SNAT happen there)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from api.errors import Conflict, Invalid, NotFound
from api.rest.preconditions import Lookup
from models import FloatingIp, Port, Router
from models.network import ROUTER_INTERFACE
from models.routing import floating_ip_of_port, interface_of_subnet


def router_for(session: Session, lookup: Lookup, fip: FloatingIp, port_id: str) -> str:
    """The router that carries this port's subnet to the FIP's external network."""
    port = lookup.get(Port, port_id)
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
