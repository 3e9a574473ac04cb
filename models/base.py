"""Declarative base and the columns every resource shares (DESIGN §3)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, declared_attr, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend (SQLite drops the zone otherwise)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# Tags are filtered on (`?tag=`): jsonb on Postgres, so containment needs no cast of every
# row's text (which any stored oddity would break); plain JSON elsewhere.
TagList = sa.JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime()}


class Resource:
    """id, timestamps and the revision used for ETags and optimistic locking.

    `revision` is SQLAlchemy's version counter: every UPDATE bumps it and fails with
    StaleDataError if another transaction changed the row first.
    """

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
    revision: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=1)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"version_id_col": cls.revision}

    def touch(self) -> None:
        """Mark the row changed (bumps revision on flush) even if only a child row moved."""
        self.updated_at = utcnow()


def bump(session: Session, obj: Resource, **values: Any) -> None:
    """Count a change to `obj` that a child made: revision + 1 (and `values`) in one UPDATE.

    Unlike `touch`, this takes no optimistic lock on the parent's revision, so independent
    children created or removed at once (rules of one group, interfaces of one router)
    never fail each other: the row lock queues them and each adds one to the revision it
    finds. The object in the session is refreshed from the row.
    """
    model: Any = type(obj)
    session.execute(
        sa.update(model)
        .where(model.id == obj.id)
        .values(revision=model.revision + 1, updated_at=utcnow(), **values)
        .execution_options(synchronize_session="fetch")
    )


class Tenanted(Resource):
    tenant_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("tenants.id", ondelete="RESTRICT"), index=True, nullable=False
    )


class Realised:
    """Resources a host realises: pending until every carrying host reports the revision."""

    status: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="pending")
    status_detail: Mapped[str | None] = mapped_column(sa.Text, nullable=True)


@sa.event.listens_for(Base, "before_insert", propagate=True)
def _same_birth_time(_mapper: Any, _conn: Any, target: Any) -> None:
    """A new row's updated_at equals its created_at (column defaults would differ by µs)."""
    if isinstance(target, Resource):
        target.created_at = target.created_at or utcnow()
        target.updated_at = target.updated_at or target.created_at
