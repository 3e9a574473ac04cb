"""Per-namespace sysctls (net.*): read and written from a throwaway thread setns()ed into
the namespace, since /proc/sys/net shows the namespace of the task that opens it. No
shell, no fork, no `ip netns exec`: one short thread per call, never leaking into ours.
`netns=None` is the agent's own namespace (read and written in place)."""

from __future__ import annotations

import errno
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from workers.agent.drivers.base import DriverError
from workers.agent.drivers.netns import in_netns

T = TypeVar("T")

_KEY_RE = re.compile(r"^net(\.[A-Za-z0-9_-]+)+\Z")


def _path(key: str) -> str:
    if _KEY_RE.match(key) is None:
        raise ValueError(f"invalid sysctl key {key!r}")
    return "/proc/sys/" + key.replace(".", "/")


def _run(netns: str | None, fn: Callable[[], T]) -> T:
    """`fn` in `netns` (a thread setns()ed there), or here when None."""
    return fn() if netns is None else in_netns(netns, fn)


def read(netns: str | None, keys: Sequence[str]) -> dict[str, str]:
    """The keys' values in `netns`; a key the kernel does not have is left out."""
    paths = {key: _path(key) for key in keys}

    def go() -> dict[str, str]:
        out: dict[str, str] = {}
        for key, path in paths.items():
            try:
                with open(path) as f:
                    out[key] = f.read().strip()
            except FileNotFoundError:
                continue
        return out

    return _run(netns, go)


def write(netns: str | None, values: Mapping[str, str]) -> None:
    """Set every key in `netns`; DriverError naming the key the kernel refused."""
    paths = {_path(key): (key, value) for key, value in values.items()}

    def go() -> None:
        for path, (key, value) in paths.items():
            try:
                with open(path, "w") as f:
                    f.write(value)
            except OSError as exc:
                raise DriverError(
                    exc.errno or errno.EIO, f"sysctl -w {key}={value}: {exc}"
                ) from exc

    _run(netns, go)
