"""Controllers sharing the fleet: hosts partitioned over live controllers by consistent
hashing (issue 13).

Each controller started with an id registers it in a Redis sorted set (score: the time of
its last beat) and beats every `ttl / 3` seconds; a member not heard from for `ttl`
seconds is dead and drops out of everyone's ring. A host belongs to the first of the
ring's points (`VNODES` per controller, blake2b of "id#n") at or after its own hash, so
a controller joining or leaving moves only about 1/N of the hosts, and every controller
that sees the same members agrees on every owner without talking.

Only the owner compiles and sends a host's documents, so a host's delta base
(`sent.SENT`, per process) is always the one that sent it the last document, and no host
gets the same change twice. Reports and heartbeats are handled by whichever controller
takes them from the shared queue (they are idempotent writes). A poke for another
controller's host is forwarded once to that controller's own queue; one forwarded
already is pushed where it lands, so views that briefly disagree cannot bounce it. A
poke forwarded to a controller that just died is lost, not the change: the host stays
dirty and its new owner's sweeper pushes it once the dead member's beat expires. A
member killed mid-compile had cleared its hosts' flags: their new owners flag them again
when they see it gone (`Ring.on_leave`).
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable

import redis

from workers.bus import CONTROL_QUEUE, NAMESPACE

MEMBERS = f"{NAMESPACE}.controllers"  # Redis sorted set: controller id -> last beat
VNODES = 64  # points per controller: spreads hosts within a few percent of even
TTL = 10.0  # seconds without a beat after which a controller is dead

log = logging.getLogger("vpcd.controller")


def point(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def ring_points(members: list[str]) -> list[tuple[int, str]]:
    return sorted((point(f"{m}#{n}"), m) for m in members for n in range(VNODES))


def lookup(points: list[tuple[int, str]], host: str) -> str:
    """The member of the first point at or after the host's (wrapping around)."""
    i = bisect.bisect_left(points, (point(host), ""))
    return points[i % len(points)][1]


def owner_of(host: str, members: list[str]) -> str | None:
    """The member owning `host` on the ring of `members` (None when there is none)."""
    return lookup(ring_points(members), host) if members else None


def queue_of(controller: str) -> str:
    """A controller's own queue: pokes forwarded to it as the owner."""
    return f"{CONTROL_QUEUE}.{controller}"


def taken_over(hosts: list[str], before: list[str], after: list[str], me: str) -> set[str]:
    """The hosts `me` owns after a change of members that another, now gone, owned
    before: what a member that left was responsible for and `me` now is."""
    if not before:
        return set()
    gone = set(before) - set(after)
    if not gone:
        return set()
    old, new = ring_points(before), ring_points(after)
    return {h for h in hosts if lookup(old, h) in gone and lookup(new, h) == me}


class Ring:
    """This controller's view of the ring, refreshed by its beat.

    `on_leave(before, after)` runs (in the beat's thread) when members this controller
    had seen are gone: a member killed mid-compile had cleared the dirty flags of the
    hosts it compiled (committed before reading, DESIGN §2) and sent nothing, so their
    new owner must compile them whatever their flags say."""

    def __init__(
        self,
        redis_url: str,
        me: str,
        ttl: float = TTL,
        on_leave: Callable[[list[str], list[str]], object] | None = None,
    ) -> None:
        self.me = me
        self.ttl = ttl
        self.on_leave = on_leave
        self._redis = redis.Redis.from_url(redis_url)
        self._lock = threading.Lock()
        self._members: list[str] = [me]
        self._points: list[tuple[int, str]] = []
        self._set_members([me])

    def _set_members(self, members: list[str]) -> None:
        points = ring_points(members)
        with self._lock:
            self._members, self._points = members, points

    def beat(self) -> list[str]:
        """Say this controller is alive, forget the dead, and read who is alive."""
        now = time.time()
        pipe = self._redis.pipeline()
        pipe.zadd(MEMBERS, {self.me: now})
        pipe.zremrangebyscore(MEMBERS, "-inf", now - self.ttl)
        pipe.zrange(MEMBERS, 0, -1)
        members = sorted({m.decode() for m in pipe.execute()[-1]} | {self.me})
        before = self.members
        self._set_members(members)
        if self.on_leave is not None and set(before) - set(members):
            try:
                self.on_leave(before, members)
            except Exception:  # the sweeper still pushes what is flagged; log and go on
                log.exception("taking over the hosts of %s failed", set(before) - set(members))
        return members

    def leave(self) -> None:
        self._redis.zrem(MEMBERS, self.me)

    @property
    def members(self) -> list[str]:
        with self._lock:
            return list(self._members)

    def owner(self, host: str) -> str:
        with self._lock:
            points = self._points
        return lookup(points, host)

    def mine(self, host: str) -> bool:
        return self.owner(host) == self.me

    def start(self) -> threading.Thread:
        """Beat now and then every third of the TTL, in a thread of this process."""
        self.beat()

        def loop() -> None:
            while True:
                time.sleep(self.ttl / 3)
                # A failed beat: the next one retries (peers may drop us meanwhile).
                with contextlib.suppress(redis.RedisError):
                    self.beat()

        thread = threading.Thread(target=loop, name="vpcd-ring", daemon=True)
        thread.start()
        return thread
