"""A document that seems lost is re-sent with backoff (issue 13): once when the sweep
first finds the host lagging, then after the first wait, twice that, and so on up to a
cap; a host that caught up starts again from the beginning."""

from __future__ import annotations

from workers.controller.batch import RepushBackoff


def test_resends_of_a_lagging_host_back_off() -> None:
    b = RepushBackoff(first=5.0, cap=20.0)
    sent = [t for t in range(0, 80, 2) if b.due({"h"}, now=float(t))]  # a sweep every 2 s
    assert sent == [0, 6, 16, 36, 56, 76]  # waits 5 (the next sweep after), 10, 20, 20, 20


def test_a_host_that_caught_up_starts_over_and_others_are_independent() -> None:
    b = RepushBackoff(first=5.0)
    assert b.due({"a", "b"}, now=0.0) == {"a", "b"}
    assert b.due({"a", "b"}, now=2.0) == set()
    assert b.due({"b"}, now=4.0) == set()  # "a" caught up: forgotten
    assert b.due({"a", "b"}, now=6.0) == {"a", "b"}  # "a" lagging anew: at once; "b" due
