"""The vocabulary shared by planners, the dispatch table and the agent: Op and Phase.

An op is one kernel change, a small frozen dataclass naming its target by kernel name.
Op types live next to the planner that emits them (workers/agent/planners/*); this
module holds only what every domain shares, so a new domain never edits another's file.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, auto
from typing import ClassVar

from workers.agent.observed import Scope


class Phase(IntEnum):
    """Apply order across domains: deletions (which free names) before creations,
    parents before children. The firewall sits between the two, so the underlay guard
    is up before a VXLAN device exists and stays until the last one is gone; sets are
    filled before the rules that match on them and destroyed after. Only the order of
    the members matters: a new phase is one line where it belongs."""

    STOP_DAEMON = auto()  # a daemon leaves before its namespace does
    DELETE_NETNS = auto()  # then: the kernel tears down the veths inside in one batch
    DELETE_PORT = auto()
    DELETE_LEG = auto()
    DELETE_VXLAN = auto()
    DELETE_BRIDGE = auto()
    DELETE_EXT_BRIDGE = auto()
    SET_SYSCTLS = auto()
    FILL_IPSETS = auto()
    RESTORE_RULESET = auto()
    DESTROY_IPSETS = auto()
    REMOVE_FILES = auto()
    CUT_CONNTRACK = auto()
    CREATE_NETNS = auto()
    CREATE_BRIDGE = auto()
    CONFIGURE_BRIDGE = auto()
    CREATE_VXLAN = auto()
    CONFIGURE_VXLAN = auto()
    DELETE_FDB = auto()
    ADD_FDB = auto()
    ENSURE_EXT_BRIDGE = auto()
    CREATE_PORT = auto()
    CONFIGURE_HOST_VETH = auto()
    CONFIGURE_PORT = auto()
    CREATE_LEG = auto()  # routers after ports: a leg needs its subnet's bridge, as a port
    CONFIGURE_LEG_HOST = auto()
    CONFIGURE_ROUTER_LINK = auto()
    CONFIGURE_ROUTER = auto()  # routes after the links and addresses they go through
    RESTORE_ROUTER_RULESET = auto()  # NAT once the router namespace exists
    FLUSH_CONNTRACK = auto()  # after the rules changed, so no packet re-creates an entry
    ANNOUNCE = auto()  # gratuitous ARP last: the address and its NAT are in place
    WRITE_FILES = auto()  # a daemon's files before it starts or reloads
    START_DAEMON = auto()
    RELOAD_DAEMON = auto()
    RESTORE_NETNS_RULESET = auto()  # a load balancer's NAT, once its namespace exists
    CONFIGURE_LB = auto()  # after the VIP address exists: haproxy binds it


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
