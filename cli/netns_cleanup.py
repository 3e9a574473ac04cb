"""What the sandbox's agents leave inside a namespace it is about to delete: the daemons
they started there (dnsmasq runs in its own session and outlives its agent) and the
`/etc/netns/<netns>/resolv.conf` they wrote for a workload namespace.

Processes are found by the namespace (`ip netns pids`), so only what runs inside the
sandbox's own namespaces is ever signalled, each by its PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

ETC_NETNS = Path("/etc/netns")
MARKER = "# vpcd:"  # the first line of every file an agent writes (drivers/files.py)


def pids_in(ns: str) -> list[int]:
    done = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    return [int(p) for p in done.stdout.split() if p.isdigit()]


def stop_processes_in(ns: str, timeout: float = 5.0) -> None:
    """SIGTERM every process inside the namespace, SIGKILL what is left after `timeout`."""
    pids = pids_in(ns)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = [p for p in pids if p in pids_in(ns)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def remove_resolv_conf(ns: str) -> None:
    """The agent's resolv.conf of the namespace, and its directory when left empty."""
    folder = ETC_NETNS / ns
    path = folder / "resolv.conf"
    with contextlib.suppress(OSError, UnicodeDecodeError):
        if path.read_text().startswith(MARKER):
            path.unlink()
    with contextlib.suppress(OSError):
        folder.rmdir()
