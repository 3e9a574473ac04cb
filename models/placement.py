"""Where routers run: the least-loaded network host that is up, and moving routers off
hosts that went down (missed heartbeats). Shared by the API (a new router) and the
controller's sweep (failover), so both pick hosts the same way. Subnets' DHCP/DNS
services move the same way (`reschedule_dhcp`), their service port with them: the same
address and MAC, so leases, resolv.conf files and clients' caches stay right.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from models.carriers import NO_NETWORK_HOST, carrying_hosts
from models.host import network_hosts
from models.network import DHCP, ROUTER_INTERFACE, Port, Subnet, dhcp_load
from models.routing import FloatingIp, Router, RouterInterface, router_load

__all__ = [
    "NO_NETWORK_HOST",
    "changed",
    "pick_host",
    "place",
    "rehome",
    "reschedule",
    "reschedule_dhcp",
    "status_of",
]


def status_of(r: Router) -> dict[str, str | None]:
    """A changed router's status: it waits for its host, or says it has none."""
    if r.host:
        return {"status": "pending", "status_detail": None}
    return {"status": "error", "status_detail": NO_NETWORK_HOST}


def changed(r: Router) -> None:
    """A router's desired state changed (set on the object, flushed with it)."""
    for key, value in status_of(r).items():
        setattr(r, key, value)


def pick_host(session: Session, now: datetime, load: dict[str, int] | None = None) -> str | None:
    """The up network host carrying the fewest routers (ties by name); None if none is up."""
    hosts = network_hosts(session, now)
    if not hosts:
        return None
    load = router_load(session) if load is None else load
    return min(hosts, key=lambda h: (load.get(h.name, 0), h.name)).name


class Placeable(Protocol):
    """What `rehome` moves: a router or a load balancer."""

    @property
    def host(self) -> str | None: ...

    @property
    def status(self) -> str: ...


P = TypeVar("P", bound=Placeable)


def rehome(
    session: Session,
    now: datetime,
    stranded: list[P],
    load: dict[str, int],
    place_one: Callable[[Session, P, str | None], set[str]],
) -> tuple[set[str], list[P]]:
    """Put each of `stranded` on the least-loaded up network host (counting each move in
    `load`), or on none while none is up; one already in error on no host is left alone.
    Returns the hosts whose documents change and the ones moved."""
    hosts: set[str] = set()
    moved: list[P] = []
    for item in stranded:
        target = pick_host(session, now, load)
        if target is None and item.host is None and item.status == "error":
            continue  # already told: nothing is up
        if target is not None:
            load[target] = load.get(target, 0) + 1
        hosts |= place_one(session, item, target)
        moved.append(item)
    return hosts, moved


def place(session: Session, r: Router, host: str | None) -> set[str]:
    """Move router `r` (its legs with it) to `host`; the hosts whose documents change:
    the old and new host, and every host sharing a subnet with a leg (its FDB entry
    for the leg's MAC now points at another VTEP)."""
    old = r.host
    subnets = set(
        session.scalars(
            sa.select(RouterInterface.subnet_id).where(RouterInterface.router_id == r.id)
        )
    )
    touched = carrying_hosts(session, "subnet", subnets) if subnets else set()
    r.host = host
    r.touch()
    changed(r)
    session.execute(
        sa.update(Port)
        .where(Port.device_id == r.id, Port.device_owner == ROUTER_INTERFACE)
        .values(host=host)
    )
    session.flush()
    if subnets:
        touched |= carrying_hosts(session, "subnet", subnets)
    return {h for h in touched | {old, host} if h}


def reschedule(session: Session, now: datetime) -> tuple[set[str], dict[str, set[str]]]:
    """Routers on a host that is down (or on none) go to the least-loaded up network
    host. Returns the hosts to sync and the resources whose status to refresh."""
    up = {h.name for h in network_hosts(session, now)}
    stranded = list(
        session.scalars(
            sa.select(Router)
            .where(sa.or_(Router.host.is_(None), Router.host.not_in(up) if up else sa.true()))
            .order_by(Router.id)
            .with_for_update()
        )
    )
    refresh: dict[str, set[str]] = {"router": set(), "floating_ip": set(), "port": set()}
    if not stranded:
        return set(), refresh
    hosts, moved = rehome(session, now, stranded, router_load(session), place)
    for r in moved:
        refresh["router"].add(r.id)
        refresh["floating_ip"] |= set(
            session.scalars(sa.select(FloatingIp.id).where(FloatingIp.router_id == r.id))
        )
        refresh["port"] |= set(
            session.scalars(
                sa.select(RouterInterface.port_id).where(RouterInterface.router_id == r.id)
            )
        )
    return hosts, refresh


def reschedule_dhcp(session: Session, now: datetime) -> tuple[set[str], set[str]]:
    """DHCP/DNS services on a network host that is down go to the up network host
    serving the fewest (nothing moves while none is up). Returns the hosts to sync (the
    old and new host and every host carrying the subnet: its FDB entry for the service
    port's MAC now points at another VTEP) and the service ports whose status to refresh."""
    up = [h.name for h in network_hosts(session, now)]
    if not up:
        return set(), set()
    stranded = list(
        session.scalars(
            sa.select(Subnet)
            .where(Subnet.dhcp_host.is_not(None), Subnet.dhcp_host.not_in(up))
            .order_by(Subnet.id)
            .with_for_update()
        )
    )
    hosts: set[str] = set()
    ports: set[str] = set()
    load = dhcp_load(session) if stranded else {}
    for subnet in stranded:
        target = min(up, key=lambda h: (load.get(h, 0), h))
        load[target] = load.get(target, 0) + 1
        hosts |= carrying_hosts(session, "subnet", {subnet.id}) | {subnet.dhcp_host or "", target}
        subnet.dhcp_host = target
        port = session.scalar(
            sa.select(Port).where(Port.subnet_id == subnet.id, Port.device_owner == DHCP)
        )
        if port is not None:
            port.host = target
            port.touch()
            ports.add(port.id)
        session.flush()
        hosts |= carrying_hosts(session, "subnet", {subnet.id})
    return {h for h in hosts if h}, ports
