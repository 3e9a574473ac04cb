"""Faults under load: the database restarts, an API worker dies (issue 14).

Each runs a real `uvicorn --workers 2` and a burst of client threads. The Postgres restart
uses a throwaway cluster of the test's own (tests/servers.py): the machine's is shared.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import ADMIN, ADMIN_TOKEN, wipe
from tests.servers import Uvicorn, own_postgres, uvicorn_api

if os.environ.get("VPCD_TEST_DATABASE_URL", "sqlite://").startswith("sqlite"):
    pytest.skip("faults of a multi-process server on Postgres", allow_module_level=True)

CLIENTS = 12
RECOVERY = 5.0  # the bound: serving again this long after the database returns


@dataclass
class Reply:
    at: float
    status: int  # 0: the connection broke (no HTTP answer)
    body: dict[str, Any] = field(default_factory=dict)
    retry_after: str | None = None
    content_type: str = ""


class Burst:
    """Client threads calling `call(client, i)` in a loop until stopped; every reply kept."""

    def __init__(self, base: str, call: Callable[[httpx.Client, int], Reply], n: int) -> None:
        self.stop = threading.Event()
        self.replies: list[Reply] = []
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._loop, args=(base, call, i), daemon=True) for i in range(n)
        ]

    def _loop(self, base: str, call: Callable[[httpx.Client, int], Reply], i: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            n = 0
            while not self.stop.is_set():
                reply = call(client, i * 100000 + n)
                n += 1
                with self._lock:
                    self.replies.append(reply)

    def __enter__(self) -> Burst:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(timeout=90)

    def snapshot(self) -> list[Reply]:
        with self._lock:
            return list(self.replies)

    def wait_for(self, what: Callable[[list[Reply]], bool], timeout: float, why: str) -> None:
        deadline = time.monotonic() + timeout
        while not what(self.snapshot()):
            assert time.monotonic() < deadline, f"{why} within {timeout}s: {self.counts()}"
            time.sleep(0.05)

    def counts(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for r in self.snapshot():
            out[r.status] = out.get(r.status, 0) + 1
        return out


def reply(r: httpx.Response) -> Reply:
    body = r.json() if r.content else {}
    ctype = r.headers.get("content-type", "")
    return Reply(time.monotonic(), r.status_code, body, r.headers.get("retry-after"), ctype)


def setup_subnet(base: str) -> tuple[dict[str, str], str]:
    """A tenant with room for many ports and a /20 to put them in: its headers, the subnet."""
    with httpx.Client(base_url=base, timeout=30) as api:
        r = api.post("/v1/tenants", json={"name": f"f-{uuid.uuid4().hex[:8]}"}, headers=ADMIN)
        tid = r.json()["id"]
        r = api.patch(f"/v1/tenants/{tid}/quotas", json={"ports": 4000}, headers=ADMIN)
        assert r.status_code == 200, r.text
        token = api.post(f"/v1/tenants/{tid}/tokens", headers=ADMIN).json()["token"]
        who = {"Authorization": f"Bearer {token}"}
        vpc = api.post("/v1/vpcs", json={"cidr": "10.0.0.0/16"}, headers=who).json()
        body = {"vpc_id": vpc["id"], "cidr": "10.0.16.0/20"}
        subnet = api.post("/v1/subnets", json=body, headers=who)
        assert subnet.status_code == 201, subnet.text
        return who, subnet.json()["id"]


def port_names(db_url: str) -> dict[str, list[str]]:
    """name -> ids of the ports stored, read straight from the database."""
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT name, id FROM ports")).all()
    names: dict[str, list[str]] = {}
    for name, ident in rows:
        names.setdefault(name, []).append(ident)
    return names


# -- Postgres restart -------------------------------------------------------------------------


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[tuple[Any, Uvicorn]]:
    from migrations.runner import upgrade

    with own_postgres() as pg:
        upgrade(pg.url)
        with uvicorn_api(pg.url, tmp_path, ADMIN_TOKEN) as server:
            yield pg, server


def test_postgres_restart_during_a_burst_of_creates(restartable: tuple[Any, Uvicorn]) -> None:
    """In flight: 503 + Retry-After, never 500. /readyz goes and comes back. Serving again
    within 5 s of the database's return, without a restart. Every 201 stored, nothing else."""
    pg, server = restartable
    who, subnet = setup_subnet(server.base)

    def create(client: httpx.Client, n: int) -> Reply:
        body = {"subnet_id": subnet, "name": f"p{n}"}
        got = reply(client.post("/v1/ports", json=body, headers=who))
        got.body["sent"] = body["name"]
        return got

    ready: list[tuple[float, int]] = []

    def readiness(client: httpx.Client, n: int) -> Reply:
        got = reply(client.get("/readyz"))
        ready.append((got.at, got.status))
        time.sleep(0.05)
        return got

    with Burst(server.base, create, CLIENTS) as burst, Burst(server.base, readiness, 1):
        burst.wait_for(lambda rs: sum(r.status == 201 for r in rs) >= 20, 60, "20 creates")
        down = time.monotonic()  # the outage starts with the stop
        pg.stop()
        burst.wait_for(
            lambda rs: sum(r.status == 503 and r.at > down for r in rs) >= CLIENTS,
            30,
            "every client told 503 while the database is down",
        )
        deadline = time.monotonic() + 15  # a readiness check may be waiting to connect
        while not any(s == 503 and t > down for t, s in ready) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert any(s == 503 and t > down for t, s in ready), ready[-5:]
        pg.start()
        back = time.monotonic()
        burst.wait_for(
            lambda rs: any(r.status == 201 and r.at > back for r in rs),
            30,
            "a create after the database returned",
        )
        first_201 = min(r.at for r in burst.snapshot() if r.status == 201 and r.at > back)
        time.sleep(1.0)  # keep the burst up a little after recovery
    replies = burst.snapshot()

    failed = [(r.status, r.body) for r in replies if r.status not in (201, 503)]
    assert not failed, f"{failed[:5]}\n{server.log_tail()}"
    unavailable = [r for r in replies if r.status == 503]
    assert unavailable, "nothing met the restart"
    for r in unavailable:
        assert r.content_type.startswith("application/problem+json"), r
        assert r.retry_after is not None and int(r.retry_after) >= 1, r
        assert r.body["status"] == 503 and r.body["type"].endswith("/unavailable"), r.body
    assert first_201 - back < RECOVERY, f"creates resumed {first_201 - back:.1f}s after return"
    ready_again = [t for t, s in ready if s == 200 and t > back]
    assert ready_again and ready_again[0] - back < RECOVERY, ready[-10:]
    assert sum(r.status == 201 and r.at > back for r in replies) >= CLIENTS  # all recovered

    made = {r.body["sent"]: r.body["id"] for r in replies if r.status == 201}
    stored = port_names(pg.url)
    assert {n: ids[0] for n, ids in stored.items()} == made  # every 201, and nothing else
    assert all(len(ids) == 1 for ids in stored.values())


