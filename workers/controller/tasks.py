"""The controller's Celery tasks: compile-and-push, reports, heartbeats, and the sweep.

Every task is idempotent and level-triggered: `sync_host` always sends the host's whole
current document; the agent ignores one that is not newer than what it applied.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from models import carriers, lb_placement, placement
from models import hoststate as q
from models.base import utcnow
from models.db import DbSettings, engine_for, session_factory
from models.loadbalancer import record_operating
from workers import docdelta, timeline
from workers.bus import (
    APPLY,
    CONTROL_QUEUE,
    HEARTBEAT,
    REPORT,
    SYNC_HOST,
    SYNC_HOSTS,
    celery_app,
    host_queue,
    queue_length,
)
from workers.controller import metrics
from workers.controller.batch import Batcher, RepushBackoff, Want
from workers.controller.beats import RecentBeats
from workers.controller.compile import compile_hosts
from workers.controller.refresher import Refresher
from workers.controller.ring import Ring, queue_of, taken_over
from workers.controller.sent import SENT
from workers.protocol import SECTIONS_L2, Report

log = logging.getLogger("vpcd.controller")
# A host that has not realised a document this long after it was compiled lost it: send again.
REPUSH_AFTER = timedelta(seconds=float(os.environ.get("VPCD_REPUSH_AFTER", "5")))
app = celery_app()
# Set when this controller shares the fleet with others (run(controller_id=...)): it then
# compiles and sends only for the hosts the ring gives it.
RING: Ring | None = None
# Set by run(): heartbeats that change nothing are answered from memory (beats.py).
BEATS: RecentBeats | None = None
# Set by run(): pokes join batches compiled together by one thread (batch.py).
BATCHER: Batcher | None = None
# Set by run(): reports' status refreshes joined and done by one thread (refresher.py).
REFRESHER: Refresher | None = None
# Set by run(): how many messages (reports among them) wait on the control queue.
BACKLOG: Callable[[], int] | None = None
# Documents re-sent for seeming lost, per host: the second copy 10 s after the first (at
# a 5 s lag), each later one twice as long (batch.py). A report can take that long when
# the control queue is backed up, and every copy costs a report.
RESENDS = RepushBackoff(2 * REPUSH_AFTER.total_seconds())


@contextmanager
def transaction() -> Iterator[Session]:
    maker = session_factory(engine_for(DbSettings().database_url))
    with maker.begin() as session:
        yield session


def push(host: str, *, full: bool, resend: bool = False) -> int | None:
    """Compile the host's document and send it (see `push_many`)."""
    return push_many({host: Want(full, resend)}).get(host)


def push_many(wants: Mapping[str, Want]) -> dict[str, int]:
    """Compile these hosts' documents together (each kind of row read once for all of
    them) and send each to its host's own queue; returns the revisions compiled.

    A host is compiled only if a change waited for it (its dirty flag was set), or a
    whole document is asked for (`full`: a resync) or a document seems lost (`resend`):
    a plain poke finding the flag clear was overtaken by a push that cleared it and
    compiles after that, so compiling again could only find the same document. A host
    is sent nothing when it realised the document already, or (unless asked) when this
    process sent it this very document last."""
    with transaction() as session:
        waited = q.clear_dirty(session, list(wants))
    hosts = sorted(h for h, w in wants.items() if h in waited or w.full or w.resend)
    if len(hosts) < len(wants):
        metrics.COALESCED.inc(len(wants) - len(hosts))
    if not hosts:
        return {}
    log.info("compiling %d hosts", len(hosts))
    timeline.mark("compile_start", hosts)
    with transaction() as session, metrics.COMPILE.time():
        compiled = compile_hosts(session, hosts)
    log.info("compiled %d hosts", len(compiled))
    for host, doc in compiled.items():
        timeline.mark("compiled", host, doc.state.revision)
    if compiled:
        metrics.COMPILED.inc(len(compiled))
    # What a host cannot carry is `error` at once, in a transaction of its own: the
    # compile holds the hosts' state rows, and an API request holds resource rows while
    # it marks a host dirty, so updating resources under the state rows would deadlock.
    unsent: dict[str, set[str]] = {}
    for c in compiled.values():
        for kind, ids in c.unsent.items():
            unsent.setdefault(kind, set()).update(ids)
    with transaction() as session:
        if unsent:
            carriers.refresh_all(session, unsent)
        rows = {r.name: r for r in q.hosts_by_name(session, sorted(compiled))}
    current = [  # nothing new for these hosts to realise: settled now, in one transaction
        h
        for h, doc in compiled.items()
        if (r := rows.get(h)) is not None
        and r.realised_revision is not None
        and r.realised_revision >= doc.state.revision
    ]
    if current:
        with transaction() as session:
            for host, settled in q.settle_many(session, current).items():
                metrics.REALISED.labels(host).observe(settled)
    out: dict[str, int] = {}
    for host, doc in compiled.items():
        row = rows.get(host)
        realised = row.realised_revision if row is not None else None
        revision = doc.state.revision
        out[host] = revision
        want = wants[host]
        if not want.full and realised == revision:
            continue  # realised already: a message would be a no-op
        deltas = row is not None and row.protocol_version >= docdelta.PROTOCOL
        again = want.full or want.resend or host in waited
        message = SENT.message(host, doc.wire(), deltas=deltas and not want.full, again=again)
        if message is None:
            metrics.DUPLICATES.inc()
            continue
        timeline.mark("sent", host, revision)  # before sending: the agent may answer first
        try:
            app.send_task(APPLY, args=[message], kwargs={"full": want.full}, queue=host_queue(host))
        except Exception:  # the bus is down: keep the need for a sync for the sweeper
            with transaction() as session:
                q.mark_dirty(session, set(compiled))
            raise
        metrics.record_sent(doc.sections, list(row.roles) if row is not None else [])
    return out


