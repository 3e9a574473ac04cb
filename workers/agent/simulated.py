"""Simulated agents for the controller's scale benchmark (bench/fanout.py, issue 13).

Many hosts in one process: a real Celery consumer on every host's own queue, and per
host the real `AgentService` (the same protocol code: deltas patched on the last
document, the fallback to a whole one, partial reports, heartbeats advertising protocol
2) around a `SimAgent` that applies nothing but answers with the report the real agent's
`build_report` gives for a clean sync. Per host it counts the documents received and
notes when it last reported, in a Redis hash, so a benchmark can count messages per
host and tell when the last report left.

    python -m workers.agent.simulated --hosts h0000,h0001,... --control Q
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery

from workers.agent.desired import Desired
from workers.agent.documents import Documents
from workers.agent.report import build_report
from workers.agent.service import AgentService
from workers.bus import APPLY, NAMESPACE, celery_app, host_queue
from workers.protocol import HostState, Report

RESTART = "vpcd.sim.restart"
APPLIES = f"{NAMESPACE}.sim.applies"  # Redis hash: host -> documents received
REPORTED = f"{NAMESPACE}.sim.reported"  # Redis hash: host -> time of its last report
# Redis hash: "host origin" -> documents received from that sender (Celery's origin
# header: the sending process, "gen<pid>@<hostname>"), to tell which controller sent them.
ORIGINS = f"{NAMESPACE}.sim.origins"


@dataclass
class _Stats:
    """What AgentService reads after a sync (the fields of agent.SyncStats it uses)."""

    skipped: bool = False
    full: bool = False
    ops: int = 0
    errors: int = 0
    applied: dict[str, int] | None = None
    timings: dict[str, float] | None = None
    op_seconds: dict[str, float] | None = None  # applies nothing: no op took any time

    def __post_init__(self) -> None:
        self.applied = self.applied or {}
        self.timings = self.timings or {"total": 0.0}
        self.op_seconds = self.op_seconds or {}


class SimAgent:
    """The real agent's decisions without a kernel: a document not newer than the one
    applied is skipped unless a full sync is asked for; otherwise every resource of it
    is reported realised."""

    def __init__(self) -> None:
        self.applied: int | None = None
        self.last: Report | None = None
        self.syncs = 0
        self.stats = _Stats()

    def sync(self, state: HostState, *, full: bool = False) -> Report:
        if (
            self.applied is not None
            and self.last is not None
            and (state.revision < self.applied or (state.revision == self.applied and not full))
        ):
            self.stats = _Stats(skipped=True)
            return self.last
        started = time.perf_counter()
        report = build_report(Desired.build(state), {}, [])
        self.applied, self.last = state.revision, report
        self.syncs += 1
        self.stats = _Stats(full=full, timings={"total": time.perf_counter() - started})
        return report

    def measure_pace(self) -> float:
        return 3600.0

    def remeasure(self) -> Report | None:
        return None

    def close(self) -> None:
        return None


class CountingService(AgentService):
    """AgentService that notes each document received and each report sent."""

    counter: redis.Redis | None = None

    def apply(self, doc: dict[str, Any], full: bool) -> None:
        if self.counter is not None:
            self.counter.hincrby(APPLIES, self.host, 1)
        super().apply(doc, full)

    def report_sent(self) -> None:
        if self.counter is not None:
            self.counter.hset(REPORTED, self.host, repr(time.time()))


class Fleet:
    """The simulated hosts of one process, keyed by name."""

    def __init__(self, app: Celery, hosts: list[str], redis_url: str, heartbeat: float) -> None:
        self.app = app
        self.counter = redis.Redis.from_url(redis_url)
        self.heartbeat_interval = heartbeat
        self.services = {h: self._service(h) for h in hosts}

    def _service(self, host: str) -> CountingService:
        service = CountingService(
            host=host,
            vtep_ip=vtep_of(host),
            roles=["compute"],
            agent=SimAgent(),  # type: ignore[arg-type]
            app=self.app,
            documents=Documents(),
        )
        service.counter = self.counter
        return service

    def apply(self, doc: dict[str, Any], full: bool, origin: str | None = None) -> None:
        service = self.services.get(str(doc.get("host")))
        if service is None:
            return
        self.counter.hincrby(ORIGINS, f"{service.host} {origin}", 1)
        agent: SimAgent = service.agent  # type: ignore[assignment]
        before = agent.syncs
        service.apply(doc, full)
        if agent.syncs > before:  # applied and answered (not skipped, no fallback)
            service.report_sent()

    def restart(self, hosts: list[str]) -> None:
        """As a restarted agent: nothing remembered, a first heartbeat (a full resync)."""
        for host in hosts:
            if host in self.services:
                self.services[host] = self._service(host)
        for host in hosts:
            if host in self.services:
                self.services[host].heartbeat(first=True)

    def beat(self) -> None:
        while True:
            time.sleep(self.heartbeat_interval)
            for service in list(self.services.values()):
                try:
                    service.heartbeat()
                except Exception:  # the next round retries
                    logging.getLogger("vpcd.sim").exception("heartbeat failed")


def vtep_of(host: str) -> str:
    """A stable underlay address per simulated host name (198.18.0.0/15, benchmarking)."""
    n = int.from_bytes(host.encode()[-4:].rjust(4, b"\0"), "big") % 65000 + 1
    return f"198.18.{n // 254}.{n % 254 + 1}"


def run(hosts: list[str], control: str, redis_url: str, heartbeat: float) -> None:
    app = celery_app()
    fleet = Fleet(app, hosts, redis_url, heartbeat)

    @app.task(name=APPLY, bind=True)
    def apply(task: Any, doc: dict[str, Any], full: bool = False) -> None:
        fleet.apply(doc, full, task.request.origin)

    @app.task(name=RESTART)
    def restart(names: list[str]) -> None:
        fleet.restart(names)

    for service in fleet.services.values():
        service.heartbeat(first=True)
    threading.Thread(target=fleet.beat, name="vpcd-sim-heartbeat", daemon=True).start()
    queues = ",".join([control, *(host_queue(h) for h in hosts)])
    app.worker_main(
        [
            "worker",
            "-Q",
            queues,
            "-n",
            f"sim-{control}@%h",
            "--pool",
            "solo",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "WARNING",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", required=True, help="comma-separated host names")
    parser.add_argument("--control", required=True, help="this process's own queue")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--heartbeat", type=float, default=10.0)
    args = parser.parse_args()
    run(args.hosts.split(","), args.control, args.redis_url, args.heartbeat)


if __name__ == "__main__":
    main()
