"""The controller's Celery tasks: compile-and-push, reports, heartbeats, and the sweep.

Every task is idempotent and level-triggered: `sync_host` always sends the host's whole
current document; the agent ignores one that is not newer than what it applied.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.orm import Session

from models import hoststate as q
from models.db import DbSettings, engine_for, session_factory
from workers.bus import (
    APPLY,
    CONTROL_QUEUE,
    HEARTBEAT,
    REPORT,
    SYNC_HOST,
    celery_app,
    host_queue,
)
from workers.controller.compile import compile_host
from workers.protocol import Report

log = logging.getLogger("vpcd.controller")
app = celery_app()


@contextmanager
def transaction() -> Iterator[Session]:
    maker = session_factory(engine_for(DbSettings().database_url))
    with maker.begin() as session:
        yield session


def push(host: str, *, full: bool) -> int | None:
    """Compile the host's document and send it to the host's own queue."""
    with transaction() as session:
        q.clear_dirty(session, host)
    with transaction() as session:
        state = compile_host(session, host)
    if state is None:
        return None
    try:
        app.send_task(
            APPLY,
            args=[state.model_dump(mode="json")],
            kwargs={"full": full},
            queue=host_queue(host),
        )
    except Exception:  # the bus is down: keep the need for a sync for the sweeper
        with transaction() as session:
            q.mark_dirty(session, {host})
        raise
    return state.revision


@app.task(name=SYNC_HOST)
def sync_host(host: str, full: bool = False) -> int | None:
    return push(host, full=full)


@app.task(name=REPORT)
def report(doc: dict[str, Any]) -> None:
    rep = Report.model_validate(doc)
    results = [(r.kind, r.id, r.revision, r.ok, r.detail) for r in rep.results]
    with transaction() as session:
        changed = q.record_results(
            session, rep.host, rep.revision, results, full=rep.full, duration_ms=rep.duration_ms
        )
        port_ids = {r.id for r in rep.results if r.kind == "port" and r.id in changed}
        subnet_ids = {r.id for r in rep.results if r.kind == "subnet" and r.id in changed}
        q.refresh_port_status(session, port_ids)
        q.refresh_subnet_status(session, subnet_ids | q.subnets_of_ports(session, port_ids))
    if not rep.ok:  # any failure: a full resync, after a short pause
        log.warning("host %s failed to apply revision %s: %s", rep.host, rep.revision, rep.detail)
        app.send_task(
            SYNC_HOST, args=[rep.host], kwargs={"full": True}, queue=CONTROL_QUEUE, countdown=2
        )


@app.task(name=HEARTBEAT)
def heartbeat(host: str, vtep_ip: str, roles: list[str], first: bool = False) -> None:
    with transaction() as session:
        changed = q.record_heartbeat(session, host, vtep_ip, roles)
        peers: set[str] = set()
        if changed or first:  # hosts sharing a subnet with it must (re)learn its VTEP
            peers = q.hosts_of_subnets(session, q.subnets_on_host(session, host)) - {host}
    if changed or first:
        push(host, full=True)
    for peer in sorted(peers):
        push(peer, full=False)


def sweep() -> None:
    """Push hosts whose change notice was lost; settle subnets nobody needs to realise."""
    with transaction() as session:
        dirty = q.dirty_hosts(session)
        q.refresh_subnet_status(session, q.pending_subnets(session))
    for host in dirty:
        push(host, full=False)


def start_sweeper(interval: float) -> threading.Thread:
    def loop() -> None:
        while True:
            time.sleep(interval)
            try:
                sweep()
            except Exception:  # keep sweeping: the next round retries
                log.exception("sweep failed")

    thread = threading.Thread(target=loop, name="vpcd-sweeper", daemon=True)
    thread.start()
    return thread


def run(concurrency: int = 4) -> None:
    """Run the controller: a worker on the control queue plus the sweeper thread."""
    start_sweeper(float(os.environ.get("VPCD_SWEEP_INTERVAL", "2")))
    app.worker_main(
        [
            "worker",
            "-Q",
            CONTROL_QUEUE,
            "-n",
            "controller@%h",
            "--pool",
            "threads",
            "-c",
            str(concurrency),
            "--without-gossip",
            "--without-mingle",
            "-l",
            "INFO",
        ]
    )
