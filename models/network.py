"""The VPC aggregate: VPCs, subnets and ports (the L2 side of the model)."""

from __future__ import annotations

import functools
import socket
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, aliased, mapped_column, relationship, validates

from models.base import Base, Realised, TagList, Tenanted

ROUTER_INTERFACE = "router_interface"  # Port.device_owner of a router's leg on a subnet
DHCP = "network:dhcp"  # Port.device_owner of a subnet's DHCP/DNS service port
STATIC, DHCP_CONFIG = "static", "dhcp"  # Port.ip_config: who configures the address


class Vpc(Base, Tenanted):
    __tablename__ = "vpcs"
    name: Mapped[str] = mapped_column(sa.String(255), nullable=False, default="")
    description: Mapped[str] = mapped_column(sa.Text, nullable=False, default="")
    cidr: Mapped[str] = mapped_column(sa.String(43), nullable=False)
    tags: Mapped[list[str]] = mapped_column(TagList, nullable=False, default=list)
    default_security_group_id: Mapped[str | None] = mapped_column(sa.String(36), nullable=True)
    dns_domain: Mapped[str] = mapped_column(sa.String(255), nullable=False, default="")


class Subnet(Base, Tenanted, Realised):
    __tablename__ = "subnets"
    vpc_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("vpcs.id", ondelete="RESTRICT"), index=True, nullable=False
    )
    name: Mapped[str] = mapped_column(sa.String(255), nullable=False, default="")
    description: Mapped[str] = mapped_column(sa.Text, nullable=False, default="")
    cidr: Mapped[str] = mapped_column(sa.String(43), nullable=False)
    gateway_ip: Mapped[str] = mapped_column(sa.String(45), nullable=False)
    allocation_pools: Mapped[list[dict[str, str]]] = mapped_column(sa.JSON, nullable=False)
    dns_nameservers: Mapped[list[str]] = mapped_column(sa.JSON, nullable=False, default=list)
    host_routes: Mapped[list[dict[str, str]]] = mapped_column(sa.JSON, nullable=False, default=list)
    tags: Mapped[list[str]] = mapped_column(TagList, nullable=False, default=list)
    vni: Mapped[int] = mapped_column(sa.Integer, unique=True, nullable=False)
    enable_dhcp: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True)
    # The network host running the subnet's DHCP/DNS service (scheduled like routers).
    dhcp_host: Mapped[str | None] = mapped_column(sa.String(64), nullable=True, index=True)
    network_acl_id: Mapped[str | None] = mapped_column(
        sa.String(36),
        sa.ForeignKey("network_acls.id", ondelete="RESTRICT", use_alter=True),
        index=True,
        nullable=True,
    )
    # Network type (DESIGN §4, immutable): vxlan, flat (a physical network's name, VLAN
    # optional) or routed (drawn from an address scope; unique across tenants).
    network_type: Mapped[str] = mapped_column(sa.String(8), nullable=False, default="vxlan")
    physical_network: Mapped[str | None] = mapped_column(sa.String(64), nullable=True, index=True)
    segmentation_id: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    address_scope_id: Mapped[str | None] = mapped_column(
        sa.String(36), sa.ForeignKey("address_scopes.id", ondelete="RESTRICT"), nullable=True
    )


class PortSecurityGroup(Base):
    __tablename__ = "port_security_groups"
    port_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("ports.id", ondelete="CASCADE"), primary_key=True
    )
    security_group_id: Mapped[str] = mapped_column(
        sa.String(36),
        sa.ForeignKey("security_groups.id", ondelete="RESTRICT"),
        primary_key=True,
        index=True,
    )
    position: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)


class CarrierHost(Base):
    """How many workload ports (host and netns set) of a subnet or security group a host
    has: kept by triggers (migration 0021) on ports and their group rows, so "which hosts
    carry it" reads O(hosts) rows, never every port (models.carriers)."""

    __tablename__ = "carrier_hosts"
    __table_args__ = (sa.CheckConstraint("ports > 0", name="ports_positive"),)
    kind: Mapped[str] = mapped_column(sa.String(32), primary_key=True)  # subnet|security_group
    resource_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    host: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    ports: Mapped[int] = mapped_column(sa.Integer, nullable=False)


