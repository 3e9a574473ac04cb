"""The controller's Prometheus metrics: what operators ask ("is it realised yet?").

Counters and histograms are recorded where things happen (compile, send, report, sweep);
the per-host revision gauges and the dirty-host backlog are read from the database at
scrape time, so they are right whichever controller process did the work and after a
restart. `serve` exposes them on their own port (`vpcd controller --metrics-port`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from workers.protocol import Report

log = logging.getLogger("vpcd.controller")

SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LAG_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)

COMPILE = Histogram(
    "vpcd_controller_compile_seconds",
    "Time to compile one batch of host documents (pokes arriving together compile together)",
    buckets=SECONDS,
)
COMPILED = Counter("vpcd_controller_compiled_total", "Host documents compiled")
COALESCED = Counter(
    "vpcd_controller_coalesced_total",
    "Pokes that compiled nothing: a push that cleared the host's dirty flag compiles after it",
)
DOCUMENTS = Counter(
    "vpcd_controller_documents_sent_total",
    "Host documents sent, by the sections they carry and the host's roles",
    ["sections", "role"],
)
DUPLICATES = Counter(
    "vpcd_controller_duplicates_skipped_total",
    "Pushes that compiled the document this controller had just sent, so sent nothing",
)
REPUSHES = Counter(
    "vpcd_controller_sweep_repushes_total",
    "Hosts the sweeper pushed because their change notice was lost",
)
REALISED = Histogram(
    "vpcd_realisation_seconds",
    "From the API commit of a change to a host reporting it realised",
    ["host"],
    buckets=LAG_SECONDS,
)
SYNC = Histogram(
    "vpcd_agent_sync_seconds", "Agent sync duration, as reported", ["host"], buckets=SECONDS
)
OPS = Counter("vpcd_agent_ops_total", "Kernel ops agents applied, by op type", ["host", "op"])
ERRORS = Counter("vpcd_agent_errors_total", "Ops that failed in agents' syncs", ["host"])
REPORTS = Counter("vpcd_agent_reports_total", "Agent reports, by outcome", ["host", "ok"])
APPLIED = Gauge(
    "vpcd_agent_applied_revision", "The newest revision an agent applied in full", ["host"]
)
HEARTBEAT = Gauge(
    "vpcd_agent_last_heartbeat_timestamp_seconds",
    "When a host's agent last sent a heartbeat (Unix time)",
    ["host"],
)


def record_report(rep: Report) -> None:
    """An agent's report, exported per host."""
    REPORTS.labels(rep.host, str(rep.ok).lower()).inc()
    if rep.duration_ms is not None:
        SYNC.labels(rep.host).observe(rep.duration_ms / 1000)
    for op, n in rep.ops_by_type.items():
        OPS.labels(rep.host, op).inc(n)
    if rep.errors:
        ERRORS.labels(rep.host).inc(rep.errors)
    if rep.applied_revision is not None:
        APPLIED.labels(rep.host).set(rep.applied_revision)


def record_sent(sections: Iterable[str], roles: Iterable[str]) -> None:
    DOCUMENTS.labels(",".join(sorted(sections)) or "none", ",".join(sorted(roles)) or "none").inc()


Rows = Callable[[], list[tuple[str, int, int, bool]]]


class StateCollector(Collector):
    """Read at scrape: per host the desired and realised revisions and their difference
    (the lag), and how many hosts wait for a sync."""

    def __init__(self, rows: Rows) -> None:
        self.rows = rows

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            rows = self.rows()
        except Exception:  # the database is away: say nothing rather than fail the scrape
            log.warning("metrics: cannot read host states", exc_info=True)
            return
        desired = GaugeMetricFamily(
            "vpcd_host_desired_revision",
            "Revision of the host's compiled document",
            labels=["host"],
        )
        realised = GaugeMetricFamily(
            "vpcd_host_realised_revision", "Revision the host last reported", labels=["host"]
        )
        lag = GaugeMetricFamily(
            "vpcd_host_realisation_lag_revisions",
            "Desired revision minus realised revision (0: the host carries what it should)",
            labels=["host"],
        )
        dirty = GaugeMetricFamily(
            "vpcd_controller_dirty_hosts", "Hosts whose changes wait to be compiled and sent"
        )
        for host, want, have, _ in rows:
            desired.add_metric([host], want)
            realised.add_metric([host], have)
            lag.add_metric([host], max(0, want - have))
        dirty.add_metric([], sum(1 for *_, d in rows if d))
        yield from (desired, realised, lag, dirty)


def serve(
    port: int, address: str, rows: Rows, registry: CollectorRegistry = REGISTRY
) -> WSGIServer:
    """Expose the controller's metrics over HTTP (a thread of this process); port 0 picks
    a free one (the server's `server_port`)."""
    registry.register(StateCollector(rows))
    server, _ = start_http_server(port, addr=address, registry=registry)
    log.info("controller metrics on http://%s:%d/metrics", address, server.server_port)
    return server
