"""sysctl inside a namespace: one write per call."""

from __future__ import annotations

from workers.agent.drivers.cmd import check, run


def write(netns: str | None, key: str, value: str) -> None:
    check(run(netns, ["sysctl", "-q", "-w", f"{key}={value}"]), f"sysctl {key}")
