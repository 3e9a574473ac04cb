"""Query building blocks shared by every aggregate: tenant scope, filters, keyset pages."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from models.base import Base, Tenanted

M = TypeVar("M", bound=Base)


def scoped(stmt: sa.Select[Any], model: Any, tenant_id: str | None) -> sa.Select[Any]:
    """Restrict to one tenant's rows; tenant_id None (the admin) sees all, and every caller
    sees the rows of shared, untenanted resources (external networks)."""
    if tenant_id is None or not issubclass(model, Tenanted):
        return stmt
    return stmt.where(model.tenant_id == tenant_id)


def get_scoped(session: Session, model: type[M], ident: str, tenant_id: str | None) -> M | None:
    """The row of that id the tenant may see (the admin: any), else None."""
    tenanted = tenant_id is not None and issubclass(model, Tenanted)
    params = {"ident": ident, "tenant_id": tenant_id} if tenanted else {"ident": ident}
    return session.scalar(_by_id(model, tenanted), params)


@cache
def _by_id(model: Any, tenanted: bool) -> sa.Select[Any]:
    """Built once per kind: SQLAlchemy then keeps its cache key too, which building the
    statement again on every GET cost (issue 14)."""
    stmt = sa.select(model).where(model.id == sa.bindparam("ident"))
    return stmt.where(model.tenant_id == sa.bindparam("tenant_id")) if tenanted else stmt


def has_tag(session: Session, column: Any, tag: str) -> sa.ColumnElement[bool]:
    if session.get_bind().dialect.name == "postgresql":
        return sa.cast(column, JSONB).contains([tag])
    each = sa.func.json_each(column).table_valued("value")
    return sa.exists(sa.select(sa.literal(1)).select_from(each).where(each.c.value == tag))


def filtered(
    session: Session, model: Any, stmt: sa.Select[Any], filters: dict[str, Any]
) -> sa.Select[Any]:
    for name, value in filters.items():
        if value is None:
            continue
        if name == "tag":
            stmt = stmt.where(has_tag(session, model.tags, value))
        else:
            stmt = stmt.where(getattr(model, name) == value)
    return stmt


def page(
    session: Session,
    model: type[M],
    stmt: sa.Select[Any],
    limit: int,
    after: tuple[datetime, str] | None,
) -> tuple[list[M], tuple[datetime, str] | None]:
    """One page in (created_at, id) order; returns the cursor of the last row if more remain."""
    m: Any = model
    if after is not None:
        created, ident = after
        stmt = stmt.where(
            sa.or_(m.created_at > created, sa.and_(m.created_at == created, m.id > ident))
        )
    rows = list(session.scalars(stmt.order_by(m.created_at, m.id).limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last: Any = rows[-1]
    return rows, (last.created_at, last.id)


def list_page(
    session: Session,
    model: type[M],
    tenant_id: str | None,
    filters: dict[str, Any],
    where: tuple[sa.ColumnElement[bool], ...],
    limit: int,
    after: tuple[datetime, str] | None,
) -> tuple[list[M], tuple[datetime, str] | None]:
    """One page of the rows a caller may list, with equality filters and extra conditions."""
    stmt = filtered(session, model, scoped(sa.select(model), model, tenant_id), filters)
    return page(session, model, stmt.where(*where), limit, after)


def count(session: Session, model: Any, *where: sa.ColumnElement[bool]) -> int:
    return int(session.scalar(sa.select(sa.func.count()).select_from(model).where(*where)) or 0)
