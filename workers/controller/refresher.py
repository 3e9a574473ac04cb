"""Statuses refreshed for many reports at once (issue 13).

A change of a subnet spanning 500 hosts brings 500 reports, and each one's status
refresh of the subnet read every carrier's result and support: 500 hosts x 500 rows,
about 25 ms per report, for a status that moves only when the last carrier reports. A
running controller (`tasks.run`) therefore records each report's results at once (its
own transaction, as before) and only notes here which resources changed; one thread
refreshes everything noted so far together, every `gather` seconds at most, so the
subnet is refreshed a few times per fan-out instead of once per host. A refresh that
fails is noted again; the sweep re-derives every unsettled status anyway.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from workers.controller.batch import Gathering

log = logging.getLogger("vpcd.controller")

Ids = dict[str, set[str]]


class Refresher(Gathering[Ids]):
    thread_name = "vpcd-refresher"

    def __init__(self, refresh: Callable[[Ids], object], *, gather: float = 0.05) -> None:
        super().__init__({}, gather)  # gather: for more reports to join a refresh
        self._refresh = refresh

    def add(self, ids_by_kind: Mapping[str, set[str]]) -> None:
        with self._cond:
            for kind, ids in ids_by_kind.items():
                if ids:
                    self._pending.setdefault(kind, set()).update(ids)
            if self._pending:
                self._cond.notify()

    def take(self, timeout: float | None = None) -> Ids:
        if not self._wait(timeout):
            return {}
        with self._cond:
            taken, self._pending = self._pending, {}
        return taken

    def run_once(self, timeout: float | None = None) -> int:
        """Refresh what was noted (waiting up to `timeout` for something); how many ids."""
        taken = self.take(timeout)
        if not taken:
            return 0
        try:
            self._refresh(taken)
        except Exception:  # noted again: the next round (or the sweep) retries
            log.exception("refreshing statuses failed")
            self.add(taken)
            time.sleep(self.gather)
        return sum(map(len, taken.values()))
