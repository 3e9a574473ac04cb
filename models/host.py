"""Hosts: where agents run. Agents register and heartbeat here."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, Resource

# An agent that advertises nothing (an older one) speaks protocol 1 with these sections;
# the same as workers.protocol.SECTIONS_L2 (models never import workers).
HEARTBEAT_TIMEOUT = timedelta(seconds=30)  # a host not heard from for this long is down
LEGACY_VERSION = 1
LEGACY_SECTIONS = ("subnets", "ports")


class Host(Base, Resource):
    __tablename__ = "hosts"
    name: Mapped[str] = mapped_column(sa.String(64), unique=True, nullable=False)
    vtep_ip: Mapped[str] = mapped_column(sa.String(45), nullable=False)
    roles: Mapped[list[str]] = mapped_column(sa.JSON, nullable=False, default=list)
    last_heartbeat: Mapped[datetime | None] = mapped_column(nullable=True)
    realised_revision: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    # The agent's last applied sync, for operators and the convergence benchmark.
    last_sync_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_sync_ms: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    last_sync_full: Mapped[bool | None] = mapped_column(sa.Boolean, nullable=True)
    # What its agent advertised in its heartbeat: the controller sends it only these.
    protocol_version: Mapped[int] = mapped_column(
        sa.Integer, nullable=False, default=LEGACY_VERSION
    )
    sections: Mapped[list[str]] = mapped_column(
        sa.JSON, nullable=False, default=lambda: list(LEGACY_SECTIONS)
    )
    # Kernel capabilities its agent detected (vxlan, macvlan, 8021q, br_netfilter, ipset)
    # and the physical networks it maps to an interface (--physical-interface NAME=IFACE).
    capabilities: Mapped[list[str]] = mapped_column(sa.JSON, nullable=False, default=list)
    physical_networks: Mapped[list[str]] = mapped_column(sa.JSON, nullable=False, default=list)
    # Why its agent's last report failed or was refused; None after a good one.
    status_detail: Mapped[str | None] = mapped_column(sa.Text, nullable=True)


def host_named(session: Session, name: str) -> str | None:
    return session.scalar(sa.select(Host.id).where(Host.name == name))


def is_up(host: Host, now: datetime) -> bool:
    """Heard from within the heartbeat timeout (a host never heard from is down)."""
    beat = host.last_heartbeat
    return beat is not None and now - beat < HEARTBEAT_TIMEOUT


def network_hosts(session: Session, now: datetime | None = None) -> list[Host]:
    """Hosts with the network role (where routers run), by name; with `now`, only those
    that are up then. Three columns of every host, then whole rows of the network ones
    only: the sweep asks three times every 2 s, and loading 1000 whole hosts each time
    was a tenth of a busy controller's CPU."""
    rows = session.execute(sa.select(Host.name, Host.roles, Host.last_heartbeat))
    names = [
        name
        for name, roles, beat in rows
        if "network" in roles
        and (now is None or (beat is not None and now - beat < HEARTBEAT_TIMEOUT))
    ]
    if not names:
        return []
    return list(session.scalars(sa.select(Host).where(Host.name.in_(names)).order_by(Host.name)))
