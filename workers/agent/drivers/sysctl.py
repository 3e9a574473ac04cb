"""sysctl: read and write per-namespace kernel settings (one fork each, argv only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from workers.agent.drivers.cmd import check, run


def read(netns: str | None, keys: Sequence[str]) -> dict[str, str]:
    """The keys' values in `netns`; a key the kernel does not have is left out."""
    done = run(netns, ["sysctl", "-e", *keys])
    out: dict[str, str] = {}
    for line in done.stdout.splitlines():
        key, sep, value = line.partition(" = ")
        if sep:
            out[key.strip()] = value.strip()
    return out


def write(netns: str | None, values: Mapping[str, str]) -> None:
    check(run(netns, ["sysctl", "-w", *(f"{k}={v}" for k, v in values.items())]), "sysctl -w")
