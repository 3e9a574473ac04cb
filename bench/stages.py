"""One change's way from POST to `active`, stage by stage (bench/converge.py).

The processes mark the stages they pass (`workers.timeline`, on with VPCD_TIMELINE=1);
`chain` lines the marks of one change up: the document revision that made the port
active is the newest one compiled for the host before the client saw `active`; the
stages up to its compile are the last marks before it (the poke that caused it), the
stages after it the first marks naming that revision. `durations` turns a chain into
the time spent between consecutive stages, the client's own stages included (its POST,
and its polling: from the statuses committed to the GET that first saw them).
Pure functions of the marks, so the lining up is unit-tested without a sandbox.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from workers.timeline import Mark

# walked back from the compile (its last steps name no revision yet)
BEFORE = ("poked", "poke_received", "batched", "compile_start", "inputs_read", "built")
COMPILED = "compiled"
AFTER = (
    "sent",
    "received",
    "apply_start",
    "applied",
    "report_sent",
    "report_received",
    "recorded",
)
POST_ANSWERED = "(client: its POST answered, apart)"  # not a step of the chain
# Each stage's time is named after what happened since the one before it.
SPANS = {
    "poked": "api: request, commit, poke",
    "poke_received": "bus: poke to controller",
    "batched": "controller: batcher wait (gather)",
    "compile_start": "controller: clear dirty flag",
    "inputs_read": "controller: compile: read rows",
    "built": "controller: compile: build sections",
    "compiled": "controller: compile: digest, stamp, commit",
    "sent": "controller: settle check, delta, send",
    "received": "bus: document to agent",
    "apply_start": "agent: patch and validate",
    "applied": "agent: sync (observe, plan, apply)",
    "report_sent": "agent: report built and sent",
    "report_received": "bus: report to controller",
    "recorded": "controller: record report, statuses",
    "active_seen": "client: polling sees active",
}


def chain(marks: Iterable[Mark], host: str, posted: float, seen: float) -> list[tuple[str, float]]:
    """(stage, wall time) of the change POSTed at `posted` and seen active at `seen`,
    starting with ("posted", posted) and ending with ("active_seen", seen); stages with
    no mark (a process that does not mark them) are left out."""
    mine = sorted((m for m in marks if m.host == host and posted <= m.at <= seen), key=_at)
    compiled = [m for m in mine if m.stage == COMPILED and m.revision is not None]
    out: list[tuple[str, float]] = [("posted", posted)]
    if not compiled:
        return [*out, ("active_seen", seen)]
    last = compiled[-1]
    revision = last.revision
    first = next(m for m in compiled if m.revision == revision)
    back: list[tuple[str, float]] = []
    limit = first.at
    for stage in reversed(BEFORE):
        found = [m for m in mine if m.stage == stage and m.at <= limit]
        if found:
            limit = found[-1].at
            back.append((stage, limit))
    out += reversed(back)
    out.append((COMPILED, first.at))
    after = first.at
    for stage in AFTER:
        hit = next(
            (m for m in mine if m.stage == stage and m.revision == revision and m.at >= after),
            None,
        )
        if hit is not None:
            after = hit.at
            out.append((stage, hit.at))
    out.append(("active_seen", seen))
    return out


def durations(stages: Sequence[tuple[str, float]]) -> dict[str, float]:
    """Milliseconds spent reaching each stage from the one before it."""
    return {
        SPANS.get(stage, stage): (at - stages[i - 1][1]) * 1000
        for i, (stage, at) in enumerate(stages)
        if i > 0
    }


def summary(runs: Sequence[dict[str, float]]) -> dict[str, Any]:
    """Per span, the median and all values over the runs, in pipeline order."""
    order = [s for s in [*SPANS.values(), POST_ANSWERED] if any(s in r for r in runs)]
    return {
        span: {
            "p50_ms": round(statistics.median([r[span] for r in runs if span in r]), 2),
            "all_ms": [round(r[span], 2) if span in r else None for r in runs],
        }
        for span in order
    }


def relative(marks: Iterable[Mark], posted: float, seen: float) -> list[str]:
    """Every host's marks between the POST and the client seeing `active`, as
    "ms stage host revision" lines (what else the processes did meanwhile)."""
    inside = sorted((m for m in marks if posted <= m.at <= seen), key=_at)
    return [f"{(m.at - posted) * 1000:.1f} {m.stage} {m.host} {m.revision}" for m in inside]


def _at(m: Mark) -> float:
    return m.at
