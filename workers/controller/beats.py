"""Heartbeats that change nothing, answered from memory and written in batches (issue 13).

At 1000 hosts beating every 5 s the control queue carries 200 heartbeats a second; each
one read and wrote the host's row, and with the bench's simulated fleet they alone
outran what one controller could do, starving pokes and reports queued behind them.
A controller process (`tasks.run`) therefore remembers, per host, what its agent last
advertised (and this process wrote). A heartbeat advertising the same thing again only
notes when it came; a thread writes the noted hosts' `last_heartbeat` every `FLUSH`
seconds in one statement (`flush`). Anything advertised anew, a first heartbeat after a
restart, or a host this process has not seen goes through the database at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from datetime import datetime

from models.base import utcnow

FLUSH = 1.0  # seconds between writes of the noted heartbeats: `last_heartbeat` lags by that
log = logging.getLogger("vpcd.controller")


class RecentBeats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._said: dict[str, Hashable] = {}
        self._due: dict[str, datetime] = {}  # host -> its first beat not yet written

    def known(self, host: str, advertised: Hashable) -> bool:
        """True when this process wrote exactly this advertisement for `host` last."""
        with self._lock:
            return self._said.get(host) == advertised

    def note(self, host: str, advertised: Hashable) -> None:
        with self._lock:
            self._said[host] = advertised

    def beat(self, host: str) -> None:
        """`host` beat now: its `last_heartbeat` is written at the next flush."""
        now = utcnow()
        with self._lock:
            self._due.setdefault(host, now)

    def flush(self, write: Callable[[datetime, list[str]], object]) -> int:
        """Write the noted beats: one time for all of them, the earliest (a host is never
        shown to have beaten later than it did). Put back if the write fails."""
        with self._lock:
            due, self._due = self._due, {}
        if not due:
            return 0
        try:
            write(min(due.values()), sorted(due))
        except Exception:
            with self._lock:
                for host, at in due.items():
                    self._due.setdefault(host, at)
            raise
        return len(due)

    def start(self, write: Callable[[datetime, list[str]], object]) -> threading.Thread:
        def loop() -> None:
            while True:
                time.sleep(FLUSH)
                try:
                    self.flush(write)
                except Exception:  # kept for the next round
                    log.exception("writing heartbeats failed")

        thread = threading.Thread(target=loop, name="vpcd-beats", daemon=True)
        thread.start()
        return thread
