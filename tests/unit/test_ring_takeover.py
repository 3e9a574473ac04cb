"""A controller that sees a member leave takes over its hosts (`ring.taken_over`), and
the beat that notices it says so (`Ring.on_leave`)."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from workers.controller import ring
from workers.controller.ring import Ring, owner_of, taken_over

HOSTS = [f"h{i:03d}" for i in range(300)]


@pytest.mark.parametrize(
    ("before", "after", "me"),
    [
        (["c1", "c2"], ["c1"], "c1"),
        (["c1", "c2", "c3"], ["c1", "c3"], "c1"),
        (["c1", "c2", "c3"], ["c1", "c3"], "c3"),
        (["c1", "c2", "c3"], ["c1"], "c1"),
    ],
)
def test_a_member_leaving_hands_its_hosts_to_their_new_owners(
    before: list[str], after: list[str], me: str
) -> None:
    gone = set(before) - set(after)
    got = taken_over(HOSTS, before, after, me)
    assert got == {h for h in HOSTS if owner_of(h, before) in gone and owner_of(h, after) == me}
    assert got  # a share of the gone member's hosts
    assert all(owner_of(h, before) != me for h in got)  # never its own hosts again


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ([], ["c1"]),  # the first view: nobody left
        (["c1"], ["c1", "c2"]),  # a member joined
        (["c1", "c2"], ["c1", "c2"]),
    ],
)
def test_nothing_is_taken_over_when_nobody_left(before: list[str], after: list[str]) -> None:
    assert taken_over(HOSTS, before, after, "c1") == set()


def test_the_beat_that_sees_a_member_expire_reports_it(monkeypatch: pytest.MonkeyPatch) -> None:
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("needs Redis")
    key = f"test.controllers.{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(ring, "MEMBERS", key)
    seen: list[tuple[list[str], list[str]]] = []
    r1 = Ring(url, "x1", ttl=0.5, on_leave=lambda b, a: seen.append((b, a)))
    r2 = Ring(url, "x2", ttl=0.5)
    try:
        r2.beat()
        assert r1.beat() == ["x1", "x2"]
        assert seen == []
        time.sleep(0.7)  # x2 beats no more: its entry expires
        assert r1.beat() == ["x1"]
        assert seen == [(["x1", "x2"], ["x1"])]
        r1.beat()
        assert len(seen) == 1  # told once
    finally:
        r1.leave()
        r2.leave()
