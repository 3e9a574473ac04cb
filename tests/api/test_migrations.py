"""Migrations build the schema the models describe, and take it down again.

Each test migrates a database of its own (never the suite's shared one): a SQLite file, or a
fresh Postgres database next to VPCD_TEST_DATABASE_URL, created and dropped here.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from migrations.runner import alembic_config, downgrade, upgrade
from models import Base
from models.db import make_engine, scratch_database

VERSION_TABLE = "alembic_version"


@pytest.fixture
def empty_url(tmp_path: Path) -> Iterator[str]:
    base = os.environ.get("VPCD_TEST_DATABASE_URL", "sqlite://")
    if base.startswith("sqlite"):
        yield f"sqlite:///{tmp_path}/migrations.db"
        return
    with scratch_database(base, "vpcd_migrations") as url:
        yield url


def _engine(url: str) -> sa.engine.Engine:
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def tables(url: str) -> set[str]:
    engine = _engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def differences(url: str) -> list[Any]:
    """What autogenerate would write into a new migration: types and defaults included."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def head() -> str:
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    assert len(heads) == 1, f"migrations have several heads, merge them: {heads}"
    return heads[0]


def test_one_linear_history() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    revisions = list(script.walk_revisions())
    assert revisions, "no migrations"
    assert [r.revision for r in revisions if r.down_revision is None] == [revisions[-1].revision]
    assert head() == revisions[0].revision


def test_upgrade_from_empty_builds_the_whole_schema(empty_url: str) -> None:
    assert tables(empty_url) == set()
    upgrade(empty_url)
    assert current_revision(empty_url) == head()
    expected = set(Base.metadata.tables)
    assert {"tenants", "vpcs", "subnets", "ports", "routers", "floating_ips"} <= expected
    assert tables(empty_url) == expected | {VERSION_TABLE}


def test_models_and_migrations_agree(empty_url: str) -> None:
    upgrade(empty_url)
    diffs = differences(empty_url)
    assert not diffs, (
        "the models and the migrations disagree; add a migration "
        "(alembic revision --autogenerate) for:\n" + "\n".join(map(repr, diffs))
    )


def test_downgrade_to_base_and_upgrade_again(empty_url: str) -> None:
    upgrade(empty_url)
    _exercise(empty_url)
    downgrade(empty_url, "base")
    assert tables(empty_url) <= {VERSION_TABLE}, tables(empty_url)
    assert current_revision(empty_url) is None
    upgrade(empty_url)
    assert current_revision(empty_url) == head()
    assert tables(empty_url) == set(Base.metadata.tables) | {VERSION_TABLE}
    assert not differences(empty_url)
    _exercise(empty_url)


def _exercise(url: str) -> None:
    """The built schema takes rows and enforces its foreign keys: it works, not just exists."""
    engine = make_engine(url, nullpool=True)  # the app's engine: SQLite FKs on
    tenants, vpcs = Base.metadata.tables["tenants"], Base.metadata.tables["vpcs"]
    tid = str(uuid.uuid4())
    try:
        with engine.begin() as conn:
            conn.execute(tenants.insert().values(_row(tenants, id=tid)))
            conn.execute(vpcs.insert().values(_row(vpcs, tenant_id=tid)))
            assert conn.scalar(sa.select(sa.func.count()).select_from(vpcs)) == 1
            conn.execute(vpcs.delete())
            conn.execute(tenants.delete())
        with pytest.raises(sa.exc.IntegrityError) as err, engine.begin() as conn:
            conn.execute(vpcs.insert().values(_row(vpcs, tenant_id=str(uuid.uuid4()))))
        assert "foreign key" in str(err.value).lower(), err.value
    finally:
        engine.dispose()


def _row(table: sa.Table, **given: Any) -> dict[str, Any]:
    """Values for the NOT NULL columns that have no default (Core applies the others)."""
    row = dict(given)
    for col in table.columns:
        if col.name in row or col.nullable or col.default is not None:
            continue
        if col.server_default is not None:
            continue
        if col.name.endswith("cidr"):
            row[col.name] = "10.0.0.0/16"
        elif isinstance(col.type, sa.JSON):
            row[col.name] = []
        elif isinstance(col.type, sa.Integer | sa.Boolean):
            row[col.name] = 0
        else:
            row[col.name] = "x"
    return row
