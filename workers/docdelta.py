"""Incremental host documents (issue 14): a delta on a known base revision.

A host document's sections are lists of items, each keyed by its `id` (or `subnet_id`
for the per-subnet services). A delta names the base revision it applies to and, per
section that changed, the items to set (whole, replacing the one with the same key)
and the keys to remove. A section is a keyed set to the agent (it indexes every one by
key), so a patched base keeps the base's order with new items after it: the same
items as the document the controller compiled, not always in its order.

Mixed-version rollouts: whole documents are unchanged (envelope version 1). An agent
that also takes deltas advertises protocol version `PROTOCOL` (2) in its heartbeat (an
older controller only records the number); only such agents are sent deltas, and only
when the controller has the base it last sent them. Such an agent answers a delta with
a partial report (only the results that changed), a whole document with a full one,
so an older controller, which sends only whole documents, gets only full reports. An
agent whose last document is not the base asks for the whole document instead (the
fallback), so a lost message costs one round trip, never a wrong state.
Pure functions of dicts: no pydantic, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PROTOCOL = 2  # the protocol version an agent advertises when it takes deltas
BASE = "base_revision"  # the key that marks a document as a delta
CHANGES = "changes"


def item_key(item: Mapping[str, Any]) -> str:
    """An item's key in its section: its id, or its subnet's for per-subnet services."""
    return str(item.get("id", item.get("subnet_id")))


def _sections(doc: Mapping[str, Any]) -> list[str]:
    return [k for k, v in doc.items() if isinstance(v, list)]


def diff(base: Mapping[str, Any], new: Mapping[str, Any], base_revision: int) -> dict[str, Any]:
    """The delta that turns `base` (at `base_revision`) into `new`: its header, and per
    changed section the items set and the keys removed."""
    changes: dict[str, Any] = {}
    for section in sorted(set(_sections(base)) | set(_sections(new))):
        old = {item_key(i): i for i in base.get(section, [])}
        items = new.get(section, [])
        put = [i for i in items if old.get(item_key(i)) != i]
        keys = {item_key(i) for i in items}
        gone = sorted(k for k in old if k not in keys)
        if put or gone or section not in base:
            changes[section] = {"set": put, "remove": gone}
    header = {k: v for k, v in new.items() if not isinstance(v, list)}
    return {**header, BASE: base_revision, CHANGES: changes}


def is_delta(doc: Mapping[str, Any]) -> bool:
    return BASE in doc


def patch(base: Mapping[str, Any], delta: Mapping[str, Any]) -> dict[str, Any]:
    """The full document: `base` with the delta's header and section changes applied."""
    out = {k: v for k, v in base.items() if isinstance(v, list)}
    out.update({k: v for k, v in delta.items() if k not in (BASE, CHANGES)})
    for section, change in delta[CHANGES].items():
        items = {item_key(i): i for i in base.get(section, [])}
        for key in change["remove"]:
            items.pop(key, None)
        for item in change["set"]:
            items[item_key(item)] = item
        out[section] = list(items.values())
    return out
