"""Heartbeats that change nothing, answered from memory (issue 13).

At 1000 hosts beating every 5 s the control queue carries 200 heartbeats a second; each
one read and wrote the host's row, and with the bench's simulated fleet they alone
outran what one controller could do, starving pokes and reports queued behind them.
A controller process (`tasks.run`) therefore remembers, per host, what its agent last
advertised and when that was last written: a heartbeat advertising the same thing
within `every` seconds of the last write is dropped. `last_heartbeat` then lags by at
most `every` (a third of the 30 s down timeout), and anything advertised anew, a first
heartbeat after a restart, or a host this process has not seen is written at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable

from models.host import HEARTBEAT_TIMEOUT

EVERY = HEARTBEAT_TIMEOUT.total_seconds() / 3


class RecentBeats:
    def __init__(self, every: float = EVERY) -> None:
        self.every = every
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[Hashable, float]] = {}

    def fresh(self, host: str, advertised: Hashable) -> bool:
        """True when `host` advertised exactly this, written less than `every` ago."""
        with self._lock:
            seen = self._seen.get(host)
        return (
            seen is not None and seen[0] == advertised and time.monotonic() - seen[1] < self.every
        )

    def note(self, host: str, advertised: Hashable) -> None:
        with self._lock:
            self._seen[host] = (advertised, time.monotonic())
