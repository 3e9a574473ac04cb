"""Faults of the bus and the controller (issue 14), on a sandbox with a Redis of its own.

The machine's Redis is shared, so this module's sandbox talks to a redis-server the test
started (tests/servers.py) and kills: messages in it are lost with it, as in a crash.
Postgres is a scratch database on the machine's server (CI's); nothing here restarts it.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from cli import sandbox as sbx
from models.db import scratch_database
from tests.e2e.conftest import Box
from tests.servers import OwnRedis, own_redis

pytestmark = pytest.mark.e2e
REALISED_WITHIN = 10.0  # the bound after Redis returns
RESYNC = 300.0  # the agents' own full-resync timer stays out of the way: the sweeper must do it


@pytest.fixture(scope="module")
def faulty() -> Iterator[tuple[Box, OwnRedis]]:
    base = os.environ.get("VPCD_TEST_DATABASE_URL", "sqlite://")
    if base.startswith("sqlite"):
        pytest.skip("the controller's revisions are checked on Postgres (CI's database)")
    name = f"flt{os.getpid() % 100000}"
    with own_redis() as redis, scratch_database(base, "vpcd_faults") as db_url:
        overrides = {"DATABASE_URL": db_url, "REDIS_URL": redis.url}
        try:
            sb = sbx.up(name, 2, network_hosts=1, resync=RESYNC, overrides=overrides)
            box = Box(sb)
            try:
                yield box, redis
            finally:
                box.http.close()
        finally:
            sbx.down(name)
            left = [n for n in sbx.existing_namespaces() if n.startswith(f"{name}-")]
            assert not left, f"sandbox left namespaces behind: {left}"


class Revisions:
    """Samples every host's desired and realised revision until stopped; checks that
    neither ever goes down."""

    def __init__(self, db_url: str) -> None:
        from models.db import make_engine, session_factory

        self.maker = session_factory(make_engine(db_url, nullpool=True))
        self.samples: list[list[tuple[str, int, int, bool]]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def now(self) -> list[tuple[str, int, int, bool]]:
        from models.hoststate import revisions

        with self.maker() as session:
            return revisions(session)

    def _loop(self) -> None:
        while not self.stop.is_set():
            self.samples.append(self.now())
            time.sleep(0.05)

    def __enter__(self) -> Revisions:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)

    def assert_monotonic(self) -> None:
        seen: dict[str, tuple[int, int]] = {}
        for sample in self.samples:
            for host, desired, realised, _ in sample:
                before = seen.get(host, (0, 0))
                assert desired >= before[0], f"{host} desired revision went back: {before}"
                assert realised >= before[1], f"{host} realised revision went back: {before}"
                seen[host] = (desired, realised)

    def settled(self) -> bool:
        return all(d == r and not dirty for _, d, r, dirty in self.now())


def wait_all_active(box: Box, who: dict[str, str], ports: list[dict[str, Any]], by: float) -> None:
    for port in ports:
        box.wait_status(who, port, timeout=max(by - time.monotonic(), 0.1))


def test_redis_restart_during_a_burst_of_changes(faulty: tuple[Box, OwnRedis]) -> None:
    """Changes committed while Redis is down (their pokes fail) are all realised within
    10 s of its return: the controller and agents reconnect, the sweeper finds dirty hosts."""
    box, redis = faulty
    who = box.tenant()
    (subnet,) = box.network(who)
    first = box.port(who, subnet, "h1", "rb0")
    box.wait_status(who, first)

    redis.stop()
    try:
        with ThreadPoolExecutor(4) as pool:  # a burst: 4 clients, both hosts
            made = list(
                pool.map(
                    lambda i: box.port(who, subnet, ("h1", "h2")[i % 2], f"rb{i + 1}"), range(6)
                )
            )
        gone = made.pop()
        r = box.http.delete(f"/v1/ports/{gone['id']}", headers=who)
        assert r.status_code == 204, r.text
        for port in made:  # committed, not realised: nobody could tell the hosts
            assert box.http.get(f"/v1/ports/{port['id']}", headers=who).json()["status"] != "active"
    finally:
        redis.start()
    back = time.monotonic()
    wait_all_active(box, who, made, back + REALISED_WITHIN)
    print(f"all realised {time.monotonic() - back:.1f}s after Redis returned")
    last = made[-1]
    box.wait_ping(box.workload("h1", "rb0"), last["ip_address"], timeout=REALISED_WITHIN)
    assert box.workload("h2", gone["netns"]) not in sbx.existing_namespaces()  # never made


def _compiling(log: str) -> bool:
    """A batch compile started and has not finished: the controller is compiling."""
    started = len(re.findall(r"compiling \d+ hosts", log))
    finished = len(re.findall(r"compiled \d+ hosts", log))
    return started > finished


@contextmanager
def _compiles_held(db_url: str, host: str) -> Iterator[None]:
    """Holds the advisory lock every compile of `host` takes before it reads a row, so a
    compile that includes the host stays in flight: its dirty flag already cleared, its
    transaction open, nothing sent. API requests never take that lock."""
    from models.db import make_engine
    from models.hoststate import compile_lock_key

    engine = make_engine(db_url, nullpool=True)
    try:
        with engine.connect() as conn:  # closing the connection releases the lock
            conn.execute(sa.select(sa.func.pg_advisory_lock(compile_lock_key(host))))
            yield
    finally:
        engine.dispose()


def test_controller_killed_mid_compile_converges(faulty: tuple[Box, OwnRedis]) -> None:
    box, _ = faulty
    who = box.tenant()
    (subnet,) = box.network(who, subnets=("10.0.2.0/24",))
    log_path = box.sb.dir / "controller.log"
    label = "controller"
    with Revisions(box.sb.database_url) as revisions:
        offset = log_path.stat().st_size
        with _compiles_held(box.sb.database_url, box.host("h1")):
            with ThreadPoolExecutor(4) as pool:
                made = list(
                    pool.map(
                        lambda i: box.port(who, subnet, ("h1", "h2")[i % 2], f"ck{i}"), range(8)
                    )
                )
            deadline = time.monotonic() + 30
            while not _compiling(log_path.read_text(errors="replace")[offset:]):
                assert time.monotonic() < deadline, (
                    "the controller never started a compile\n"
                    + (log_path.read_text(errors="replace")[offset:][-5000:])
                )
                time.sleep(0.05)
            sbx.stop(box.sb.pids[label])  # SIGKILL, mid-compile of h1
        killed = box.sb.pids[label]
        assert not sbx.alive(killed)
        sbx.respawn(box.name, label)
        box.sb = sbx.load(box.name)
        assert box.sb.pids[label] != killed
        try:
            wait_all_active(box, who, made, time.monotonic() + 30)
        except AssertionError as e:  # with what the controller and the hosts were doing
            logs = [box.sb.dir / f"{n}.log" for n in ("controller", "agent-h1", "agent-h2")]
            tails = "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-5000:]}" for p in logs)
            raise AssertionError(f"{e}\nrevisions {revisions.now()}\n{tails}") from None
        deadline = time.monotonic() + 30
        while not revisions.settled():
            assert time.monotonic() < deadline, revisions.now()
            time.sleep(0.2)
    revisions.assert_monotonic()
    box.wait_ping(box.workload("h1", "ck0"), made[1]["ip_address"])
