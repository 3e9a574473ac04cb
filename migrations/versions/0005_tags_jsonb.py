"""tags as jsonb on Postgres

Tags were stored in `json` columns, which keep the text as sent: a tag holding a NUL
(`"\\u0000"`) was accepted, and every `?tag=` list then failed casting rows to jsonb.
On Postgres the columns become jsonb; a NUL in a stored tag is removed first (a tag left
empty is dropped), since jsonb cannot hold one. SQLite keeps JSON: nothing to do there.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (
    "vpcs",
    "subnets",
    "ports",
    "routers",
    "security_groups",
    "external_networks",
    "floating_ips",
)
NUL_ESCAPE = "\\u0000"  # how json text spells a NUL


def _clean(tags: object) -> list[str]:
    if not isinstance(tags, list):
        return []
    out: list[str] = []
    for tag in tags:
        text = str(tag).replace("\x00", "")
        if text and text not in out:
            out.append(text)
    return out


def _strip_nul(bind: sa.engine.Connection, table: str) -> None:
    rows = bind.execute(
        sa.text(f"SELECT id, tags::text FROM {table} WHERE strpos(tags::text, :esc) > 0"),
        {"esc": NUL_ESCAPE},
    ).all()
    for ident, text in rows:
        bind.execute(
            sa.text(f"UPDATE {table} SET tags = CAST(:tags AS json) WHERE id = :id"),
            {"tags": json.dumps(_clean(json.loads(text))), "id": ident},
        )


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table in TABLES:
        _strip_nul(bind, table)
        op.alter_column(
            table,
            "tags",
            type_=JSONB(),
            existing_type=sa.JSON(),
            existing_nullable=False,
            postgresql_using="tags::jsonb",
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.alter_column(
            table,
            "tags",
            type_=sa.JSON(),
            existing_type=JSONB(),
            existing_nullable=False,
            postgresql_using="tags::json",
        )
