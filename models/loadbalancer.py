"""The load-balancer aggregate (Octavia's model): load balancers, listeners, pools, members
and health monitors, with the queries the API and the controller ask of them.

Every object is realised on its load balancer's host, so each has its own revision and
provisioning status (`status`); the load balancer, listeners, pools and members also carry
an `operating_status` that only the agent's reports fill in.
"""

from __future__ import annotations

from typing import cast

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, Realised, TagList, Tenanted

LB_VIP = "load_balancer_vip"  # Port.device_owner of a load balancer's VIP port
OPERATING = ("ONLINE", "OFFLINE", "DEGRADED", "ERROR", "NO_MONITOR")


class Operating:
    """What the data plane says about traffic (not about configuration)."""

    operating_status: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="OFFLINE")


class LoadBalancer(Base, Tenanted, Realised, Operating):
    __tablename__ = "load_balancers"
    name: Mapped[str] = mapped_column(sa.String(255), nullable=False, default="")
    description: Mapped[str] = mapped_column(sa.Text, nullable=False, default="")
    vpc_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("vpcs.id", ondelete="RESTRICT"), index=True, nullable=False
    )
    vip_subnet_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("subnets.id", ondelete="RESTRICT"), index=True, nullable=False
    )
    vip_address: Mapped[str] = mapped_column(sa.String(45), nullable=False)
    vip_port_id: Mapped[str | None] = mapped_column(
        sa.String(36), sa.ForeignKey("ports.id", ondelete="RESTRICT"), unique=True, nullable=True
    )
    admin_state_up: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True)
    tags: Mapped[list[str]] = mapped_column(TagList, nullable=False, default=list)
    host: Mapped[str | None] = mapped_column(sa.String(64), nullable=True, index=True)


class Pool(Base, Tenanted, Realised, Operating):
    __tablename__ = "pools"
    load_balancer_id: Mapped[str] = mapped_column(
        sa.String(36),
        sa.ForeignKey("load_balancers.id", ondelete="RESTRICT"),
        index=True,
        nullable=False,
    )
    name: Mapped[str] = mapped_column(sa.String(255), nullable=False, default="")
    description: Mapped[str] = mapped_column(sa.Text, nullable=False, default="")
    protocol: Mapped[str] = mapped_column(sa.String(8), nullable=False)
    lb_algorithm: Mapped[str] = mapped_column(sa.String(24), nullable=False)
    admin_state_up: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True)
    tags: Mapped[list[str]] = mapped_column(TagList, nullable=False, default=list)


class Listener(Base, Tenanted, Realised, Operating):
    __tablename__ = "listeners"
    __table_args__ = (sa.UniqueConstraint("load_balancer_id", "transport", "protocol_port"),)
    load_balancer_id: Mapped[str] = mapped_column(
        sa.String(36),
        sa.ForeignKey("load_balancers.id", ondelete="RESTRICT"),
        index=True,
        nullable=False,
    )
    name: Mapped[str] = mapped_column(sa.String(255), nullable=False, default="")
    description: Mapped[str] = mapped_column(sa.Text, nullable=False, default="")
    protocol: Mapped[str] = mapped_column(sa.String(8), nullable=False)
    # tcp for TCP and HTTP, udp for UDP: two listeners may not share a socket
    transport: Mapped[str] = mapped_column(sa.String(3), nullable=False)
    protocol_port: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    default_pool_id: Mapped[str | None] = mapped_column(
        sa.String(36), sa.ForeignKey("pools.id", ondelete="RESTRICT"), index=True, nullable=True
    )
    admin_state_up: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True)
    tags: Mapped[list[str]] = mapped_column(TagList, nullable=False, default=list)


class Member(Base, Tenanted, Realised, Operating):
    __tablename__ = "members"
    __table_args__ = (sa.UniqueConstraint("pool_id", "address", "protocol_port"),)
    pool_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("pools.id", ondelete="RESTRICT"), index=True, nullable=False
    )
    name: Mapped[str] = mapped_column(sa.String(255), nullable=False, default="")
    address: Mapped[str] = mapped_column(sa.String(45), nullable=False)
    protocol_port: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    weight: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=1)
    subnet_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("subnets.id", ondelete="RESTRICT"), index=True, nullable=False
    )
    admin_state_up: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True)
    tags: Mapped[list[str]] = mapped_column(TagList, nullable=False, default=list)


class HealthMonitor(Base, Tenanted, Realised):
    __tablename__ = "health_monitors"
    pool_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("pools.id", ondelete="RESTRICT"), unique=True, nullable=False
    )
    name: Mapped[str] = mapped_column(sa.String(255), nullable=False, default="")
    type: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    delay: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    timeout: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    max_retries: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    max_retries_down: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    http_method: Mapped[str | None] = mapped_column(sa.String(8), nullable=True)
    url_path: Mapped[str | None] = mapped_column(sa.String(255), nullable=True)
    expected_codes: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    admin_state_up: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True)
    tags: Mapped[list[str]] = mapped_column(TagList, nullable=False, default=list)


