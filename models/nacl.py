"""Network ACLs: stateless, ordered allow/deny entries, associated with subnets (AWS's)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, Realised, TagList, Tenanted, bump
from models.network import Subnet


class NetworkAcl(Base, Tenanted, Realised):
    __tablename__ = "network_acls"
    vpc_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("vpcs.id", ondelete="RESTRICT"), index=True, nullable=False
    )
    name: Mapped[str] = mapped_column(sa.String(255), nullable=False, default="")
    description: Mapped[str] = mapped_column(sa.Text, nullable=False, default="")
    tags: Mapped[list[str]] = mapped_column(TagList, nullable=False, default=list)


class NetworkAclEntry(Base, Tenanted):
    """One entry; (ACL, direction, rule number) is unique: the number is its place."""

    __tablename__ = "network_acl_entries"
    __table_args__ = (sa.UniqueConstraint("network_acl_id", "direction", "rule_number"),)
    network_acl_id: Mapped[str] = mapped_column(
        sa.String(36),
        sa.ForeignKey("network_acls.id", ondelete="CASCADE"),
        index=True,
        nullable=False,
    )
    rule_number: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    direction: Mapped[str] = mapped_column(sa.String(8), nullable=False)
    action: Mapped[str] = mapped_column(sa.String(8), nullable=False)
    protocol: Mapped[str] = mapped_column(sa.String(8), nullable=False)
    port_min: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    port_max: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    cidr: Mapped[str] = mapped_column(sa.String(43), nullable=False)
    description: Mapped[str] = mapped_column(sa.Text, nullable=False, default="")


def acls_of_vpc(session: Session, vpc_id: str) -> list[str]:
    return list(session.scalars(sa.select(NetworkAcl.id).where(NetworkAcl.vpc_id == vpc_id)))


def subnets_with_acl(session: Session, acl_id: str) -> list[str]:
    return list(session.scalars(sa.select(Subnet.id).where(Subnet.network_acl_id == acl_id)))


def entry_taken(session: Session, acl_id: str, direction: str, number: int) -> str | None:
    """The id of the entry already at this (direction, rule number), if any."""
    return session.scalar(
        sa.select(NetworkAclEntry.id).where(
            NetworkAclEntry.network_acl_id == acl_id,
            NetworkAclEntry.direction == direction,
            NetworkAclEntry.rule_number == number,
        )
    )


def mark_acl_changed(session: Session, acl: NetworkAcl | None) -> None:
    """An entry came, changed or went: the ACL's hosts must realise it again (one UPDATE
    without an optimistic lock, so entries written at once never fail each other)."""
    if acl is not None:
        bump(session, acl, status="pending")
