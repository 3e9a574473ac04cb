"""Where a router runs: the network host carrying the fewest routers (ties by name)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from models.host import network_hosts
from models.routing import router_load


def schedule_router(session: Session) -> str | None:
    hosts = network_hosts(session)
    if not hosts:
        return None
    load = router_load(session)
    return min(hosts, key=lambda h: (load.get(h.name, 0), h.name)).name
