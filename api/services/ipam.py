"""IP, MAC and VNI allocation that stays correct across any number of API processes.

Correctness comes from the database's unique constraints; each attempt runs in a
savepoint and a collision simply retries with another candidate. No process lock.
"""

from __future__ import annotations

import functools
import ipaddress
import random
import secrets
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, lazyload

from api.errors import Exhausted

T = TypeVar("T")
R = TypeVar("R")

VNI_MIN, VNI_MAX = 1, (1 << 24) - 1
MAX_ATTEMPTS = 500


def pool_spans(pools: list[dict[str, str]]) -> list[tuple[int, int]]:
    return sorted(
        (int(ipaddress.IPv4Address(p["start"])), int(ipaddress.IPv4Address(p["end"])))
        for p in pools
    )


def random_mac(rng: random.Random | None = None) -> str:
    """A locally administered unicast MAC in Neutron's fa:16:3e space."""
    tail = rng.getrandbits(24) if rng else secrets.randbits(24)
    return f"fa:16:3e:{(tail >> 16) & 0xFF:02x}:{(tail >> 8) & 0xFF:02x}:{tail & 0xFF:02x}"


def insert_unique(session: Session, candidates: Iterator[T], make: Callable[[T], R]) -> R:
    """Insert `make(c)` for successive candidates until one commits to the savepoint, and
    return that row.

    StopIteration from `candidates` means nothing is left: the caller's Exhausted.
    """
    for _ in range(MAX_ATTEMPTS):
        value = next(candidates)
        row = make(value)
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
            return row
        except IntegrityError as exc:
            if not is_unique_violation(exc):  # e.g. a parent deleted meanwhile: not ours to retry
                raise
            continue
    raise Exhausted("allocation kept colliding with concurrent requests; retry")


def insert_skipping_taken(
    session: Session, model: type[R], candidates: Iterator[T], values: Callable[[T], dict[str, Any]]
) -> R:
    """Insert `model` rows of `values(c)` for successive candidates until one is not taken
    (its unique constraints), and return it as the session's object.

    Like `insert_unique`, but one statement per attempt (INSERT .. ON CONFLICT DO NOTHING
    RETURNING): no savepoint to set and release, no failed statement to recover from.
    Session events and validators do not run: `values` gives every derived column.
    StopIteration from `candidates` means nothing is left: the caller's Exhausted.
    """
    target: Any = model  # (a mapped class: hashable, whatever R says)
    stmt = _skipping_conflicts(target, session.get_bind().dialect.name)
    for _ in range(MAX_ATTEMPTS):
        row = session.scalars(stmt, [values(next(candidates))]).first()
        if row is not None:
            return row
    raise Exhausted("allocation kept colliding with concurrent requests; retry")


@functools.cache
def _skipping_conflicts(model: Any, dialect: str) -> Any:
    """Built once per model and dialect (the two the service runs on both have it). The
    new row's relationships are not loaded: it has no children yet."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(model).on_conflict_do_nothing().returning(model).options(lazyload("*"))


def is_unique_violation(exc: IntegrityError) -> bool:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate is not None:
        return bool(sqlstate == "23505")
    return "UNIQUE constraint failed" in str(exc.orig)


FirstFree = Callable[[int, int], int | None]


def address_candidates(
    pools: list[tuple[int, int]], first_free: FirstFree, tried: set[int], rng: random.Random
) -> Iterator[int]:
    """Free addresses, each the first free one at or after a random point of the pools.

    `first_free(start, end)` answers from the database with one index range scan, so an
    allocation costs O(log n) whatever the subnet holds. Starting at a random point keeps
    concurrent allocators apart (starting at the lowest, they would all race for the same
    few); the scan wraps around the pools, so a free address is found while one is left.
    A candidate that lost a race (in `tried`) is never offered again.
    """
    size = sum(end - start + 1 for start, end in pools)
    while True:
        point = _point(pools, rng.randrange(size)) if size else None
        if point is None:
            return
        pick = None
        for start, end in _wrapped(pools, point):
            pick = first_free(start, end)
            while pick is not None and pick in tried and pick < end:
                pick = first_free(pick + 1, end)
            if pick is not None and pick not in tried:
                break
            pick = None
        if pick is None:
            return
        tried.add(pick)
        yield pick


def scan_used(used_now: Callable[[], set[int]]) -> FirstFree:
    """`first_free` over a set of used addresses read per call: for small address spaces
    (external networks) whose rows carry no integer column to scan."""

    def first_free(start: int, end: int) -> int | None:
        used = used_now()
        return next((a for a in range(start, end + 1) if a not in used), None)

    return first_free


def _point(pools: list[tuple[int, int]], offset: int) -> int | None:
    for start, end in pools:
        if offset <= end - start:
            return start + offset
        offset -= end - start + 1
    return None


def _wrapped(pools: list[tuple[int, int]], point: int) -> list[tuple[int, int]]:
    """The pools as spans from `point` to the end, then from the first pool up to before it."""
    after = [(max(s, point), e) for s, e in pools if e >= point]
    before = [(s, min(e, point - 1)) for s, e in pools if s < point]
    return after + before


def vni_candidates() -> Iterator[int]:
    while True:
        yield secrets.randbelow(VNI_MAX - VNI_MIN + 1) + VNI_MIN
