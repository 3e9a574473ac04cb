"""Where routers, load balancers and DHCP/DNS services run: the least-loaded network host
(ties by name)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from models.host import network_hosts
from models.loadbalancer import load_balancer_load
from models.network import dhcp_load
from models.routing import router_load


def least_loaded(session: Session, load: dict[str, int]) -> str | None:
    hosts = network_hosts(session)
    if not hosts:
        return None
    return min(hosts, key=lambda h: (load.get(h.name, 0), h.name)).name


def schedule_dhcp(session: Session) -> str | None:
    """Where a subnet's DHCP/DNS service runs: the network host serving the fewest."""
    hosts = network_hosts(session)
    if not hosts:
        return None
    load = dhcp_load(session)
    return min(hosts, key=lambda h: (load.get(h.name, 0), h.name)).name


def schedule_router(session: Session) -> str | None:
    return least_loaded(session, router_load(session))


def schedule_load_balancer(session: Session) -> str | None:
    return least_loaded(session, load_balancer_load(session))
