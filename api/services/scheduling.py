"""Where routers, load balancers and DHCP/DNS services run: the least-loaded network host
(ties by name).

A router or load balancer goes only to a host that is up; None when none is: it is then
`error` ("no network host is up") until the controller's sweep finds one
(models/placement.py, models/lb_placement.py). A DHCP/DNS service prefers a host that is
up, else takes any network host (a host not yet heard from still serves once its agent
comes); the sweep moves it off a host that goes down (models/placement.py
`reschedule_dhcp`).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from models.base import utcnow
from models.host import network_hosts
from models.loadbalancer import load_balancer_load
from models.network import dhcp_load
from models.placement import pick_host


def schedule_router(session: Session) -> str | None:
    return pick_host(session, utcnow())


def schedule_dhcp(session: Session) -> str | None:
    """Where a subnet's DHCP/DNS service runs: the network host serving the fewest."""
    hosts = network_hosts(session, utcnow()) or network_hosts(session)
    if not hosts:
        return None
    load = dhcp_load(session)
    return min(hosts, key=lambda h: (load.get(h.name, 0), h.name)).name


def schedule_load_balancer(session: Session) -> str | None:
    return pick_host(session, utcnow(), load_balancer_load(session))
