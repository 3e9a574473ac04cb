"""Namespaces: create, delete, list and open them; probe from inside one.

Running code inside a namespace is `nsthread`'s; the per-namespace socket cache is
`netlink`'s (see the package docstring).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from workers.agent.drivers import rawnl
from workers.agent.drivers.base import (
    _CLONE_NEWNET,
    _MNT_DETACH,
    _MS_BIND,
    _MS_REC,
    _MS_SHARED,
    _NETLINK_ROUTE,
    NETNS_DIR,
    DriverError,
    NetnsMissing,
    T,
    _libc,
)
from workers.agent.drivers.nsthread import _NETNS_THREAD, _check, _in_thread


def netns_path(name: str) -> str:
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"invalid netns name {name!r}")
    return os.path.join(NETNS_DIR, name)


def list_netns() -> frozenset[str]:
    try:
        return frozenset(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return frozenset()


def netns_exists(name: str) -> bool:
    return os.path.exists(netns_path(name))


_shared_done = False


def _share_netns_dir() -> None:
    """Make /run/netns a shared mount, as `ip netns add` does, so mounts propagate."""
    global _shared_done
    if _shared_done:
        return
    os.makedirs(NETNS_DIR, exist_ok=True)
    if _libc.mount(b"", NETNS_DIR.encode(), b"none", _MS_SHARED | _MS_REC, None) != 0:
        d = NETNS_DIR.encode()
        _check(_libc.mount(d, d, b"none", _MS_BIND | _MS_REC, None), "bind /run/netns")
        _check(_libc.mount(b"", d, b"none", _MS_SHARED | _MS_REC, None), "share /run/netns")
    _shared_done = True


def create_netns(name: str) -> int:
    """Create /run/netns/NAME; returns the fd of a netlink socket inside it.

    EEXIST is success: the existing namespace is opened instead.
    """
    opened = _create(name)
    opened.raw.close()
    return opened.fd


def _create(name: str) -> _Opened:
    path = netns_path(name)
    _share_netns_dir()

    def make() -> _Opened:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0)
        except FileExistsError:
            return _open_inside(path)
        os.close(fd)
        try:
            _check(_libc.unshare(_CLONE_NEWNET), "unshare")
            src = f"/proc/self/task/{threading.get_native_id()}/ns/net".encode()
            _check(_libc.mount(src, path.encode(), b"none", _MS_BIND, None), "mount netns")
        except BaseException:
            os.unlink(path)
            raise
        st = os.stat(path)
        nl = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_ROUTE).detach()
        return _Opened((st.st_dev, st.st_ino), nl, rawnl.open_socket())

    return _NETNS_THREAD.run(make)


def delete_netns(name: str) -> None:
    """Unmount and unlink /run/netns/NAME; the kernel tears the namespace down lazily."""
    path = netns_path(name)
    if _libc.umount2(path.encode(), _MNT_DETACH) != 0:
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOENT):  # EINVAL: not a mount point
            raise DriverError(code, f"umount {path}: {os.strerror(code)}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@dataclass
class _Opened:
    """The sockets of one namespace, opened from inside it, and which namespace it was."""

    identity: tuple[int, int]
    fd: int  # for IPRoute (writes)
    raw: socket.socket  # for rawnl (reads)


def _open_inside(path: str) -> _Opened:
    """Enter `path` on the calling (netns) thread and open both sockets there."""
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        _check(_libc.setns(fd, _CLONE_NEWNET), f"setns {path}")
    finally:
        os.close(fd)
    nl = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_ROUTE).detach()
    return _Opened((st.st_dev, st.st_ino), nl, rawnl.open_socket())


def _open_many(names: list[str]) -> dict[str, _Opened]:
    """Open the sockets of many namespaces in one trip to the netns thread; a namespace
    that is gone is left out."""

    def run() -> dict[str, _Opened]:
        out = {}
        for name in names:
            try:
                out[name] = _open_inside(netns_path(name))
            except FileNotFoundError:
                continue
        return out

    return _NETNS_THREAD.run(run)


def open_netns_fd(name: str) -> int:
    try:
        return os.open(netns_path(name), os.O_RDONLY)
    except FileNotFoundError:
        raise NetnsMissing(name) from None


def on_netns_thread(netns: str, fn: Callable[[], T]) -> T:
    """`fn` on the long-lived netns thread, setns()ed into `netns` for the call (it goes
    home after). A process forked there starts in `netns`: a tool needs no `nsenter`
    (one exec fewer per run); NetnsMissing when the namespace is gone."""
    path = netns_path(netns)

    def inside() -> T:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise NetnsMissing(netns) from None
        try:
            _check(_libc.setns(fd, _CLONE_NEWNET), f"setns {netns}")
        finally:
            os.close(fd)
        return fn()

    return _NETNS_THREAD.run(inside)


def in_netns(netns: str, fn: Callable[[], T]) -> T:
    """`fn` on a throwaway thread setns()ed into `netns`: ours never moves."""

    def inside() -> T:
        fd = os.open(netns_path(netns), os.O_RDONLY)
        try:
            _check(_libc.setns(fd, _CLONE_NEWNET), f"setns {netns}")
        finally:
            os.close(fd)
        return fn()

    return _in_thread(inside)


def udp_probe(netns: str, targets: list[tuple[str, int]], timeout: float) -> list[bool]:
    """UDP-CONNECT from inside `netns`: a datagram to each target, which fails only on an
    ICMP port unreachable (ECONNREFUSED) within `timeout`, as Octavia's check does."""

    def open_sockets() -> list[int]:
        fds = []
        for address, port in targets:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.connect((address, port))
            fds.append(s.detach())
        return fds

    socks = [socket.socket(fileno=fd) for fd in in_netns(netns, open_sockets)]
    try:
        for s in socks:
            with contextlib.suppress(OSError):
                s.send(b"vpcd-health")
        up = [True] * len(socks)
        deadline = time.monotonic() + timeout
        for i, s in enumerate(socks):
            s.settimeout(max(0.0, deadline - time.monotonic()) or 0.001)
            try:
                s.recv(64)
            except ConnectionRefusedError:
                up[i] = False
            except OSError:
                pass  # silence (or an answer) is up: only a refusal is a failure
        return up
    finally:
        for s in socks:
            s.close()