def remark_dirty(hosts: set[str]) -> None:
    """A batch failed after clearing its hosts' flags: set them again for the sweeper."""
    with transaction() as session:
        q.mark_dirty(session, hosts)


def route(host: str, *, full: bool, forwarded: bool = False) -> int | None:
    """Push the host if it is this controller's (always when it shares with no one, or
    the poke was forwarded here already), else forward the poke to its owner. In a
    running controller the push joins the next batch (`batch.Batcher`)."""
    ring = RING
    if ring is None or forwarded or ring.mine(host):
        batcher = BATCHER
        if batcher is not None:
            batcher.add(host, Want(full, False))
            return None
        return push(host, full=full)
    app.send_task(
        SYNC_HOST,
        args=[host],
        kwargs={"full": full, "forwarded": True},
        queue=queue_of(ring.owner(host)),
    )
    return None


@app.task(name=SYNC_HOST)
def sync_host(host: str, full: bool = False, forwarded: bool = False) -> int | None:
    timeline.mark("poke_received", host)
    return route(host, full=full, forwarded=forwarded)


@app.task(name=SYNC_HOSTS)
def sync_hosts(hosts: list[str], full: bool = False, forwarded: bool = False) -> None:
    """Many hosts poked at once (`bus.poke_controller`): each pushed or forwarded as
    `sync_host` would, those of one other owner in one message."""
    timeline.mark("poke_received", hosts)
    ring = RING
    others: dict[str, list[str]] = {}
    for host in hosts:
        if ring is None or forwarded or ring.mine(host):
            route(host, full=full, forwarded=True)
        else:
            others.setdefault(ring.owner(host), []).append(host)
    for owner, theirs in sorted(others.items()):
        app.send_task(
            SYNC_HOSTS,
            args=[theirs],
            kwargs={"full": full, "forwarded": True},
            queue=queue_of(owner),
        )


def refresh_statuses(ids_by_kind: Mapping[str, set[str]]) -> None:
    with transaction() as session:
        carriers.refresh_all(session, ids_by_kind)


@app.task(name=REPORT)
def report(doc: dict[str, Any]) -> None:
    rep = Report.model_validate(doc)
    timeline.mark("report_received", rep.host, rep.revision)
    settled: float | None = None
    results = [(r.kind, r.id, r.revision, r.ok, r.detail) for r in rep.results]
    changed: dict[str, set[str]] = {}
    refresher = REFRESHER
    with transaction() as session:
        if not rep.applied:  # refused whole: what the host realised is unchanged
            q.record_refusal(session, rep.host, rep.detail)
        else:
            changed = q.record_results(
                session,
                rep.host,
                rep.revision,
                results,
                full=rep.full,
                duration_ms=rep.duration_ms,
                detail=None if rep.ok else (rep.detail or "failed"),
                partial=rep.partial,
                removed=rep.removed,
            )
            if refresher is None:
                carriers.refresh_all(session, changed)
        record_operating(session, operating_statuses(rep))
    if refresher is not None:  # after the commit: the refresh reads it
        refresher.add(changed)
    timeline.mark("recorded", rep.host, rep.revision)  # statuses committed: GET sees them
    if rep.applied and rep.ok:  # its own transaction: never the state row under resource rows
        with transaction() as session:
            settled = q.settle(session, rep.host, rep.revision)
        timeline.mark("settled", rep.host, rep.revision)
    metrics.record_report(rep)
    if settled is not None:
        metrics.REALISED.labels(rep.host).observe(settled)
    if not rep.ok:  # any failure: a full resync, after a short pause
        log.warning("host %s failed to apply revision %s: %s", rep.host, rep.revision, rep.detail)
        app.send_task(
            SYNC_HOST, args=[rep.host], kwargs={"full": True}, queue=CONTROL_QUEUE, countdown=2
        )


