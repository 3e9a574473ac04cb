"""Network types (DESIGN §4): provider physical networks for `flat` subnets, address
scopes for `routed` ones, and the queries that keep their addresses apart across tenants."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, Resource

VXLAN, FLAT, ROUTED = "vxlan", "flat", "routed"
NETWORK_TYPES = (VXLAN, FLAT, ROUTED)
# A physical network name: also what an agent flag and the host document carry.
PHYSNET_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"


class PhysicalNetwork(Base, Resource):
    """An admin-made provider network: agents map its name to a host interface."""

    __tablename__ = "physical_networks"
    name: Mapped[str] = mapped_column(sa.String(64), unique=True, nullable=False)
    description: Mapped[str] = mapped_column(sa.Text, nullable=False, default="")
    shared: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)


class PhysicalNetworkGrant(Base):
    """A tenant allowed to put flat subnets on a physical network that is not shared."""

    __tablename__ = "physical_network_grants"
    physical_network_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("physical_networks.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class AddressScope(Base, Resource):
    """An admin-defined block routed subnets draw from: unique across tenants."""

    __tablename__ = "address_scopes"
    name: Mapped[str] = mapped_column(sa.String(255), nullable=False, default="")
    description: Mapped[str] = mapped_column(sa.Text, nullable=False, default="")
    cidr: Mapped[str] = mapped_column(sa.String(43), nullable=False)


# -- queries ---------------------------------------------------------------------------------


def physical_network_named(session: Session, name: str) -> PhysicalNetwork | None:
    return session.scalar(sa.select(PhysicalNetwork).where(PhysicalNetwork.name == name))


def grants_of(session: Session, physical_network_id: str) -> list[str]:
    return sorted(
        session.scalars(
            sa.select(PhysicalNetworkGrant.tenant_id).where(
                PhysicalNetworkGrant.physical_network_id == physical_network_id
            )
        )
    )


def set_grants(session: Session, physical_network_id: str, tenant_ids: list[str]) -> None:
    session.execute(
        sa.delete(PhysicalNetworkGrant).where(
            PhysicalNetworkGrant.physical_network_id == physical_network_id
        )
    )
    for tenant_id in sorted(set(tenant_ids)):
        session.add(
            PhysicalNetworkGrant(physical_network_id=physical_network_id, tenant_id=tenant_id)
        )
    session.flush()


def may_use(session: Session, network: PhysicalNetwork, tenant_id: str) -> bool:
    return network.shared or tenant_id in grants_of(session, network.id)


def lock_row(
    session: Session, model: type[PhysicalNetwork] | type[AddressScope], ident: str
) -> None:
    """Serialise subnet creation on one physical network or scope: the cross-tenant overlap
    check reads and then inserts (SQLite serialises writers anyway)."""
    session.execute(sa.select(model.id).where(model.id == ident).with_for_update(key_share=True))


def scopes(session: Session) -> list[AddressScope]:
    return list(session.scalars(sa.select(AddressScope).order_by(AddressScope.created_at)))


def subnets_sharing_underlay(
    session: Session, network_type: str, physical_network: str | None, segmentation_id: int | None
) -> list[tuple[str, str, str]]:
    """(id, tenant_id, cidr) of every subnet, any tenant, whose addresses share one
    un-encapsulated domain with a new one: all routed subnets, or the flat subnets on the
    same physical network and VLAN."""
    from models.network import Subnet

    stmt = sa.select(Subnet.id, Subnet.tenant_id, Subnet.cidr).where(
        Subnet.network_type == network_type
    )
    if network_type == FLAT:
        stmt = stmt.where(Subnet.physical_network == physical_network)
        stmt = stmt.where(
            Subnet.segmentation_id.is_(None)
            if segmentation_id is None
            else Subnet.segmentation_id == segmentation_id
        )
    return [(i, t, c) for i, t, c in session.execute(stmt)]


def subnets_on_physical_network(session: Session, name: str) -> list[str]:
    from models.network import Subnet

    return list(session.scalars(sa.select(Subnet.id).where(Subnet.physical_network == name)))


def subnets_in_scope(session: Session, scope_id: str) -> list[str]:
    from models.network import Subnet

    return list(session.scalars(sa.select(Subnet.id).where(Subnet.address_scope_id == scope_id)))
