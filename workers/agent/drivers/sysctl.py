"""Per-namespace sysctls (net.*): read and written from a throwaway thread setns()ed into
the namespace, since /proc/sys/net shows the namespace of the task that opens it. No
shell, no `ip netns exec`: one short thread per call, never leaking into ours."""

from __future__ import annotations

import os
import re

from workers.agent.drivers.base import _CLONE_NEWNET, _libc
from workers.agent.drivers.netns import _check, _in_thread, netns_path

_KEY_RE = re.compile(r"^net(\.[A-Za-z0-9_-]+)+\Z")


def _path(key: str) -> str:
    if _KEY_RE.match(key) is None:
        raise ValueError(f"invalid sysctl key {key!r}")
    return "/proc/sys/" + key.replace(".", "/")


def _inside(netns: str, fn_path: str, value: str | None) -> str:
    fd = os.open(netns_path(netns), os.O_RDONLY)
    try:
        _check(_libc.setns(fd, _CLONE_NEWNET), f"setns {netns}")
    finally:
        os.close(fd)
    if value is None:
        with open(fn_path) as f:
            return f.read().strip()
    with open(fn_path, "w") as f:
        f.write(value)
    return value


def read(netns: str, key: str) -> str:
    path = _path(key)
    return _in_thread(lambda: _inside(netns, path, None))


def write(netns: str, key: str, value: str) -> None:
    path = _path(key)
    _in_thread(lambda: _inside(netns, path, value))
