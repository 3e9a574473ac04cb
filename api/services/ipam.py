"""IP, MAC and VNI allocation that stays correct across any number of API processes.

Correctness comes from the database's unique constraints; each attempt runs in a
savepoint and a collision simply retries with another candidate. No process lock.
"""

from __future__ import annotations

import ipaddress
import random
import secrets
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.errors import Exhausted

T = TypeVar("T")
R = TypeVar("R")

VNI_MIN, VNI_MAX = 1, (1 << 24) - 1
CANDIDATE_WINDOW = 32
MAX_ATTEMPTS = 500


def free_addresses(pools: Iterable[tuple[int, int]], used: set[int], limit: int) -> list[int]:
    """Up to `limit` free addresses from the pools, lowest first."""
    found: list[int] = []
    for start, end in pools:
        addr = start
        while addr <= end and len(found) < limit:
            if addr not in used:
                found.append(addr)
            addr += 1
        if len(found) >= limit:
            break
    return found


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


def is_unique_violation(exc: IntegrityError) -> bool:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate is not None:
        return bool(sqlstate == "23505")
    return "UNIQUE constraint failed" in str(exc.orig)


def address_candidates(
    pools: list[tuple[int, int]], used_now: Callable[[], set[int]], tried: set[int]
) -> Iterator[int]:
    """Random picks from the lowest free addresses, re-reading usage after each miss.

    Picking at random within a window keeps concurrent allocators from all racing for
    the same lowest address, while still filling subnets from the bottom.
    """
    while True:
        used = used_now() | tried
        free = free_addresses(pools, used, CANDIDATE_WINDOW)
        if not free:
            return
        pick = random.choice(free)
        tried.add(pick)
        yield pick


def vni_candidates() -> Iterator[int]:
    while True:
        yield secrets.randbelow(VNI_MAX - VNI_MIN + 1) + VNI_MIN
