"""Recording an agent's report (issue 13): each status table, the hosts' support and
the results are read once per report, whatever kinds it changed, and the statuses after
any sequence of reports are those a from-scratch derivation of every resource gives."""

from __future__ import annotations

import random
from typing import Any

import pytest
import sqlalchemy as sa

from models import carriers
from models.hoststate import Realisation
from tests.api import report_fleet as rf
from tests.conftest import ADMIN
from workers.controller import tasks
from workers.protocol import Report

HOSTS = 12


@pytest.fixture
def fleet(client, db_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Report]:  # type: ignore[no-untyped-def]
    if db_url.startswith("sqlite"):
        pytest.skip("the fleet is seeded with Postgres arrays")
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setattr(tasks.app, "send_task", lambda *_a, **_k: None)
    topo = rf.seed(client, ADMIN, db_url, HOSTS)
    return rf.reports(db_url, topo.hosts)


def _record(rep: Report) -> list[str]:
    with rf.counting() as seen:
        tasks.report(rep.model_dump(mode="json"))
    return seen


def _reads(statements: list[str], table: str) -> list[str]:
    """SELECTs whose first FROM is `table` (the status rows, the support, the results)."""
    return [s for s in statements if s.startswith("SELECT") and f"\nFROM {table} " in s]


def test_one_read_of_each_table_per_report(fleet: dict[str, Report]) -> None:
    """Before: the subnets were refreshed twice (asked for, and as their ports' parent),
    the hosts' support read six times and the results once per kind."""
    for rep in fleet.values():
        kinds = {r.kind for r in rep.results}
        assert {"port", "subnet", "security_group"} <= kinds
        seen = _record(rep)
        # its realised revision, then the support of every host its resources need
        assert len(_reads(seen, "hosts")) == 2, _reads(seen, "hosts")
        assert len(_reads(seen, "subnets")) == 1, _reads(seen, "subnets")
        # its own rows, then every carrier's results of the resources it changed
        assert len(_reads(seen, "realisations")) == 2, _reads(seen, "realisations")


def _scratch(session: Any) -> dict[tuple[str, str], tuple[str, str | None]]:
    """Every resource's status derived alone, as the refresh did before it was batched:
    its carriers, its hosts' support and its results read for it only."""
    out = {}
    for kind, spec in carriers.KINDS.items():
        table = spec.table
        for rid, rev in session.execute(sa.select(table.c.id, table.c.revision)):
            needs = carriers.carriers(session, kind, {rid}).get(rid, {})
            support = carriers.host_support(session, set(needs))
            results = {
                r.host: r
                for r in session.scalars(
                    sa.select(Realisation).where(Realisation.resource_id == rid)
                )
            }
            out[kind, rid] = carriers.verdict(
                rev, needs, support, results, spec.unplaced, spec.unplaced_detail
            )
    return out


def _stored(session: Any) -> dict[tuple[str, str], tuple[str, str | None]]:
    out = {}
    for kind, spec in carriers.KINDS.items():
        t = spec.table
        for rid, status, detail in session.execute(
            sa.select(t.c.id, t.c.status, t.c.status_detail)
        ):
            out[kind, rid] = (status, detail)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_statuses_after_random_reports_equal_a_from_scratch_derivation(
    fleet: dict[str, Report], db_url: str, seed: int
) -> None:
    rnd = random.Random(seed)
    hosts = sorted(fleet)
    revision = dict.fromkeys(hosts, 1)
    statuses: set[str] = set()
    for step in range(40):
        host = rnd.choice(hosts)
        base = fleet[host]
        revision[host] += 1
        picked = base.results if step < len(hosts) else rnd.sample(
            base.results, rnd.randint(1, len(base.results))
        )  # fmt: skip
        results = []
        for r in picked:
            ok = rnd.random() > 0.15
            results.append(
                r.model_copy(
                    update={
                        "ok": ok,
                        "detail": None if ok else f"boom {step}",
                        "revision": r.revision - rnd.choice([0, 0, 0, 1]),
                    }
                )
            )
        rep = base.model_copy(
            update={
                "revision": revision[host],
                "results": results,
                "ok": all(r.ok for r in results),
                "partial": step >= len(hosts) and rnd.random() < 0.7,
            }
        )
        tasks.report(rep.model_dump(mode="json"))
        with rf.session(db_url) as s:
            stored = _stored(s)
            assert stored == _scratch(s), step
        statuses |= {status for status, _ in stored.values()}
    assert {"active", "pending", "error"} <= statuses  # the sequences reach every verdict
