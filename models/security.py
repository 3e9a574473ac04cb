"""Security groups and their rules."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, Realised, TagList, Tenanted, bump


class SecurityGroup(Base, Tenanted, Realised):
    __tablename__ = "security_groups"
    vpc_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("vpcs.id", ondelete="RESTRICT"), index=True, nullable=False
    )
    name: Mapped[str] = mapped_column(sa.String(255), nullable=False, default="")
    description: Mapped[str] = mapped_column(sa.Text, nullable=False, default="")
    tags: Mapped[list[str]] = mapped_column(TagList, nullable=False, default=list)
    is_default: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)


class SecurityGroupRule(Base, Tenanted):
    __tablename__ = "security_group_rules"
    security_group_id: Mapped[str] = mapped_column(
        sa.String(36),
        sa.ForeignKey("security_groups.id", ondelete="CASCADE"),
        index=True,
        nullable=False,
    )
    description: Mapped[str] = mapped_column(sa.Text, nullable=False, default="")
    direction: Mapped[str] = mapped_column(sa.String(8), nullable=False)
    protocol: Mapped[str] = mapped_column(sa.String(8), nullable=False)
    port_min: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    port_max: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    remote_cidr: Mapped[str | None] = mapped_column(sa.String(43), nullable=True)
    remote_group_id: Mapped[str | None] = mapped_column(
        sa.String(36),
        sa.ForeignKey("security_groups.id", ondelete="RESTRICT"),
        index=True,
        nullable=True,
    )


def groups_of_vpc(session: Session, vpc_id: str, *, user_only: bool) -> list[str]:
    stmt = sa.select(SecurityGroup.id).where(SecurityGroup.vpc_id == vpc_id)
    if user_only:
        stmt = stmt.where(SecurityGroup.is_default.is_(False))
    return list(session.scalars(stmt))


def rules_referencing(session: Session, group_id: str) -> list[str]:
    """Rules of *other* groups that name this group as their remote group."""
    return list(
        session.scalars(
            sa.select(SecurityGroupRule.id).where(
                SecurityGroupRule.remote_group_id == group_id,
                SecurityGroupRule.security_group_id != group_id,
            )
        )
    )


def delete_group(session: Session, group: SecurityGroup) -> None:
    session.execute(
        sa.delete(SecurityGroupRule).where(SecurityGroupRule.security_group_id == group.id)
    )
    session.delete(group)


ALL_EGRESS = ("0.0.0.0/0", "::/0")


def egress_rules(group: SecurityGroup) -> list[SecurityGroupRule]:
    """Every new group may send anything, IPv4 and IPv6 (as on AWS and in Neutron);
    a tenant who wants less deletes these rules."""
    common = {"tenant_id": group.tenant_id, "security_group_id": group.id, "protocol": "any"}
    return [SecurityGroupRule(direction="egress", remote_cidr=c, **common) for c in ALL_EGRESS]


def add_default_rules(group: SecurityGroup) -> list[SecurityGroupRule]:
    """AWS's default group: members talk to each other; everything may go out."""
    common = {"tenant_id": group.tenant_id, "security_group_id": group.id, "protocol": "any"}
    return [
        SecurityGroupRule(direction="ingress", remote_group_id=group.id, **common),
        *egress_rules(group),
    ]


def add_default_group(session: Session, tenant_id: str, vpc_id: str, group_id: str) -> None:
    """The VPC's default group (AWS's), made with the VPC and deleted with it."""
    group = SecurityGroup(
        id=group_id,
        tenant_id=tenant_id,
        vpc_id=vpc_id,
        name="default",
        description="default security group of the VPC",
        is_default=True,
    )
    session.add(group)
    session.flush()
    session.add_all(add_default_rules(group))
    session.flush()


def delete_default_group(session: Session, group_id: str | None) -> None:
    group = session.get(SecurityGroup, group_id) if group_id else None
    if group is not None:
        delete_group(session, group)
        session.flush()


def groups_unsettled(session: Session, group_ids: set[str]) -> None:
    """A port joined or left: the groups wait for their (maybe new) hosts again; the
    sweep re-derives their status from the reports (the revision stays as it is)."""
    if group_ids:
        session.execute(
            sa.update(SecurityGroup)
            .where(SecurityGroup.id.in_(group_ids), SecurityGroup.status == "active")
            .values(status="pending")
            .execution_options(synchronize_session=False)
        )


def mark_group_changed(session: Session, group: SecurityGroup | None) -> None:
    """A rule came or went: the group's hosts must realise it again.

    One UPDATE, not an optimistic lock on the group's revision: rules created or deleted
    at once on one group (Terraform runs ten at a time) must never fail each other.
    """
    if group is not None:
        bump(session, group, status="pending")