def operating_statuses(rep: Report) -> dict[str, dict[str, str]]:
    """kind -> id -> what the agent measured, from the results that carry it."""
    out: dict[str, dict[str, str]] = {}
    for r in rep.results:
        if r.operating_status is not None:
            out.setdefault(r.kind, {})[r.id] = r.operating_status
    return out


@app.task(name=HEARTBEAT)
def heartbeat(
    host: str,
    vtep_ip: str,
    roles: list[str],
    first: bool = False,
    protocol_version: int = 1,
    sections: list[str] | None = None,
    capabilities: list[str] | None = None,
    physical_networks: list[str] | None = None,
) -> None:
    """An agent that sends no version and sections (an older one) speaks protocol 1
    with the L2 sections; one that sends no capabilities keeps those last recorded."""
    advertised = list(SECTIONS_L2) if sections is None else sections
    metrics.HEARTBEAT.labels(host).set_to_current_time()
    said = repr((vtep_ip, sorted(roles), protocol_version, advertised, capabilities,
                 physical_networks))  # fmt: skip
    beats = BEATS
    if beats is not None and not first and beats.known(host, said):
        beats.beat(host)  # nothing new: only its time, written with others' (beats.py)
        return
    with transaction() as session:
        changed = q.record_heartbeat(
            session,
            host,
            vtep_ip,
            roles,
            protocol_version,
            advertised,
            capabilities,
            physical_networks,
        )
        peers: set[str] = set()
        if changed or first:  # hosts sharing a subnet with it must (re)learn its VTEP
            subnets = q.subnets_on_host(session, host)
            peers = carriers.carrying_hosts(session, "subnet", subnets) - {host}
            if not changed:  # a restart: peers hold its VTEP already; push those a change waits for
                peers = q.dirty_among(session, peers)
    if changed and peers:  # their documents change: as durable as any change (own transaction)
        with transaction() as session:
            q.mark_dirty(session, peers)
    if beats is not None:
        beats.note(host, said)
    if changed or first:
        route(host, full=True)
    for peer in sorted(peers):
        route(peer, full=False)


def sweep(waited: set[str] | None = None) -> None:
    """Move routers, load balancers and DHCP/DNS services off network hosts that are down
    (missed heartbeats) to the least-loaded up one; push hosts whose change notice or
    document was lost; re-derive every unsettled status (a subnet nobody needs to realise,
    a router whose host gained or lost a section).

    With `waited` (the sweeper thread's), a host is pushed for its dirty flag only when
    the previous sweep saw it dirty too: a poke normally follows a change by
    milliseconds, and pushing it meanwhile compiled every busy host twice."""
    with transaction() as session:  # resource rows, then host rows: as API requests do
        moved, touched = placement.reschedule(session, utcnow())
        if moved:
            log.warning("rescheduled routers %s; syncing %s", sorted(touched["router"]), moved)
        dhcp_moved, service_ports = placement.reschedule_dhcp(session, utcnow())
        if dhcp_moved:
            log.warning(
                "rescheduled DHCP/DNS ports %s; syncing %s", sorted(service_ports), dhcp_moved
            )
            touched["port"] = touched["port"] | service_ports
            moved = moved | dhcp_moved
        lbs_moved, lbs_touched = lb_placement.reschedule_load_balancers(session, utcnow())
        if lbs_moved:
            log.warning(
                "rescheduled load balancers %s; syncing %s",
                sorted(lbs_touched["load_balancer"]),
                lbs_moved,
            )
            moved |= lbs_moved
            for kind, ids in lbs_touched.items():
                touched.setdefault(kind, set()).update(ids)
        if moved:
            q.mark_dirty(session, moved)
    if moved:  # statuses in a transaction of their own, never under the host rows
        with transaction() as session:
            carriers.refresh_all(session, touched)
    with transaction() as session:
        dirty = q.dirty_hosts(session)
        lost = q.lagging_hosts(session, utcnow() - REPUSH_AFTER)
        carriers.refresh_all(session, carriers.unsettled(session))
    ring = RING
    if waited is not None:  # patient: a host dirty since the last sweep only, its poke is due
        fresh = set(dirty) - waited - moved
        waited.clear()
        waited.update(fresh)
        dirty = [h for h in dirty if h not in fresh]
    # A document is taken for lost only while no report waits to be recorded: behind a
    # backlog its report is most likely queued, and each copy sent costs another report
    # (during a 500-host fan-out every lagging host was sent up to four copies).
    backlog = BACKLOG() if BACKLOG is not None and lost else 0
    resend = RESENDS.due(lost) if not backlog else set()
    wants = {
        host: Want(False, host in resend)
        for host in sorted(set(dirty) | resend)
        if ring is None or ring.mine(host)  # else its owner's sweeper pushes it
    }
    if wants:
        metrics.REPUSHES.inc(len(wants))
        batcher = BATCHER
        if batcher is None:
            push_many(wants)
            return
        for host, want in wants.items():  # with the pokes' batches: never a second compile
            batcher.add(host, want)  # of a host in flight, nor one racing the batch


