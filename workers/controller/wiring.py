"""A host document's wire body and digest, each item serialised once per batch (issue 13).

Dumping each of 500 documents whole with pydantic (163 KB each: a wide subnet's ports on
every other host) took more of a wide change's compile than building them. The items a
batch's documents share (a subnet's remote ports, a security group with its members) are
the same objects in every document (`remotes.py`, `sections.py`), so `Dumps` serialises
each object once and hands every document the same result: a host's body is its own
items plus lists of shared dicts, its digest a hash over shared byte strings.

The body equals `HostState.wire(sections)`; the digest changes exactly when that body
(less its revision) does. Shared dicts are never mutated: a body is only sent (Celery
serialises it) and kept as the base of the next delta (read only).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

from workers.protocol import HEADER, SECTIONS, HostState, SubnetState, TypedNetworkState

T = TypeVar("T")
_REMOTE = {"remote_ports"}
_NO_GROUPS = {"security_group_ids"}
_LISTED = (SubnetState, TypedNetworkState)  # items whose remote ports are shared objects


class Dumps:
    """Per batch: each item's wire dict and JSON bytes, computed once per object (kept
    alive here, so an id is never reused while the batch runs)."""

    def __init__(self) -> None:
        self._py: dict[int, tuple[BaseModel, dict[str, Any]]] = {}
        self._js: dict[int, tuple[BaseModel, bytes]] = {}

    @staticmethod
    def _many(
        memo: Mapping[int, tuple[BaseModel, T]], items: list[Any], one: Callable[[Any], T]
    ) -> list[T]:
        """`[one(i) for i in items]` without a call per item already serialised (a wide
        subnet's 500 ports in each of 500 documents)."""
        got = list(map(memo.get, map(id, items)))
        if None in got:
            return [one(i) for i in items]
        return [hit[1] for hit in got if hit is not None]

    def py(self, item: BaseModel) -> dict[str, Any]:
        hit = self._py.get(id(item))
        if hit is not None:
            return hit[1]
        if isinstance(item, _LISTED):
            out = item.model_dump(mode="json", exclude=_REMOTE)
            out["remote_ports"] = self._many(self._py, item.remote_ports, self.py)
        else:
            out = item.model_dump(mode="json")
        self._py[id(item)] = (item, out)
        return out

    def js(self, item: BaseModel) -> bytes:
        hit = self._js.get(id(item))
        if hit is not None:
            return hit[1]
        if isinstance(item, _LISTED):  # the item less its ports, then each port's bytes
            out = b"%s+[%s]" % (
                item.model_dump_json(exclude=_REMOTE).encode(),
                b",".join(self._many(self._js, item.remote_ports, self.js)),
            )
        else:
            out = item.model_dump_json().encode()
        self._js[id(item)] = (item, out)
        return out


def wire(state: HostState, sections: Collection[str], dumps: Dumps | None = None) -> dict[str, Any]:
    """`state.wire(sections)`, from the batch's shared item dicts."""
    d = Dumps() if dumps is None else dumps
    body: dict[str, Any] = {name: getattr(state, name) for name in HostState.model_fields}
    for name in SECTIONS:
        if name not in sections:
            del body[name]
        else:
            body[name] = [d.py(item) for item in body[name]]
    if "security_groups" not in sections and "ports" in body:
        body["ports"] = [{k: v for k, v in p.items() if k != "security_group_ids"}
                         for p in body["ports"]]  # fmt: skip
    return body


def digest(
    state: HostState, sections: Collection[str] = SECTIONS, dumps: Dumps | None = None
) -> str:
    """The hash of what `wire(sections)` sends but the revision: the header, then per
    section its name and its items' JSON (each item's bytes made once per batch)."""
    d = Dumps() if dumps is None else dumps
    h = hashlib.sha256()
    header = {name: getattr(state, name) for name in sorted(HEADER - {"revision"})}
    h.update(json.dumps(header).encode())
    no_groups = "security_groups" not in sections
    for name in SECTIONS:
        if name not in sections:
            continue
        items = getattr(state, name)
        if name == "ports" and no_groups:
            parts = [p.model_dump_json(exclude=_NO_GROUPS).encode() for p in items]
        else:
            parts = [d.js(item) for item in items]
        h.update(b"%s:[%s];" % (name.encode(), b",".join(parts)))
    return h.hexdigest()
