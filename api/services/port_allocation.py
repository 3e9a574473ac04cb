"""A port's address and MAC: fixed ones checked, free ones allocated, under concurrency.

The (subnet, ip) and (subnet, mac) unique constraints are the arbiters; the insert skips a
taken one (`ipam.insert_skipping_taken`) and tries the next candidate, so no two ports ever
share either.
"""

from __future__ import annotations

import ipaddress
import random
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from api.errors import Conflict, Exhausted, Invalid
from api.services import ipam
from models import Port, PortSecurityGroup, Subnet
from models.base import utcnow
from models.network import address_taken, first_free, mac_taken

_RNG = random.SystemRandom()


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


def check_fixed_mac(session: Session, subnet: Subnet, mac: str) -> None:
    owner = mac_taken(session, subnet.id, mac)
    if owner:
        raise Conflict(
            f"MAC {mac} is already used by port {owner} on this subnet",
            errors=[{"field": "body.mac_address", "message": f"already used by port {owner}"}],
        )


def allocate_port(session: Session, subnet: Subnet, fields: dict[str, Any]) -> Port:
    """Insert the port, allocating IP and MAC unless fixed; retries on collisions."""
    fixed_ip = fields.pop("ip_address", None)
    fixed_mac = fields.pop("mac_address", None)
    groups: list[str] = fields.pop("security_group_ids", [])
    now = utcnow()

    def values(address: int) -> dict[str, Any]:
        return {
            **fields,
            "subnet_id": subnet.id,
            "ip_address": str(ipaddress.IPv4Address(address)),
            "ip_int": address,
            "mac_address": fixed_mac or ipam.random_mac(),  # redrawn on each attempt
            "created_at": now,
            "updated_at": now,
        }

    if fixed_ip is not None:
        # Same address again: a collision may be on the random MAC, which `values` redraws.
        candidates = iter([int(ipaddress.IPv4Address(str(fixed_ip)))] * 8)
    else:
        spans = ipam.pool_spans(subnet.allocation_pools)
        candidates = ipam.address_candidates(
            spans,
            lambda start, end: first_free(session, subnet.id, start, end),
            set(),
            _RNG,
        )
    try:
        port = ipam.insert_skipping_taken(session, Port, candidates, values)
    except StopIteration as exc:
        if fixed_ip is not None:
            raise Conflict(
                f"{fixed_ip} was taken by a concurrent request",
                errors=[{"field": "body.ip_address", "message": "already used"}],
            ) from exc
        raise Exhausted(f"subnet {subnet.id} ({subnet.cidr}) has no free address left") from exc
    # Its group rows at once (the carrier counts include them from here on), in one
    # statement that also makes them the port's loaded collection: no unit-of-work flush.
    rows = [
        {"port_id": port.id, "security_group_id": gid, "position": i}
        for i, gid in enumerate(groups)
    ]
    members = list(session.scalars(_INSERT_MEMBERS, rows)) if rows else []
    members.sort(key=lambda m: m.position)
    set_committed_value(port, "security_groups", members)
    return port


_INSERT_MEMBERS = sa.insert(PortSecurityGroup).returning(PortSecurityGroup)
