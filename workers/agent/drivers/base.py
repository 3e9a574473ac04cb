"""What every driver shares: error types, errno tolerance, the operator-readable reason."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable, Iterable
from typing import TypeVar

from pyroute2.netlink.exceptions import NetlinkError

NETNS_DIR = "/run/netns"
ROUTE_PROTO = 146  # rtm_protocol of routes the agent installs (unassigned in rt_protos)
RT_TABLE_MAIN = 254
NTF_SELF = 0x02
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
IFF_UP = 0x1
_CLONE_NEWNET = 0x40000000
_MS_REC, _MS_BIND, _MS_SHARED = 0x4000, 0x1000, 1 << 20
_MNT_DETACH = 2
_NETLINK_ROUTE = 0

_libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")

NOT_FOUND = frozenset({errno.ENOENT, errno.ENODEV, errno.ESRCH, errno.EADDRNOTAVAIL})


class DriverError(Exception):
    """A kernel operation failed; `errno` is the kernel's code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.errno = code


class NetnsMissing(DriverError):
    def __init__(self, name: str) -> None:
        super().__init__(errno.ENOENT, f"network namespace {name} does not exist")
        self.name = name


def describe(exc: BaseException) -> str:
    """A one-line, operator-readable reason: errno name plus the kernel's message
    (its extended ack when it sent one, e.g. "Nexthop has invalid gateway")."""
    code = getattr(exc, "errno", None)
    if isinstance(exc, NetlinkError):
        code = int(exc.code)
        message = exc.args[1] if len(exc.args) > 1 and exc.args[1] else os.strerror(code)
        return f"{errno.errorcode.get(code, code)}: {message}"
    if isinstance(exc, DriverError):
        return f"{errno.errorcode.get(exc.errno, exc.errno)}: {exc}"
    if isinstance(code, int):
        return f"{errno.errorcode.get(code, code)}: {os.strerror(code)}"
    return f"{type(exc).__name__}: {exc}"


def _code(exc: NetlinkError) -> int:
    return int(exc.code)


def _tolerate(codes: Iterable[int], call: Callable[[], T]) -> T | None:
    try:
        return call()
    except NetlinkError as exc:
        if _code(exc) in set(codes):
            return None
        raise
