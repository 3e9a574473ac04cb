"""Tenants, their bearer tokens (hashed) and quotas."""

from __future__ import annotations

import hashlib
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, Resource, new_id, utcnow

DEFAULT_QUOTAS: dict[str, int] = {
    "vpcs": 10,
    "subnets": 100,
    "ports": 500,
    "routers": 10,
    "security_groups": 100,
    "security_group_rules": 1000,
    "floating_ips": 50,
    "network_acls": 200,
    "network_acl_entries": 2000,
    "load_balancers": 10,
    "listeners": 50,
    "pools": 50,
    "members": 500,
    "health_monitors": 50,
}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Tenant(Base, Resource):
    __tablename__ = "tenants"
    name: Mapped[str] = mapped_column(sa.String(255), unique=True, nullable=False)
    description: Mapped[str] = mapped_column(sa.Text, nullable=False, default="")


class ApiToken(Base):
    """A bearer token, stored as its SHA-256. tenant_id NULL means the admin token."""

    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True, nullable=False)
    tenant_id: Mapped[str | None] = mapped_column(
        sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)


class Quota(Base):
    __tablename__ = "quotas"
    tenant_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    resource: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    limit: Mapped[int] = mapped_column(sa.Integer, nullable=False)


class QuotaUsage(Base):
    """How many rows of a quota'd kind a tenant holds: kept by triggers (migration 0020)
    on every insert and delete, so no code path can leave it behind."""

    __tablename__ = "quota_usage"
    tenant_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    resource: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    used: Mapped[int] = mapped_column(sa.Integer, nullable=False)


def find_token(session: Session, token: str) -> ApiToken | None:
    return session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == hash_token(token)))


def admin_token_exists(session: Session) -> bool:
    return session.scalar(sa.select(ApiToken.id).where(ApiToken.tenant_id.is_(None))) is not None


def revoke_admin_tokens(session: Session) -> int:
    """Delete every admin token (`vpcd admin-token --rotate`); how many there were."""
    result = session.execute(sa.delete(ApiToken).where(ApiToken.tenant_id.is_(None)))
    return int(getattr(result, "rowcount", 0) or 0)


def quotas_of(session: Session, tenant_id: str) -> dict[str, int]:
    limits = dict(DEFAULT_QUOTAS)
    rows = session.scalars(sa.select(Quota).where(Quota.tenant_id == tenant_id))
    for row in rows:
        limits[row.resource] = row.limit
    return limits


def tenant_named(session: Session, name: str) -> str | None:
    return session.scalar(sa.select(Tenant.id).where(Tenant.name == name))


def add_token(session: Session, token: str, tenant_id: str | None) -> ApiToken:
    """Store a bearer token (its hash only); tenant_id None makes it an admin token."""
    row = ApiToken(token_hash=hash_token(token), tenant_id=tenant_id)
    session.add(row)
    session.flush()
    return row


def keep_only_admin_token(session: Session, token: str) -> None:
    """The configured admin token becomes the only one: older admin tokens are revoked."""
    digest = hash_token(token)
    session.execute(
        sa.delete(ApiToken).where(ApiToken.tenant_id.is_(None), ApiToken.token_hash != digest)
    )
    if session.scalar(sa.select(ApiToken.id).where(ApiToken.token_hash == digest)) is None:
        session.add(ApiToken(token_hash=digest, tenant_id=None))


def set_quotas(session: Session, tenant_id: str, limits: dict[str, int]) -> None:
    for resource, limit in limits.items():
        row = session.get(Quota, (tenant_id, resource))
        if row is None:
            session.add(Quota(tenant_id=tenant_id, resource=resource, limit=limit))
        else:
            row.limit = limit
    session.flush()


def delete_with_tokens(session: Session, tenant: Tenant) -> None:
    """The tenant with its tokens and quotas (its resources are gone already)."""
    session.execute(sa.delete(ApiToken).where(ApiToken.tenant_id == tenant.id))
    session.execute(sa.delete(Quota).where(Quota.tenant_id == tenant.id))
    session.delete(tenant)


def quota_used(session: Session, tenant_id: str, resource: str) -> int:
    used = session.scalar(
        sa.select(QuotaUsage.used).where(
            QuotaUsage.tenant_id == tenant_id, QuotaUsage.resource == resource
        )
    )
    return int(used or 0)


def quota_limit(tenant_id: str, resource: str) -> sa.ColumnElement[int]:
    """The tenant's limit of `resource`, as SQL: its override, else the default."""
    override = (
        sa.select(Quota.limit)
        .where(Quota.tenant_id == tenant_id, Quota.resource == resource)
        .scalar_subquery()
    )
    return sa.func.coalesce(override, DEFAULT_QUOTAS[resource])
