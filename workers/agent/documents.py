"""What the agent service remembers between documents: the last one it applied (the
base an incremental document must name) and the results it last reported (so the
answer to an incremental document carries only what changed).

A whole document is always answered with every result, so a controller that sends no
deltas (an older one) always gets the full reports it expects; a partial report follows
only a delta, which only a controller that reads partial reports sends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

from pydantic import BaseModel

from workers import docdelta
from workers.protocol import HostState, Report

Seen = tuple[str, int, bool, str | None]  # kind, revision, ok, detail
PARTIAL_FIELDS = ("partial", "removed")  # Report fields only a partial report carries


@dataclass
class Documents:
    last: dict[str, Any] | None = None  # the whole last document applied (or attempted)
    reported: dict[str, Seen] = field(default_factory=dict)  # resource id -> last result
    state: HostState | None = None  # `last`, validated

    def validated(self, doc: dict[str, Any], delta: Mapping[str, Any] | None) -> HostState:
        """The HostState of `doc`, the whole document. After a delta on `last`, only the
        items the delta sets are validated (plus the header): every other item is the
        last state's own object, so a one-port delta at 1000 ports validates one port,
        and the agent's delta finds the 999 others unchanged by identity."""
        base = self.state
        if delta is None or base is None or base.revision != delta[docdelta.BASE]:
            return HostState.model_validate(doc)
        update: dict[str, list[BaseModel]] = {}
        for section, change in delta[docdelta.CHANGES].items():
            if section not in HostState.model_fields:
                return HostState.model_validate(doc)  # the whole answer says what is wrong
            model = get_args(HostState.model_fields[section].annotation)[0]
            items = {docdelta.item_key(vars(item)): item for item in getattr(base, section)}
            for key in change["remove"]:
                items.pop(key, None)
            for item in change["set"]:
                valid = model.model_validate(item)
                items[docdelta.item_key(vars(valid))] = valid
            update[section] = list(items.values())
        header = HostState.model_validate({k: v for k, v in doc.items() if not isinstance(v, list)})
        fields = {k: v for k, v in header if not isinstance(v, list)}  # not the sections
        return base.model_copy(update={**fields, **update})

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