class Port(Base, Tenanted, Realised):
    """A tenant interface. device_owner marks ports the service made (router legs)."""

    __tablename__ = "ports"
    __table_args__ = (
        sa.UniqueConstraint("subnet_id", "ip_address"),
        sa.UniqueConstraint("subnet_id", "mac_address"),
        # The address as an integer, for IPAM's gap queries (an index range scan, O(log n)).
        sa.UniqueConstraint("subnet_id", "ip_int"),
    )
    subnet_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("subnets.id", ondelete="RESTRICT"), index=True, nullable=False
    )
    name: Mapped[str] = mapped_column(sa.String(255), nullable=False, default="")
    description: Mapped[str] = mapped_column(sa.Text, nullable=False, default="")
    host: Mapped[str | None] = mapped_column(sa.String(64), index=True, nullable=True)
    netns: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    interface_name: Mapped[str] = mapped_column(sa.String(15), nullable=False, default="eth0")
    ip_address: Mapped[str] = mapped_column(sa.String(45), nullable=False)
    ip_int: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    mac_address: Mapped[str] = mapped_column(sa.String(17), nullable=False)
    device_owner: Mapped[str] = mapped_column(sa.String(32), nullable=False, default="")
    device_id: Mapped[str | None] = mapped_column(sa.String(36), nullable=True, index=True)
    tags: Mapped[list[str]] = mapped_column(TagList, nullable=False, default=list)
    ip_config: Mapped[str] = mapped_column(sa.String(8), nullable=False, default=STATIC)
    dns_name: Mapped[str | None] = mapped_column(sa.String(63), nullable=True)
    security_groups: Mapped[list[PortSecurityGroup]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by=PortSecurityGroup.position
    )

    @property
    def security_group_ids(self) -> list[str]:
        return [m.security_group_id for m in self.security_groups]

    @validates("ip_address")
    def _keep_ip_int(self, _key: str, value: str) -> str:
        """ip_int follows ip_address, whoever sets it."""
        self.ip_int = address_int(value)
        return value


def address_int(address: str) -> int:
    return int.from_bytes(socket.inet_aton(address), "big")


