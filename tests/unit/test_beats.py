"""Heartbeats that advertise nothing new (issue 13): noted in memory, written together.

At 1000 hosts the heartbeats alone outran the controller's thread pool, each reading and
writing its host's row, so reports queued behind them; now only a host advertising
something new costs a statement, and the others cost one statement per flush between
them."""

from __future__ import annotations

from datetime import datetime

import pytest

from workers.controller.beats import RecentBeats


def test_known_beats_are_written_together_once_per_flush() -> None:
    beats = RecentBeats()
    writes: list[tuple[datetime, list[str]]] = []
    assert not beats.known("h1", "v1")
    beats.note("h1", "v1")
    beats.note("h2", "v1")
    assert beats.known("h1", "v1") and not beats.known("h1", "v2")  # a new VTEP: not known
    for _ in range(5):
        beats.beat("h1")
        beats.beat("h2")
    assert writes == []  # nothing written by the beats themselves
    assert beats.flush(lambda at, hosts: writes.append((at, hosts))) == 2
    assert [hosts for _, hosts in writes] == [["h1", "h2"]]
    assert beats.flush(lambda at, hosts: writes.append((at, hosts))) == 0  # nothing new
    assert len(writes) == 1


def test_beats_whose_write_failed_are_written_next_time() -> None:
    beats = RecentBeats()
    beats.beat("h1")

    def fail(at: datetime, hosts: list[str]) -> None:
        raise RuntimeError("database gone")

    with pytest.raises(RuntimeError):
        beats.flush(fail)
    written: list[list[str]] = []
    assert beats.flush(lambda at, hosts: written.append(hosts)) == 1
    assert written == [["h1"]]
