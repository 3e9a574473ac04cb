"""Pokes compiled in batches, and re-sends that back off (issue 13).

A change reaching 500 hosts arrives as 500 pokes. Compiled one by one, each host read
its own copy of the rows it shares with the others (a subnet's ports, once per host
carrying it), and a host poked again before its compile was compiled twice. A running
controller (`tasks.run`) therefore only notes each poke here; one thread takes every
host noted so far, at most `limit`, and compiles them together (`tasks.push_many`), so
a host poked twice meanwhile is compiled once, and the rows cost one read per batch.
A batch that fails leaves its hosts dirty (the sweeper retries them), never forgotten.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Generic, NamedTuple, TypeVar

from workers import timeline

log = logging.getLogger("vpcd.controller")


class Want(NamedTuple):
    """What a push of a host must do: `full` sends the whole document even if the host
    has it (a resync); `resend` sends it again though no change waited (it seems lost)."""

    full: bool = False
    resend: bool = False

    def merge(self, other: Want) -> Want:
        return Want(self.full or other.full, self.resend or other.resend)


P = TypeVar("P", dict[str, "Want"], dict[str, set[str]])


class Gathering(Generic[P]):
    """Work noted by many threads and done by one (`run_once`, in a loop of its own): a
    round waits for something to be noted, then `gather` seconds more for the rest of
    it to arrive, and takes what is pending (`_pending`, guarded by `_cond`)."""

    thread_name = "vpcd-gathering"

    def __init__(self, pending: P, gather: float) -> None:
        self.gather = gather
        self._cond = threading.Condition()
        self._pending: P = pending

    def _wait(self, timeout: float | None) -> bool:
        """Something is pending (waited for up to `timeout`), and `gather` has passed."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._pending), timeout):
                return False
        time.sleep(self.gather)
        return True

    def run_once(self, timeout: float | None = None) -> int:
        raise NotImplementedError

    def start(self) -> threading.Thread:
        def loop() -> None:
            while True:
                self.run_once()

        thread = threading.Thread(target=loop, name=self.thread_name, daemon=True)
        thread.start()
        return thread


class Batcher(Gathering[dict[str, "Want"]]):
    thread_name = "vpcd-batcher"

    def __init__(
        self,
        push: Callable[[Mapping[str, Want]], object],
        on_error: Callable[[set[str]], object] | None = None,
        *,
        limit: int = 1000,
        gather: float = 0.005,
    ) -> None:
        super().__init__({}, gather)  # gather: for the pokes of one change to arrive together
        self._push = push
        self._on_error = on_error
        self.limit = limit

    def add(self, host: str, want: Want) -> None:
        with self._cond:
            self._pending[host] = self._pending.get(host, Want()).merge(want)
            self._cond.notify()

    def take(self, timeout: float | None = None) -> dict[str, Want]:
        """The next batch: every host noted so far (up to `limit`), once each."""
        if not self._wait(timeout):
            return {}
        with self._cond:
            hosts = sorted(self._pending)[: self.limit]
            batch = {h: self._pending.pop(h) for h in hosts}
        timeline.mark("batched", hosts)
        return batch

    def run_once(self, timeout: float | None = None) -> int:
        batch = self.take(timeout)
        if not batch:
            return 0
        try:
            self._push(batch)
        except Exception:  # the next poke or sweep retries: keep the hosts' need
            log.exception("pushing %d hosts failed", len(batch))
            if self._on_error is not None:
                self._on_error(set(batch))
        return len(batch)


class RepushBackoff:
    """When to re-send a document that seems lost: at once the first time the sweep
    finds the host lagging, then after `first` seconds, twice that, and so on up to
    `cap`, for as long as it keeps lagging. A host slow to report (a loaded machine, a
    long apply) thus gets a few copies, not one per sweep piling up in its queue."""

    def __init__(self, first: float, cap: float = 60.0) -> None:
        self.first = first
        self.cap = cap
        self._lock = threading.Lock()
        self._next: dict[str, tuple[float, float]] = {}  # host -> (due at, wait after)

    def due(self, lagging: Iterable[str], now: float | None = None) -> set[str]:
        """Of the hosts lagging now, those to re-send now; the others are forgotten."""
        now = time.monotonic() if now is None else now
        lagging = set(lagging)
        out: set[str] = set()
        with self._lock:
            self._next = {h: v for h, v in self._next.items() if h in lagging}
            for host in lagging:
                at, wait = self._next.get(host, (now, self.first))
                if now >= at:
                    out.add(host)
                    self._next[host] = (now + wait, min(wait * 2, self.cap))
        return out
