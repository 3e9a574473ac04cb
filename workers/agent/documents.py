"""What the agent service remembers between documents: the last one it applied (the
base an incremental document must name) and the results it last reported (so the
answer to an incremental document carries only what changed).

A whole document is always answered with every result, so a controller that sends no
deltas (an older one) always gets the full reports it expects; a partial report follows
only a delta, which only a controller that reads partial reports sends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workers.protocol import Report

Seen = tuple[str, int, bool, str | None]  # kind, revision, ok, detail
PARTIAL_FIELDS = ("partial", "removed")  # Report fields only a partial report carries


@dataclass
class Documents:
    last: dict[str, Any] | None = None  # the whole last document applied (or attempted)
    reported: dict[str, Seen] = field(default_factory=dict)  # resource id -> last result

    def changed_only(self, report: Report, *, partial: bool) -> Report:
        """`report` as sent: when `partial`, only the results that differ from the last
        report and the ids no longer carried; remembers what was reported either way."""
        now: dict[str, Seen] = {r.id: (r.kind, r.revision, r.ok, r.detail) for r in report.results}
        before, self.reported = self.reported, now
        if not partial:
            return report
        return report.model_copy(
            update={
                "partial": True,
                "results": [r for r in report.results if before.get(r.id) != now[r.id]],
                "removed": sorted(set(before) - set(now)),
            }
        )

    @staticmethod
    def wire(report: Report) -> dict[str, Any]:
        """The report as sent: a full one without the partial-report fields, so that an
        older controller (whose Report forbids unknown fields) accepts it."""
        body = report.model_dump(mode="json")
        if not report.partial:
            for name in PARTIAL_FIELDS:
                body.pop(name)
        return body
