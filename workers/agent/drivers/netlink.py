"""The per-namespace netlink socket cache (see the package docstring)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute

from workers.agent.drivers import rawnl, rawwrite
from workers.agent.drivers.base import _NETLINK_ROUTE, NetnsMissing, T
from workers.agent.drivers.netns import (
    _create,
    _open_inside,
    _open_many,
    _Opened,
    delete_netns,
    netns_path,
)
from workers.agent.drivers.nsthread import _NETNS_THREAD


def _identity(name: str | None) -> tuple[int, int]:
    path = "/proc/thread-self/ns/net" if name is None else netns_path(name)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise NetnsMissing(str(name)) from None
    return (st.st_dev, st.st_ino)


@dataclass
class _Handle:
    identity: tuple[int, int]
    raw: socket.socket
    fd: int | None  # the socket IPRoute wraps when first asked for
    ipr: Any = None


class Netlink:
    """One open IPRoute per namespace (None = the process's own), reused across syncs."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._handles: dict[str | None, _Handle] = {}
        self.sockets_opened = 0  # for benchmarks: each one is a cost worth counting

    def _wrap(self, fd: int) -> Any:
        return IPRoute(fileno=fd, groups=0, ext_ack=True, use_event_loop=self._loop)

    def handle(self, name: str | None) -> Any:
        """The IPRoute of namespace `name`; NetnsMissing if it does not exist."""
        entry = self._entry(name)
        if entry.ipr is None:
            assert entry.fd is not None
            entry.ipr, entry.fd = self._wrap(entry.fd), None
        return entry.ipr

    def raw(self, name: str | None) -> socket.socket:
        """The read socket of namespace `name` (rawnl); NetnsMissing if it does not exist."""
        return self._entry(name).raw

    def open_many(self, names: Iterable[str]) -> None:
        """Open the sockets of every namespace in `names` not open yet, in one batch."""
        todo = []
        for name in names:
            cached = self._handles.get(name)
            try:
                current = _identity(name)
            except NetnsMissing:
                continue
            if cached is None or cached.identity != current:
                todo.append(name)
        for name, opened in _open_many(todo).items():
            self.forget(name)
            self._keep(name, opened)

    def _keep(self, name: str | None, opened: _Opened) -> _Handle:
        self.sockets_opened += 1
        entry = _Handle(opened.identity, opened.raw, opened.fd)
        self._handles[name] = entry
        return entry

    def _entry(self, name: str | None) -> _Handle:
        try:
            identity = _identity(name)
        except NetnsMissing:
            self.forget(name)  # our socket must not keep a deleted namespace alive
            raise
        cached = self._handles.get(name)
        if cached is not None and cached.identity == identity:
            return cached
        if cached is not None:
            self.forget(name)
        if name is None:
            fd = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_ROUTE).detach()
            return self._keep(None, _Opened(identity, fd, rawnl.open_socket()))
        try:
            opened = _NETNS_THREAD.run(lambda: _open_inside(netns_path(name)))
        except FileNotFoundError:
            raise NetnsMissing(name) from None
        if opened.identity != identity:  # replaced while we opened it: use the new one
            opened.raw.close()
            os.close(opened.fd)
            return self._entry(name)
        return self._keep(name, opened)

    def create_netns(self, name: str) -> None:
        """Create the namespace (EEXIST is fine), bring its lo up, cache its sockets."""
        self.forget(name)
        entry = self._keep(name, _create(name))
        rawwrite.set_link(entry.raw, 1, up=True)  # lo is always ifindex 1

    def delete_netns(self, name: str) -> None:
        """Close our socket first: an open socket would keep the namespace alive."""
        self.forget(name)
        delete_netns(name)

    def prune(self, keep: Iterable[str | None]) -> None:
        """Close sockets of namespaces we no longer need or that were replaced.

        An open socket pins its namespace: without this, a namespace a user deleted
        (or one a port has left) would live on, veths and all, for as long as we run.
        """
        wanted = set(keep)
        for name, cached in list(self._handles.items()):
            try:
                current = _identity(name)
            except NetnsMissing:
                current = None
            if name not in wanted or current != cached.identity:
                self.forget(name)

    def prune_gone(self, names: Iterable[str]) -> None:
        """Close the sockets of these namespaces only (an incremental sync's prune:
        the ones its change let go, without a stat of every cached namespace)."""
        for name in names:
            self.forget(name)

    def forget(self, name: str | None) -> None:
        cached = self._handles.pop(name, None)
        if cached is None:
            return
        cached.raw.close()
        if cached.fd is not None:
            os.close(cached.fd)
        if cached.ipr is not None:
            cached.ipr.close()
            self._drain()

    def _drain(self) -> None:
        # Closing a transport on the shared loop is only scheduled; let it run.
        if not self._loop.is_closed():
            self._loop.run_until_complete(asyncio.sleep(0))

    def gather(self, coros: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
        """Run reads against many namespaces concurrently on the shared loop.

        Each request is still one netlink round trip, but the loop is entered once
        instead of once per request, and the kernel works while Python parses: about
        2.5x faster than the same reads one by one.
        """

        async def run() -> list[T]:
            return list(await asyncio.gather(*coros))

        return self._loop.run_until_complete(run())

    def cached(self) -> list[str | None]:
        return list(self._handles)

    def close(self) -> None:
        for name in list(self._handles):
            self.forget(name)
        if not self._loop.is_closed():
            self._drain()
            self._loop.close()