class DnsName(Base):
    """The index that keeps a port's dns_name unique within its VPC (case-insensitive):
    the unique constraint is the arbiter under concurrency, not a read-then-write."""

    __tablename__ = "dns_names"
    __table_args__ = (sa.UniqueConstraint("vpc_id", "name"),)
    port_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("ports.id", ondelete="CASCADE"), primary_key=True
    )
    vpc_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("vpcs.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(sa.String(63), nullable=False)


# -- queries of the VPC aggregate ----------------------------------------------------------


def subnets_of_vpc(session: Session, vpc_id: str) -> list[Subnet]:
    return list(session.scalars(sa.select(Subnet).where(Subnet.vpc_id == vpc_id)))


def lock_vpc_subnets(session: Session, vpc_id: str) -> None:
    """Serialise subnet creation within one VPC until this transaction ends.

    The overlap check reads the siblings and then inserts; two requests (in any API
    process) racing on one VPC would both pass it. FOR NO KEY UPDATE on the VPC row
    makes the second wait and then see the first's subnet, while rows that merely
    reference the VPC (FOR KEY SHARE) are not blocked. SQLite serialises writers anyway.
    """
    session.execute(sa.select(Vpc.id).where(Vpc.id == vpc_id).with_for_update(key_share=True))


def first_free(
    session: Session, subnet_id: str, start: int, end: int, *, downward: bool = False
) -> int | None:
    """The first address in [start, end] no port of the subnet holds, scanning up from
    `start` (or down from `end`); None if the span is full.

    One statement: `start` itself if free, else the address next to the first used one
    whose neighbour is free. With the (subnet_id, ip_int) index this is a range scan that
    stops at the first gap: O(log n) plus the length of the run of used addresses met.
    """
    first, last = (end, start) if downward else (start, end)
    params = {"subnet_id": subnet_id, "first": first, "last": last}
    found = session.scalar(_first_free_statement(downward), params)
    return None if found is None else int(found)


@functools.cache
def _first_free_statement(downward: bool) -> sa.Select[Any]:
    """Built once per direction (building it cost more CPU than running it: issue 14)."""
    subnet_id = sa.bindparam("subnet_id", type_=sa.String)
    first = sa.bindparam("first", type_=sa.BigInteger)
    last = sa.bindparam("last", type_=sa.BigInteger)
    step = -1 if downward else 1
    taken = sa.exists().where(Port.subnet_id == subnet_id, Port.ip_int == first)
    own = sa.select(first.label("a")).where(~taken)
    p, q = aliased(Port), aliased(Port)
    neighbour_free = ~sa.exists().where(q.subnet_id == subnet_id, q.ip_int == p.ip_int + step)
    if step > 0:
        bounds = (p.ip_int >= first, p.ip_int < last)
    else:
        bounds = (p.ip_int <= first, p.ip_int > last)
    after = (
        sa.select((p.ip_int + step).label("a"))
        .where(p.subnet_id == subnet_id, *bounds, neighbour_free)
        .order_by(p.ip_int.asc() if step > 0 else p.ip_int.desc())
        .limit(1)
    )
    either = sa.union_all(own, after.subquery().select()).subquery()
    pick = sa.func.max if downward else sa.func.min
    return sa.select(pick(either.c.a))


def address_taken(session: Session, subnet_id: str, address: str) -> str | None:
    return session.scalar(
        sa.select(Port.id).where(Port.subnet_id == subnet_id, Port.ip_address == address)
    )


def mac_taken(session: Session, subnet_id: str, mac: str) -> str | None:
    return session.scalar(
        sa.select(Port.id).where(
            Port.subnet_id == subnet_id, sa.func.lower(Port.mac_address) == mac.lower()
        )
    )


def ports_of_subnet(session: Session, subnet_id: str, *, user_only: bool) -> list[str]:
    stmt = sa.select(Port.id).where(Port.subnet_id == subnet_id)
    if user_only:
        stmt = stmt.where(Port.device_owner == "")
    return list(session.scalars(stmt))


def ports_in_netns(session: Session, host: str, netns: str) -> list[Port]:
    """The ports bound into one workload namespace of a host (any tenant)."""
    return list(session.scalars(sa.select(Port).where(Port.host == host, Port.netns == netns)))


def ports_in_group(session: Session, group_id: str) -> list[str]:
    return list(
        session.scalars(
            sa.select(PortSecurityGroup.port_id).where(
                PortSecurityGroup.security_group_id == group_id
            )
        )
    )


def in_security_group(group_id: str) -> sa.ColumnElement[bool]:
    """Ports that are members of the group (a list filter)."""
    return Port.id.in_(
        sa.select(PortSecurityGroup.port_id).where(PortSecurityGroup.security_group_id == group_id)
    )


def vpcs_of_tenant(session: Session, tenant_id: str) -> list[str]:
    return list(session.scalars(sa.select(Vpc.id).where(Vpc.tenant_id == tenant_id)))


def user_ports_on_host(session: Session, host: str) -> list[str]:
    """Ports the user bound to the host (service-made router legs aside)."""
    return list(
        session.scalars(sa.select(Port.id).where(Port.host == host, Port.device_owner == ""))
    )


def dhcp_load(session: Session) -> dict[str, int]:
    """How many subnets' DHCP/DNS services each host runs."""
    rows = session.execute(
        sa.select(Subnet.dhcp_host, sa.func.count())
        .where(Subnet.dhcp_host.is_not(None))
        .group_by(Subnet.dhcp_host)
    )
    return {host: n for host, n in rows if host is not None}


def vpc_of_subnet(session: Session, subnet_id: str) -> str | None:
    return session.scalar(sa.select(Subnet.vpc_id).where(Subnet.id == subnet_id))


def dhcp_hosts_of_vpc(session: Session, vpc_id: str) -> set[str]:
    """Hosts running a DHCP/DNS service of the VPC: each answers for every name in it."""
    rows = session.scalars(
        sa.select(Subnet.dhcp_host).where(Subnet.vpc_id == vpc_id, Subnet.dhcp_host.is_not(None))
    )
    return {h for h in rows if h}


def dhcp_subnets_on_host(session: Session, host: str) -> list[str]:
    return list(session.scalars(sa.select(Subnet.id).where(Subnet.dhcp_host == host)))
