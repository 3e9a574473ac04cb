"""A subnet's DHCP/DNS service port: made by the service, never blocking the user.

A subnet with `enable_dhcp` gets one port (device_owner `network:dhcp`, device_id the
subnet) at an address IPAM allocates from its pools, bound to the network host the
service is scheduled on. It goes with the subnet, or when DHCP is turned off. Its address
is the highest free one: user ports fill a subnet from the bottom, so the service stays
out of the way of the low fixed addresses people like to pick.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.orm import Session

from api.errors import Exhausted, InUse
from api.services import ipam
from api.services.scheduling import schedule_dhcp
from models import Port, Subnet
from models.network import DHCP, DHCP_CONFIG, first_free


def service_port(session: Session, subnet_id: str) -> Port | None:
    return session.scalar(
        sa.select(Port).where(Port.subnet_id == subnet_id, Port.device_owner == DHCP)
    )


def _highest_free(session: Session, subnet: Subnet) -> Iterator[int]:
    """Free pool addresses from the top (one gap query each), skipping lost races."""
    tried: set[int] = set()
    for start, end in sorted(ipam.pool_spans(subnet.allocation_pools), reverse=True):
        top = end
        while top >= start:
            pick = first_free(session, subnet.id, start, top, downward=True)
            if pick is None:
                break
            top = pick - 1
            if pick not in tried:
                tried.add(pick)
                yield pick


def enable(session: Session, subnet: Subnet) -> Port | None:
    """Schedule the service and allocate its port; None while no network host exists
    (the subnet then has no DHCP/DNS service until a later change schedules it)."""
    existing = service_port(session, subnet.id)
    if existing is not None:
        return existing
    host = subnet.dhcp_host or schedule_dhcp(session)
    if subnet.dhcp_host != host:
        subnet.dhcp_host = host
    if host is None:
        return None

    def make(address: int) -> Port:
        return Port(
            tenant_id=subnet.tenant_id,
            subnet_id=subnet.id,
            name=f"dhcp-{subnet.id[:8]}",
            ip_address=str(ipaddress.IPv4Address(address)),
            mac_address=ipam.random_mac(),
            device_owner=DHCP,
            device_id=subnet.id,
            host=host,
        )

    try:
        return ipam.insert_unique(session, _highest_free(session, subnet), make)
    except StopIteration as exc:
        raise Exhausted(
            f"subnet {subnet.id} ({subnet.cidr}) has no free address for its DHCP service"
        ) from exc


def disable(session: Session, subnet: Subnet) -> None:
    """Remove the service; refused while ports of the subnet expect DHCP."""
    clients = session.scalars(
        sa.select(Port.id).where(Port.subnet_id == subnet.id, Port.ip_config == DHCP_CONFIG)
    )
    blocking = [("port", p) for p in clients]
    if blocking:
        raise InUse("ports of the subnet use ip_config=dhcp", blocking)
    port = service_port(session, subnet.id)
    if port is not None:
        session.delete(port)
    subnet.dhcp_host = None
    session.flush()
