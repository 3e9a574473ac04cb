"""Moving load balancers off network hosts that went down, as routers move
(models/placement.py): the controller's sweep puts each one stranded on a down host (or
on none) on the least-loaded up network host; its VIP port goes with it, and every host
sharing the VIP's subnet relearns where the VIP's MAC lives."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from models.carriers import NO_NETWORK_HOST, carrying_hosts
from models.host import network_hosts
from models.loadbalancer import (
    LB_VIP,
    HealthMonitor,
    Listener,
    LoadBalancer,
    Member,
    Pool,
    load_balancer_load,
)
from models.network import Port
from models.placement import rehome

__all__ = ["place_load_balancer", "reschedule_load_balancers"]

CHILDREN = ("listener", "pool", "member", "health_monitor")


def place_load_balancer(session: Session, lb: LoadBalancer, host: str | None) -> set[str]:
    """Move `lb` (its VIP port with it) to `host`; the hosts whose documents change: the
    old and the new one, and every host carrying the VIP's subnet (its FDB entry for the
    VIP's MAC now points at another VTEP)."""
    old = lb.host
    touched = carrying_hosts(session, "subnet", {lb.vip_subnet_id})
    lb.host = host
    lb.touch()
    lb.status, lb.status_detail = ("pending", None) if host else ("error", NO_NETWORK_HOST)
    session.execute(
        sa.update(Port)
        .where(Port.device_id == lb.id, Port.device_owner == LB_VIP)
        .values(host=host)
    )
    session.flush()
    touched |= carrying_hosts(session, "subnet", {lb.vip_subnet_id})
    return {h for h in touched | {old, host} if h}


def _tree(session: Session, lb_ids: set[str]) -> dict[str, set[str]]:
    """The ids of these load balancers' listeners, pools, members and monitors."""
    pools = set(session.scalars(sa.select(Pool.id).where(Pool.load_balancer_id.in_(lb_ids))))
    return {
        "listener": set(
            session.scalars(sa.select(Listener.id).where(Listener.load_balancer_id.in_(lb_ids)))
        ),
        "pool": pools,
        "member": set(session.scalars(sa.select(Member.id).where(Member.pool_id.in_(pools)))),
        "health_monitor": set(
            session.scalars(sa.select(HealthMonitor.id).where(HealthMonitor.pool_id.in_(pools)))
        ),
    }


def reschedule_load_balancers(
    session: Session, now: datetime
) -> tuple[set[str], dict[str, set[str]]]:
    """Load balancers on a host that is down (or on none) go to the least-loaded up
    network host. Returns the hosts to sync and the resources whose status to refresh."""
    up = {h.name for h in network_hosts(session, now)}
    stranded = list(
        session.scalars(
            sa.select(LoadBalancer)
            .where(
                sa.or_(
                    LoadBalancer.host.is_(None),
                    LoadBalancer.host.not_in(up) if up else sa.true(),
                )
            )
            .order_by(LoadBalancer.id)
            .with_for_update()
        )
    )
    refresh: dict[str, set[str]] = {"load_balancer": set(), "port": set()}
    hosts, moved = rehome(session, now, stranded, load_balancer_load(session), place_load_balancer)
    for lb in moved:
        refresh["load_balancer"].add(lb.id)
        if lb.vip_port_id:
            refresh["port"].add(lb.vip_port_id)
    if refresh["load_balancer"]:
        refresh.update(_tree(session, refresh["load_balancer"]))
    return hosts, refresh
