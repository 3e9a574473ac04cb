"""Stage marks (workers/timeline.py) and how bench/converge.py lines one change up."""

from __future__ import annotations

import io
import logging
from collections import Counter
from typing import Any

import pytest

from bench import stages
from bench.converge import SYNC_LINE, _pairs
from workers import timeline
from workers.agent.agent import SyncStats
from workers.agent.service import AgentService
from workers.protocol import HostState, Report
from workers.timeline import Mark


@pytest.fixture
def captured(timeline_log: io.StringIO) -> io.StringIO:
    return timeline_log


def test_marks_are_off_unless_enabled(captured: io.StringIO) -> None:
    timeline.ENABLED = False
    timeline.mark("compiled", "h1", 3)
    assert captured.getvalue() == ""


def test_enabled_marks_parse_back_per_host(captured: io.StringIO) -> None:
    timeline.enable()
    timeline.mark("compiled", "h1", 3)
    timeline.mark("batched", ["h2", "h1"])
    marks = timeline.parse("noise\n" + captured.getvalue())
    assert [(m.stage, m.host, m.revision) for m in marks] == [
        ("compiled", "h1", 3),
        ("batched", "h1", None),
        ("batched", "h2", None),
    ]
    assert marks[1].at == marks[2].at >= marks[0].at > 0


@pytest.mark.parametrize("value", ["1", "true", "on", "YES"])
def test_the_environment_turns_marks_on(value: str) -> None:
    assert timeline.enabled_by(value)
    assert not timeline.enabled_by(None)
    assert not timeline.enabled_by("0")


def _m(stage: str, at: float, revision: int | None = None, host: str = "h1") -> Mark:
    return Mark(stage, host, revision, at)


def test_chain_follows_the_revision_that_made_the_change_active() -> None:
    marks = [
        _m("compiled", 0.5, 6),  # before the POST: another change
        _m("poked", 1.01),
        _m("poked", 1.011, host="h2"),  # another host's
        _m("poke_received", 1.02),
        _m("batched", 1.03),
        _m("compile_start", 1.031),
        _m("inputs_read", 1.04),
        _m("built", 1.045),
        _m("compiled", 1.05, 7),
        _m("sent", 1.051, 7),
        _m("received", 1.06, 6),  # an older document arriving late
        _m("received", 1.07, 7),
        _m("apply_start", 1.071, 7),
        _m("applied", 1.09, 7),
        _m("report_sent", 1.091, 7),
        _m("report_received", 1.1, 7),
        _m("recorded", 1.12, 7),
        _m("recorded", 1.5, 8),  # after the client saw it
    ]
    line = stages.chain(marks, "h1", posted=1.0, seen=1.13)
    assert [s for s, _ in line] == [
        "posted",
        "poked",
        "poke_received",
        "batched",
        "compile_start",
        "inputs_read",
        "built",
        "compiled",
        "sent",
        "received",
        "apply_start",
        "applied",
        "report_sent",
        "report_received",
        "recorded",
        "active_seen",
    ]
    assert dict(line)["received"] == 1.07
    spans = stages.durations(line)
    assert spans["controller: compile: read rows"] == pytest.approx(9.0)
    assert spans["controller: compile: digest, stamp, commit"] == pytest.approx(5.0)
    assert spans["client: polling sees active"] == pytest.approx(10.0)
    assert sum(spans.values()) == pytest.approx(130.0)


def test_chain_of_a_process_that_marks_nothing_is_post_to_seen() -> None:
    line = stages.chain([], "h1", posted=1.0, seen=1.2)
    assert stages.durations(line) == {"client: polling sees active": pytest.approx(200.0)}


def test_summary_takes_medians_in_pipeline_order() -> None:
    runs = [
        {"agent: sync (observe, plan, apply)": 10.0, "api: request, commit, poke": 3.0},
        {"agent: sync (observe, plan, apply)": 30.0, "api: request, commit, poke": 5.0},
        {"agent: sync (observe, plan, apply)": 20.0},
    ]
    summary = stages.summary(runs)
    assert list(summary) == ["api: request, commit, poke", "agent: sync (observe, plan, apply)"]
    assert summary["agent: sync (observe, plan, apply)"]["p50_ms"] == 20.0
    assert summary["api: request, commit, poke"]["all_ms"] == [3.0, 5.0, None]


def test_relative_lists_every_hosts_marks_inside_the_window() -> None:
    marks = [_m("compiled", 0.9, 1), _m("sent", 1.05, 2, host="h2"), _m("recorded", 1.3, 2)]
    assert stages.relative(marks, posted=1.0, seen=1.2) == ["50.0 sent h2 2"]


class _Agent:
    """Applies nothing; its stats say where a sync's time went."""

    stats = SyncStats(
        ops=2,
        applied=Counter({"CreatePort": 1}),
        timings={"total": 0.03, "render": 0.004, "apply": 0.02},
        op_seconds={"RestoreRuleset": 0.015, "CreatePort": 0.005},
    )

    def sync(self, state: HostState, *, full: bool = False) -> Report:
        return Report(host=state.host, revision=state.revision, ok=True)


def test_the_agent_marks_its_stages_and_logs_where_a_sync_spent_its_time(
    captured: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    sent: list[str] = []

    class Bus:
        def send_task(self, name: str, args: list[Any], **_: Any) -> None:
            timeline.mark("on_the_bus", "a1", args[0]["revision"])
            sent.append(name)

    timeline.enable()
    service = AgentService("a1", "198.18.0.31", ["compute"], _Agent(), app=Bus())  # type: ignore[arg-type]
    doc = HostState(host="a1", revision=4, vtep_ip="198.18.0.31").wire(["subnets", "ports"])
    with caplog.at_level(logging.INFO, logger="vpcd.agent"):
        service.apply(doc, full=True)
    marks = timeline.parse(captured.getvalue())
    assert [(m.stage, m.revision) for m in marks] == [
        ("received", 4),
        ("apply_start", 4),
        ("applied", 4),
        ("report_sent", 4),  # before the report is on the bus: it may be taken at once
        ("on_the_bus", 4),
    ]
    assert sent == ["vpcd.controller.report"]
    (line,) = [r.getMessage() for r in caplog.records if "sync revision=" in r.getMessage()]
    (parsed,) = SYNC_LINE.findall(line)
    assert parsed[:5] == ("4", "False", "2", "1", "30.0")
    assert _pairs(parsed[5]) == {"render": 4.0, "apply": 20.0}
    assert _pairs(parsed[6]) == {"RestoreRuleset": 15.0, "CreatePort": 5.0}
