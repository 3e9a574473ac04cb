"""The vocabulary shared by planners, the dispatch table and the agent: Op and Phase.

An op is one kernel change, a small frozen dataclass naming its target by kernel name.
Op types live next to the planner that emits them (workers/agent/planners/*); this
module holds only what every domain shares, so a new domain never edits another's file.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from workers.agent.observed import Scope


class Phase(IntEnum):
    """Apply order across domains: deletions (which free names) before creations,
    parents before children, sets before the rules that match on them."""

    DELETE_NETNS = 0  # first: the kernel then tears down the veths inside in one batch
    DELETE_PORT = 1
    DELETE_VXLAN = 2
    DELETE_BRIDGE = 3
    CREATE_NETNS = 4
    CREATE_BRIDGE = 5
    CONFIGURE_BRIDGE = 6
    CREATE_VXLAN = 7
    CONFIGURE_VXLAN = 8
    DELETE_FDB = 9
    ADD_FDB = 10
    CREATE_PORT = 11
    CONFIGURE_HOST_VETH = 12
    CONFIGURE_PORT = 13
    FILL_IPSETS = 14  # before the rules that reference them
    RESTORE_RULESET = 15
    DESTROY_IPSETS = 16  # after the rules that referenced them are gone


@dataclass(frozen=True)
class Op:
    """One kernel change; ops sort by phase, then target, then value."""

    PHASE: ClassVar[Phase]

    @property
    def target(self) -> str:
        raise NotImplementedError

    @property
    def resource(self) -> tuple[str, str] | None:
        """The (kind, id) whose result this op decides; None for host housekeeping."""
        return None

    def scope(self) -> Scope:
        """What to re-observe after applying it."""
        return Scope(links=frozenset({self.target}))

    def sort_key(self) -> tuple[int, str, str]:
        return (int(self.PHASE), self.target, repr(self))


def ordered(ops: list[Op]) -> list[Op]:
    """The apply order of `ops`, independent of the order planners produced them in."""
    return sorted(ops, key=Op.sort_key)
