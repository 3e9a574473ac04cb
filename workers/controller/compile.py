"""Compile one host's desired state from DB rows (DESIGN §2).

`build()` is a pure function of named `Inputs` (the sections live in `sections.py`), so it
is unit-tested without a database; `compile_host()` reads the inputs, builds the sections
the host supports and stamps the document's revision. A section the host does not support
is still built, so that the resources it would carry can be marked `error` (mixed-version
rollouts).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from models import hoststate as hs
from workers import timeline
from workers.controller import wiring
from workers.controller.inputs import read_inputs_many
from workers.controller.sections import COMPILERS, Inputs
from workers.protocol import SECTIONS, HostState

__all__ = [
    "COMPILERS",
    "Compiled",
    "Inputs",
    "build",
    "compile_host",
    "compile_hosts",
    "read_inputs_many",
]


@dataclass(frozen=True)
class Compiled:
    """A host's stamped document, the sections it gets, and the resources it cannot carry
    for want of a section (kind -> ids)."""

    state: HostState
    sections: tuple[str, ...]
    unsent: dict[str, set[str]]
    # the batch's serialised items, shared with the other documents compiled with it
    dumps: wiring.Dumps = field(default_factory=wiring.Dumps, compare=False, repr=False)

    def wire(self) -> dict[str, Any]:
        """`state.wire(sections)`, each shared item serialised once per batch."""
        return wiring.wire(self.state, self.sections, self.dumps)


def build(inputs: Inputs, sections: Collection[str] = SECTIONS) -> HostState:
    """The document with these sections filled (the others empty)."""
    return HostState(
        host=inputs.host,
        revision=inputs.revision,
        vtep_ip=inputs.vtep_ip,
        **{name: COMPILERS[name].build(inputs) for name in SECTIONS if name in sections},
    )


def compile_host(session: Session, host: str) -> Compiled | None:
    """The host's document, stamped; None if the host has not registered yet."""
    return compile_hosts(session, [host]).get(host)


def compile_hosts(session: Session, hosts: Sequence[str]) -> dict[str, Compiled]:
    """The documents of these hosts, stamped, by host (those not registered yet left
    out), read in a number of statements that does not grow with the hosts."""
    rows = hs.hosts_by_name(session, hosts)
    if not rows:
        return {}
    sections = {r.name: tuple(s for s in SECTIONS if s in r.sections) for r in rows}
    hs.serialise_compiles(session, sorted(sections))  # before reading any row of a document
    inputs = read_inputs_many(session, [(r, sections[r.name]) for r in rows])
    timeline.mark("inputs_read", sections)
    states = {name: build(inputs[name], sections[name]) for name in sorted(sections)}
    timeline.mark("built", sections)
    dumps = wiring.Dumps()  # each item shared by the documents serialised once
    revisions = hs.stamp_many(
        session,
        {name: wiring.digest(state, sections[name], dumps) for name, state in states.items()},
    )
    out = {}
    for name, state in states.items():
        unsent: dict[str, set[str]] = {}
        for section in SECTIONS:
            if section not in sections[name]:
                built = COMPILERS[section].build(inputs[name])
                for kind, ids in COMPILERS[section].carries(built).items():
                    unsent.setdefault(kind, set()).update(ids)
        out[name] = Compiled(
            state.model_copy(update={"revision": revisions[name]}), sections[name], unsent, dumps
        )
    return out
