"""The L3 aggregate: external networks, routers with their interfaces, floating IPs."""

from __future__ import annotations

import ipaddress

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, Realised, Resource, TagList, Tenanted
from models.network import Port, Subnet


class ExternalNetwork(Base, Resource):
    __tablename__ = "external_networks"
    name: Mapped[str] = mapped_column(sa.String(255), nullable=False, default="")
    description: Mapped[str] = mapped_column(sa.Text, nullable=False, default="")
    cidr: Mapped[str] = mapped_column(sa.String(43), nullable=False)
    gateway_ip: Mapped[str] = mapped_column(sa.String(45), nullable=False)
    allocation_pools: Mapped[list[dict[str, str]]] = mapped_column(sa.JSON, nullable=False)
    tags: Mapped[list[str]] = mapped_column(TagList, nullable=False, default=list)


class ExternalIp(Base):
    """One address taken from an external network: by a router gateway or a floating IP."""

    __tablename__ = "external_ips"
    __table_args__ = (sa.UniqueConstraint("external_network_id", "address"),)
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    external_network_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("external_networks.id", ondelete="RESTRICT"), nullable=False
    )
    address: Mapped[str] = mapped_column(sa.String(45), nullable=False)
    owner_id: Mapped[str] = mapped_column(sa.String(36), nullable=False, index=True)


class Router(Base, Tenanted, Realised):
    __tablename__ = "routers"
    vpc_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("vpcs.id", ondelete="RESTRICT"), index=True, nullable=False
    )
    name: Mapped[str] = mapped_column(sa.String(255), nullable=False, default="")
    description: Mapped[str] = mapped_column(sa.Text, nullable=False, default="")
    external_network_id: Mapped[str | None] = mapped_column(
        sa.String(36), sa.ForeignKey("external_networks.id", ondelete="RESTRICT"), index=True
    )
    enable_snat: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True)
    routes: Mapped[list[dict[str, str]]] = mapped_column(sa.JSON, nullable=False, default=list)
    tags: Mapped[list[str]] = mapped_column(TagList, nullable=False, default=list)
    host: Mapped[str | None] = mapped_column(sa.String(64), nullable=True, index=True)
    external_ip: Mapped[str | None] = mapped_column(sa.String(45), nullable=True)


class RouterInterface(Base):
    """A router leg on a subnet; a subnet has at most one router."""

    __tablename__ = "router_interfaces"
    subnet_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("subnets.id", ondelete="RESTRICT"), primary_key=True
    )
    router_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("routers.id", ondelete="CASCADE"), index=True, nullable=False
    )
    port_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("ports.id", ondelete="RESTRICT"), unique=True, nullable=False
    )


class FloatingIp(Base, Tenanted, Realised):
    __tablename__ = "floating_ips"
    external_network_id: Mapped[str] = mapped_column(
        sa.String(36),
        sa.ForeignKey("external_networks.id", ondelete="RESTRICT"),
        index=True,
        nullable=False,
    )
    description: Mapped[str] = mapped_column(sa.Text, nullable=False, default="")
    tags: Mapped[list[str]] = mapped_column(TagList, nullable=False, default=list)
    address: Mapped[str] = mapped_column(sa.String(45), nullable=False)
    port_id: Mapped[str | None] = mapped_column(
        sa.String(36), sa.ForeignKey("ports.id", ondelete="SET NULL"), unique=True, nullable=True
    )
    router_id: Mapped[str | None] = mapped_column(
        sa.String(36), sa.ForeignKey("routers.id", ondelete="RESTRICT"), index=True, nullable=True
    )


def routers_of_vpc(session: Session, vpc_id: str) -> list[str]:
    return list(session.scalars(sa.select(Router.id).where(Router.vpc_id == vpc_id)))


def interface_of_subnet(session: Session, subnet_id: str) -> RouterInterface | None:
    return session.get(RouterInterface, subnet_id)


def interfaces_of_router(session: Session, router_id: str) -> list[RouterInterface]:
    return list(
        session.scalars(sa.select(RouterInterface).where(RouterInterface.router_id == router_id))
    )


def floating_ips_via_router(session: Session, router_id: str) -> list[str]:
    return list(session.scalars(sa.select(FloatingIp.id).where(FloatingIp.router_id == router_id)))


def floating_ip_of_port(session: Session, port_id: str) -> FloatingIp | None:
    return session.scalar(sa.select(FloatingIp).where(FloatingIp.port_id == port_id))


def used_external(session: Session, network_id: str) -> set[int]:
    rows = session.scalars(
        sa.select(ExternalIp.address).where(ExternalIp.external_network_id == network_id)
    )
    return {int(ipaddress.IPv4Address(r)) for r in rows}


def release_external(session: Session, owner_id: str) -> None:
    session.execute(sa.delete(ExternalIp).where(ExternalIp.owner_id == owner_id))


def users_of_external_network(session: Session, network_id: str) -> list[tuple[str, str]]:
    routers = session.scalars(sa.select(Router.id).where(Router.external_network_id == network_id))
    fips = session.scalars(
        sa.select(FloatingIp.id).where(FloatingIp.external_network_id == network_id)
    )
    return [("router", r) for r in routers] + [("floating_ip", f) for f in fips]


def floating_ips_of_tenant(session: Session, tenant_id: str) -> list[str]:
    return list(session.scalars(sa.select(FloatingIp.id).where(FloatingIp.tenant_id == tenant_id)))


def routers_on_host(session: Session, host: str) -> list[str]:
    return list(session.scalars(sa.select(Router.id).where(Router.host == host)))


def router_load(session: Session) -> dict[str, int]:
    """How many routers each host carries."""
    rows = session.execute(
        sa.select(Router.host, sa.func.count())
        .where(Router.host.is_not(None))
        .group_by(Router.host)
    )
    return {host: n for host, n in rows if host is not None}


def subnets_of_router(session: Session, router_id: str) -> list[Subnet]:
    return list(
        session.scalars(
            sa.select(Subnet)
            .join(RouterInterface, RouterInterface.subnet_id == Subnet.id)
            .where(RouterInterface.router_id == router_id)
        )
    )


def floating_ips_through(session: Session, router_id: str, subnet_id: str) -> list[str]:
    """Floating IPs the router maps to ports of one of its subnets."""
    return list(
        session.scalars(
            sa.select(FloatingIp.id)
            .join(Port, Port.id == FloatingIp.port_id)
            .where(FloatingIp.router_id == router_id, Port.subnet_id == subnet_id)
        )
    )


def disassociate_port(session: Session, port_id: str) -> None:
    """Unmap the port's floating IP, if any (the port is going away)."""
    fip = floating_ip_of_port(session, port_id)
    if fip is not None:
        fip.port_id, fip.router_id = None, None
        fip.touch()
        session.flush()