# -- an API worker killed ---------------------------------------------------------------------

STALE_CLAIM = 3  # seconds before a claim of a dead worker may be taken over


@pytest.fixture
def two_workers(db_url: str, tmp_path: Path) -> Iterator[Uvicorn]:
    wipe(db_url)
    env = {"IDEMPOTENCY_INFLIGHT_SECONDS": str(STALE_CLAIM)}
    try:
        with uvicorn_api(db_url, tmp_path, ADMIN_TOKEN, **env) as server:
            yield server
    finally:
        wipe(db_url)


def test_a_killed_worker_loses_requests_that_retries_make_exactly_once(
    two_workers: Uvicorn, db_url: str
) -> None:
    """SIGKILL one of two workers under load: the other keeps serving, and each lost request
    retried with its Idempotency-Key takes effect exactly once."""
    server = two_workers
    who, subnet = setup_subnet(server.base)
    lost: list[str] = []

    def create_until_answered(client: httpx.Client, n: int) -> Reply:
        """A careful client: the same key and body again until a definite answer."""
        key = name = f"k{n}-{uuid.uuid4().hex[:6]}"
        headers = {**who, "Idempotency-Key": key}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                r = client.post(
                    "/v1/ports", json={"subnet_id": subnet, "name": name}, headers=headers
                )
            except httpx.TransportError:
                lost.append(name)
                continue
            if r.status_code == 409 and "still running" in r.text:
                time.sleep(0.2)  # its first try died with its worker: the claim goes stale
                continue
            got = reply(r)
            got.body["sent"] = name
            return got
        raise AssertionError(f"{name}: no answer in 60 s")

    workers = server.worker_pids()
    assert len(workers) == 2, workers
    with Burst(server.base, create_until_answered, CLIENTS) as burst:
        burst.wait_for(lambda rs: len(rs) >= 24, 60, "24 creates")
        os.kill(workers[0], signal.SIGKILL)
        killed = time.monotonic()
        # The survivor serves at once, before any replacement worker is up.
        with httpx.Client(base_url=server.base, timeout=10) as fresh:
            for _ in range(10):
                assert fresh.get("/v1/vpcs", headers=who).status_code == 200
        burst.wait_for(lambda rs: sum(r.at > killed for r in rs) >= 24, 60, "24 more")
    replies = burst.snapshot()

    assert lost, "the kill cut no request: nothing was tested"
    assert {r.status for r in replies} == {201}, [r.body for r in replies if r.status != 201]
    answered = {r.body["sent"]: r.body["id"] for r in replies}
    stored = port_names(db_url)
    doubled = {n: ids for n, ids in stored.items() if len(ids) > 1}
    assert not doubled, f"ran twice: {doubled}"
    assert {n: ids[0] for n, ids in stored.items()} == answered
    assert set(lost) <= set(answered)