def start_sweeper(interval: float) -> threading.Thread:
    waited: set[str] = set()  # hosts found dirty by the last sweep, left to their pokes

    def loop() -> None:
        while True:
            time.sleep(interval)
            try:
                sweep(waited)
            except Exception:  # keep sweeping: the next round retries
                log.exception("sweep failed")

    thread = threading.Thread(target=loop, name="vpcd-sweeper", daemon=True)
    thread.start()
    return thread


def write_beats(at: datetime, hosts: list[str]) -> None:
    with transaction() as session:
        q.touch_heartbeats(session, hosts, at)


def host_revisions() -> list[tuple[str, int, int, bool]]:
    with transaction() as session:
        return q.revisions(session)


def mark_all_dirty() -> None:
    """At start: every host needs a compile. A predecessor killed mid-compile had cleared
    the flags of the hosts it was compiling (committed before the compile, so that a
    change committed meanwhile is never missed) and died before sending: without a flag,
    a later report of an older document would settle those changes unrealised. A host
    whose document comes out unchanged is sent nothing."""
    with transaction() as session:
        q.mark_dirty(session, set(q.host_names(session)))


def take_over(before: list[str], after: list[str]) -> set[str]:
    """Flag the hosts this controller took over from members that left (`Ring.on_leave`):
    the sweeper then compiles them, and one whose document is unchanged is sent nothing."""
    ring = RING
    if ring is None:
        return set()
    with transaction() as session:
        hosts = taken_over(q.host_names(session), before, after, ring.me)
        q.mark_dirty(session, hosts)
    if hosts:
        log.warning("took over %d hosts from %s", len(hosts), sorted(set(before) - set(after)))
    return hosts


def run(
    concurrency: int = 4,
    metrics_port: int | None = None,
    metrics_address: str = "127.0.0.1",
    controller_id: str | None = None,
) -> None:
    """Run the controller: a worker on the control queue, the sweeper thread, and (with a
    port) the metrics endpoint. With an id (and Redis) it joins the ring of controllers
    sharing the fleet, and also consumes its own queue of pokes forwarded to it."""
    global BACKLOG, BATCHER, BEATS, REFRESHER, RING
    if controller_id is None:  # alone: every host is ours (in a ring, see docs/architecture.md)
        try:
            mark_all_dirty()
        except Exception:  # the database is down: the sweeper pushes what is flagged once up
            log.exception("could not flag the hosts for a compile at start")
    BEATS = RecentBeats()
    BEATS.start(write_beats)
    BATCHER = Batcher(push_many, on_error=remark_dirty)
    BATCHER.start()
    REFRESHER = Refresher(refresh_statuses)
    BACKLOG = lambda: queue_length(app, CONTROL_QUEUE)  # noqa: E731
    REFRESHER.start()
    queues = [CONTROL_QUEUE]
    redis_url = os.environ.get("REDIS_URL")
    if controller_id is not None and redis_url:
        RING = Ring(redis_url, controller_id, on_leave=take_over)
        RING.start()
        queues.append(queue_of(controller_id))
    if metrics_port is not None:
        metrics.serve(metrics_port, metrics_address, host_revisions)
    start_sweeper(float(os.environ.get("VPCD_SWEEP_INTERVAL", "2")))
    app.worker_main(
        [
            "worker",
            "-Q",
            ",".join(queues),
            "-n",
            f"controller-{controller_id}@%h" if controller_id else "controller@%h",
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
