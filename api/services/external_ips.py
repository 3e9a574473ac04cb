"""Addresses on external networks, for router gateways and floating IPs alike.

Both draw from the network's pools through one `external_ips` table, whose unique
(network, address) constraint keeps two owners from ever holding one address.
"""

from __future__ import annotations

import ipaddress
import random

from sqlalchemy.orm import Session

from api.errors import Conflict, Exhausted, NotFound
from api.services import ipam
from models import ExternalIp, ExternalNetwork, Router
from models.routing import release_external, subnets_of_router, used_external

_RNG = random.SystemRandom()


def allocate(session: Session, network: ExternalNetwork, owner_id: str) -> str:
    spans = ipam.pool_spans(network.allocation_pools)
    used = ipam.scan_used(lambda: used_external(session, network.id))
    candidates = ipam.address_candidates(spans, used, set(), _RNG)
    try:
        row = ipam.insert_unique(
            session,
            candidates,
            lambda a: ExternalIp(
                external_network_id=network.id,
                address=str(ipaddress.IPv4Address(a)),
                owner_id=owner_id,
            ),
        )
    except StopIteration as exc:
        raise Exhausted(f"external network {network.id} has no free address left") from exc
    return row.address


def external_network(session: Session, network_id: str) -> ExternalNetwork:
    """External networks are shared: every tenant may name one."""
    network = session.get(ExternalNetwork, network_id)
    if network is None:
        raise NotFound("external_network", network_id)
    return network


def check_overlap(network: ExternalNetwork, cidrs: dict[str, str]) -> None:
    """An external network overlapping a subnet of the router would make its addresses
    ambiguous to the router: 409 naming both. `cidrs` is subnet id -> CIDR."""
    ext = ipaddress.ip_network(network.cidr)
    for sid, cidr in sorted(cidrs.items()):
        if ipaddress.ip_network(cidr).overlaps(ext):
            raise Conflict(
                f"external network {network.id} ({network.cidr}) overlaps subnet {sid} "
                f"({cidr}) attached to the router"
            )


def attach_gateway(session: Session, r: Router, network_id: str) -> None:
    network = external_network(session, network_id)
    check_overlap(network, {s.id: s.cidr for s in subnets_of_router(session, r.id)})
    r.external_ip = allocate(session, network, r.id)


def change_gateway(session: Session, r: Router, network_id: str | None) -> None:
    """Move the router's gateway to another external network, or remove it."""
    release_external(session, r.id)  # a Core DELETE: nothing of `r` is flushed early
    if network_id is not None:
        attach_gateway(session, r, network_id)
    else:
        r.external_ip = None
    r.touch()
