"""A seeded fleet whose hosts' reports can be recorded in-process (issue 13: the cost of
recording a report). Shared by tests/api/test_report_cost.py and bench/report_cost.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bench import simfleet as sf
from models.db import engine_for, session_factory
from workers.agent.desired import Desired
from workers.agent.report import build_report
from workers.controller.compile import compile_hosts
from workers.protocol import Report


def seed(client: Any, admin: dict[str, str], db_url: str, hosts: int) -> sf.Topology:
    """`hosts` hosts, 4 ports each, a subnet spanning half of them and tenants on runs."""
    return sf.seed(
        client, admin, db_url, hosts=hosts, ports_per_host=4, tenants=max(3, hosts // 5),
        span=max(2, hosts // 2),
    )  # fmt: skip


@contextmanager
def session(db_url: str) -> Iterator[Session]:
    with session_factory(engine_for(db_url)).begin() as s:
        yield s


def reports(db_url: str, hosts: list[str]) -> dict[str, Report]:
    """Each host's full report of its freshly compiled document, every result ok."""
    with session(db_url) as s:
        compiled = compile_hosts(s, hosts)
    return {h: build_report(Desired.build(c.state), {}, []) for h, c in compiled.items()}


@contextmanager
def counting() -> Iterator[list[str]]:
    """The SQL statements run meanwhile, on any engine."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", note)
