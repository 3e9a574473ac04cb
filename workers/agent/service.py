"""The agent process: a Celery worker on its host's own queue, a heartbeat, a resync timer.

Documents arrive whole (level-triggered); `Agent.sync` ignores one that is not newer than
the last applied unless a full resync is due (after a start, a failure, or the timer).
A document with a section this agent does not support is refused whole, with a report
saying so: applying the rest would claim a host realised what it never saw.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from workers import docdelta, timeline
from workers.agent.agent import Agent
from workers.agent.documents import Documents
from workers.bus import (
    APPLY,
    CONTROL_QUEUE,
    HEARTBEAT,
    REPORT,
    celery_app,
    host_queue,
    poke_controller,
)
from workers.protocol import (
    PROTOCOL_VERSION,
    SECTIONS_L2,
    Report,
    unsupported_sections,
)

log = logging.getLogger("vpcd.agent")

# The sections this agent realises; advertised in every heartbeat.
SUPPORTED_SECTIONS: tuple[str, ...] = (
    *SECTIONS_L2,
    "dhcp_dns",
    "resolvers",
    "security_groups",
    "network_acls",
    "routers",
    "load_balancers",
    "typed_networks",
)


@dataclass
class AgentService:
    host: str
    vtep_ip: str
    roles: list[str]
    agent: Agent
    app: Celery = field(default_factory=celery_app)
    heartbeat_interval: float = 5.0
    resync_interval: float = 30.0
    sections: tuple[str, ...] = SUPPORTED_SECTIONS
    lock: threading.Lock = field(default_factory=threading.Lock)
    applied_revision: int | None = None  # the newest revision applied in full
    # Kernel capabilities (drivers.capabilities.detect) and NAME -> interface mappings of
    # the physical networks this host carries (flat subnets), both in every heartbeat.
    capabilities: list[str] = field(default_factory=list)
    physical_interfaces: dict[str, str] = field(default_factory=dict)
    documents: Documents = field(default_factory=Documents)
    deltas: bool = True  # advertise incremental documents (False: act as an older agent)

    def apply(self, doc: dict[str, Any], full: bool) -> None:
        if doc.get("host") != self.host:  # never apply (nor answer) another host's document
            log.error("dropping a document for host %s", doc.get("host"))
            return
        revision = doc.get("revision")
        timeline.mark("received", self.host, revision if isinstance(revision, int) else None)
        incremental = docdelta.is_delta(doc)
        delta = doc if incremental else None
        if incremental:
            base = self.documents.last
            if not self.deltas or base is None or base.get("revision") != doc[docdelta.BASE]:
                log.info(
                    "delta on revision %s, not ours: asking for the whole document",
                    doc[docdelta.BASE],
                )
                self.request_sync(full=True)  # the fallback: the whole document
                return
            doc = docdelta.patch(base, doc)
        unknown = unsupported_sections(doc, self.sections)
        if unknown:
            self.refuse(doc, unknown)
            return
        state = self.documents.validated(doc, delta)
        with self.lock:
            timeline.mark("apply_start", self.host, state.revision)
            report = self.agent.sync(state, full=full)
            stats = self.agent.stats
        timeline.mark("applied", self.host, state.revision)
        if stats.skipped and state.revision != self.applied_revision:
            return  # a stale poke: nothing was applied, nothing to report
        if stats.skipped:
            # Sent again what this host realised: the controller never recorded the answer
            # (lost with a controller killed holding it). Answer again, whole.
            incremental = False
        else:
            self.documents.last, self.documents.state = doc, state
        report = self.documents.changed_only(report, partial=incremental)
        # One line per sync: what bench/converge.py reads (kernel writes = ops attempted).
        # Then where the time went: the sync's steps, and the apply's by op type (ms).
        log.info(
            "sync revision=%s full=%s ops=%s writes=%s ms=%.1f steps=%s apply=%s",
            state.revision,
            stats.full,
            stats.ops,
            sum(stats.applied.values()) + stats.errors,
            stats.timings.get("total", 0.0) * 1000,
            _ms(stats.timings),
            _ms(stats.op_seconds),
        )
        if report.ok:
            self.applied_revision = state.revision
        report = report.model_copy(
            update={
                "full": stats.full,
                "ops": stats.ops,
                "duration_ms": round(stats.timings.get("total", 0.0) * 1000, 2),
                "ops_by_type": dict(stats.applied),
                "errors": stats.errors,
                "applied_revision": self.applied_revision,
            }
        )
        body = self.documents.wire(report)
        timeline.mark("report_sent", self.host, state.revision)  # before: it may arrive first
        self.app.send_task(REPORT, args=[body], queue=CONTROL_QUEUE)

    def refuse(self, doc: dict[str, Any], unknown: list[str]) -> None:
        revision = doc.get("revision")
        detail = (
            f"refused document revision {revision}: unsupported sections "
            f"{', '.join(unknown)} (protocol {PROTOCOL_VERSION}: {', '.join(self.sections)})"
        )
        log.error("host %s %s", self.host, detail)
        report = Report(
            host=self.host,
            revision=revision if isinstance(revision, int) else 0,
            ok=False,
            applied=False,
            detail=detail,
        )
        self.app.send_task(REPORT, args=[report.model_dump(mode="json")], queue=CONTROL_QUEUE)

    def heartbeat(self, first: bool = False) -> None:
        self.app.send_task(
            HEARTBEAT,
            args=[self.host, self.vtep_ip, self.roles],
            kwargs={
                "first": first,
                "protocol_version": docdelta.PROTOCOL if self.deltas else PROTOCOL_VERSION,
                "sections": list(self.sections),
                "capabilities": self.capabilities,
                "physical_networks": sorted(self.physical_interfaces),
            },
            queue=CONTROL_QUEUE,
        )

    def _remeasure(self) -> None:
        """Operating statuses move between syncs (a member fails): report them when they
        changed, as a report of the revision already applied."""
        try:
            with self.lock:
                report = self.agent.remeasure()
        except Exception:  # measuring must never stop the heartbeat
            log.exception("measuring load balancers failed")
            return
        if report is not None:
            self.app.send_task(REPORT, args=[report.model_dump(mode="json")], queue=CONTROL_QUEUE)

    def request_sync(self, full: bool) -> None:
        poke_controller(self.app, [self.host], full=full)

    def start_timers(self) -> None:
        def beat() -> None:
            while True:
                time.sleep(self.heartbeat_interval)
                try:
                    self.heartbeat()
                except Exception:
                    log.exception("heartbeat failed")

        def resync() -> None:
            while True:
                time.sleep(self.resync_interval)
                try:
                    self.request_sync(full=True)
                except Exception:
                    log.exception("resync request failed")

        def measure() -> None:  # at the monitors' pace, not the heartbeat's
            while True:
                try:
                    pace = self.agent.measure_pace()
                except Exception:
                    log.exception("reading the measuring pace failed")
                    pace = self.heartbeat_interval
                time.sleep(pace)
                self._remeasure()

        threading.Thread(target=beat, name="vpcd-heartbeat", daemon=True).start()
        threading.Thread(target=measure, name="vpcd-lb-measure", daemon=True).start()
        threading.Thread(target=resync, name="vpcd-resync", daemon=True).start()

    def run(self) -> None:
        """Register (the controller answers with a full document), then consume."""
        service = self

        @self.app.task(name=APPLY)
        def apply(doc: dict[str, Any], full: bool = False) -> None:
            service.apply(doc, full)

        self.heartbeat(first=True)
        self.start_timers()
        try:
            self.app.worker_main(
                [
                    "worker",
                    "-Q",
                    host_queue(self.host),
                    "-n",
                    f"agent@{self.host}",
                    "--pool",
                    "solo",
                    "--without-gossip",
                    "--without-mingle",
                    "-l",
                    "INFO",
                ]
            )
        finally:
            self.agent.close()


def _ms(seconds: dict[str, float]) -> str:
    """`name:ms,...` of timings in seconds: one token, for the sync log line."""
    return ",".join(f"{k}:{v * 1000:.1f}" for k, v in seconds.items() if k != "total") or "-"