# -- queries --------------------------------------------------------------------------------


def lock_load_balancer(session: Session, lb_id: str) -> None:
    """Serialise listener creates on one load balancer (the port check reads, then inserts);
    rows merely referencing it are not blocked (FOR KEY SHARE)."""
    session.execute(
        sa.select(LoadBalancer.id).where(LoadBalancer.id == lb_id).with_for_update(key_share=True)
    )


def listeners_of(session: Session, lb_id: str) -> list[Listener]:
    return list(
        session.scalars(
            sa.select(Listener)
            .where(Listener.load_balancer_id == lb_id)
            .order_by(Listener.created_at, Listener.id)
        )
    )


def pools_of(session: Session, lb_id: str) -> list[Pool]:
    return list(
        session.scalars(
            sa.select(Pool).where(Pool.load_balancer_id == lb_id).order_by(Pool.created_at, Pool.id)
        )
    )


def members_of(session: Session, pool_ids: set[str]) -> list[Member]:
    if not pool_ids:
        return []
    return list(
        session.scalars(
            sa.select(Member)
            .where(Member.pool_id.in_(pool_ids))
            .order_by(Member.created_at, Member.id)
        )
    )


def monitors_of(session: Session, pool_ids: set[str]) -> list[HealthMonitor]:
    if not pool_ids:
        return []
    return list(
        session.scalars(sa.select(HealthMonitor).where(HealthMonitor.pool_id.in_(pool_ids)))
    )


def monitor_of(session: Session, pool_id: str) -> HealthMonitor | None:
    return session.scalar(sa.select(HealthMonitor).where(HealthMonitor.pool_id == pool_id))


def listener_on(session: Session, lb_id: str, transport: str, port: int) -> str | None:
    return session.scalar(
        sa.select(Listener.id).where(
            Listener.load_balancer_id == lb_id,
            Listener.transport == transport,
            Listener.protocol_port == port,
        )
    )


def listeners_using(session: Session, pool_id: str) -> list[str]:
    return list(session.scalars(sa.select(Listener.id).where(Listener.default_pool_id == pool_id)))


def member_at(session: Session, pool_id: str, address: str, port: int) -> str | None:
    return session.scalar(
        sa.select(Member.id).where(
            Member.pool_id == pool_id, Member.address == address, Member.protocol_port == port
        )
    )


def load_balancers_on_subnet(session: Session, subnet_id: str) -> list[str]:
    return list(
        session.scalars(sa.select(LoadBalancer.id).where(LoadBalancer.vip_subnet_id == subnet_id))
    )


def members_on_subnet(session: Session, subnet_id: str) -> list[str]:
    return list(session.scalars(sa.select(Member.id).where(Member.subnet_id == subnet_id)))


def load_balancers_of_vpc(session: Session, vpc_id: str) -> list[str]:
    return list(session.scalars(sa.select(LoadBalancer.id).where(LoadBalancer.vpc_id == vpc_id)))


def load_balancers_on_host(session: Session, host: str) -> list[str]:
    return list(session.scalars(sa.select(LoadBalancer.id).where(LoadBalancer.host == host)))


def load_balancer_load(session: Session) -> dict[str, int]:
    """How many load balancers each host carries."""
    rows = session.execute(
        sa.select(LoadBalancer.host, sa.func.count())
        .where(LoadBalancer.host.is_not(None))
        .group_by(LoadBalancer.host)
    )
    return {host: n for host, n in rows if host is not None}


def lb_of_pool(session: Session, pool_id: str) -> str | None:
    return session.scalar(sa.select(Pool.load_balancer_id).where(Pool.id == pool_id))


OPERATED: dict[str, type[Base]] = {
    "load_balancer": LoadBalancer,
    "listener": Listener,
    "pool": Pool,
    "member": Member,
}


def record_operating(session: Session, seen: dict[str, dict[str, str]]) -> None:
    """Store what an agent measured (kind -> id -> operating status), writing only changes.

    Guarded Core UPDATEs: a measurement is not a change of the resource, so no revision
    moves (ETags and If-Match are unaffected)."""
    for kind, statuses in seen.items():
        model = OPERATED.get(kind)
        if model is None or not statuses:
            continue
        table = cast(sa.Table, model.__table__)
        rows = session.execute(
            sa.select(table.c.id, table.c.operating_status).where(table.c.id.in_(statuses))
        )
        writes = [{"rid": rid, "op": statuses[rid]} for rid, now in rows if statuses[rid] != now]
        if writes:
            writes.sort(key=lambda w: w["rid"])  # id order, like every writer: no deadlocks
            stmt = (
                sa.update(table)
                .where(table.c.id == sa.bindparam("rid"))
                .values(operating_status=sa.bindparam("op"))
            )
            session.connection().execute(stmt, writes)
