"""A subnet's ports on every host, ordered once per batch and shared by every host
document carrying the subnet (issue 13).

A change of a subnet spanning 500 hosts recompiles 500 documents, each holding the
subnet's ports on the *other* hosts. Gathering and sorting those ports once per host
was most of a batch's compile (500 hosts x 500 ports). `SubnetRemotes` sorts them once
per batch; a host's view is the shared list less its own entries, cut out by slicing
(the entries are the same `RemotePort` objects in every document).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Protocol

from workers.protocol import RemotePort

if TYPE_CHECKING:
    from collections.abc import Mapping

    from workers.controller.sections import Inputs


class PortColumns(Protocol):
    """What a remote port row gives a document: a `Port` or a `RemotePortRow`."""

    @property
    def subnet_id(self) -> str: ...
    @property
    def mac_address(self) -> str: ...
    @property
    def ip_address(self) -> str: ...


@lru_cache(maxsize=1 << 17)
def remote_port(mac: str, ip: str, vtep: str) -> RemotePort:
    """A subnet's port on another host, as every document carrying the subnet holds it:
    built once and shared (never mutated), not once per host per compile. Columns of
    the database's own rows: constructed, not validated."""
    return RemotePort.model_construct(mac=mac.lower(), ip=ip, vtep_ip=vtep)


class _Ordered:
    """Entries in one order, with where each owner's entries sit."""

    def __init__(self, entries: list[tuple[RemotePort, str | None]]) -> None:
        self.ports = [p for p, _ in entries]
        self.at: dict[str | None, list[int]] = {}
        for n, (_, owner) in enumerate(entries):
            self.at.setdefault(owner, []).append(n)

    def without(self, owner: str) -> list[RemotePort]:
        """The entries less `owner`'s: the shared list itself when it has none."""
        cut = self.at.get(owner)
        if not cut:
            return self.ports
        out: list[RemotePort] = []
        start = 0
        for n in cut:
            out += self.ports[start:n]
            start = n + 1
        out += self.ports[start:]
        return out


class SubnetRemotes:
    """One subnet's ports with their host's VTEP and name (None when unknown: inputs
    built by hand, where every entry is remote), in the order given (by port id)."""

    def __init__(self, rows: Iterable[tuple[PortColumns, str, str | None]]) -> None:
        self.rows = list(rows)

    @classmethod
    def group(cls, rows: Iterable[tuple[PortColumns, str, str | None]]) -> dict[str, SubnetRemotes]:
        """Rows of many subnets, by subnet, each keeping the rows' order."""
        by_subnet: dict[str, list[tuple[PortColumns, str, str | None]]] = {}
        for row in rows:
            by_subnet.setdefault(row[0].subnet_id, []).append(row)
        return {sid: cls(r) for sid, r in by_subnet.items()}

    @cached_property
    def _l2(self) -> _Ordered:
        entries = [(remote_port(p.mac_address, p.ip_address, v), o) for p, v, o in self.rows]
        entries.sort(key=lambda e: (e[0].mac, e[0].vtep_ip))  # stable: ties keep port order
        return _Ordered(entries)

    @cached_property
    def _routed(self) -> _Ordered:
        entries = [(remote_port(p.mac_address, p.ip_address, v), o) for p, v, o in self.rows if v]
        entries.sort(key=lambda e: (e[0].ip, e[0].vtep_ip))
        return _Ordered(entries)

    @cached_property
    def _vteps(self) -> tuple[list[str], Counter[str]]:
        counts = Counter(v for _, v, _ in self.rows if v)
        return sorted(counts), counts

    def l2_ports(self, host: str) -> list[RemotePort]:
        """The subnet's ports on hosts other than `host`, by (MAC, VTEP): unicast FDB."""
        return self._l2.without(host)

    def routed_ports(self, host: str) -> list[RemotePort]:
        """The same with a VTEP, by (IP, VTEP): a routed subnet's /32 routes."""
        return self._routed.without(host)

    def vteps(self, host: str) -> list[str]:
        """The VTEPs of the subnet's ports on hosts other than `host`: flood entries."""
        every, counts = self._vteps
        own = self._own.get(host)
        if not own:
            return every
        gone = {v for v, n in own.items() if counts[v] == n}
        return [v for v in every if v not in gone] if gone else every

    @cached_property
    def _own(self) -> dict[str | None, Counter[str]]:
        """Per host, how many of its entries sit on each VTEP."""
        out: dict[str | None, Counter[str]] = {}
        for _, v, o in self.rows:
            if v:
                out.setdefault(o, Counter())[v] += 1
        return out


def remotes_of(i: Inputs) -> Mapping[str, SubnetRemotes]:
    """The carried subnets' ports on other hosts, by subnet: shared by the batch
    (`read_inputs_many`), or gathered from `remote` (inputs built by hand)."""
    if i.remotes is not None:
        return i.remotes
    return SubnetRemotes.group((port, vtep, None) for port, vtep in i.remote)
