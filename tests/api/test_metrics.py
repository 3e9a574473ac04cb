"""Metrics that answer operators' questions: scraped after real requests, compiles, reports.

The registry is process-wide, so each test compares samples before and after what it does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from cli import vpcd
from models import hoststate as q
from tests.api import helpers as h
from tests.conftest import ADMIN_TOKEN, Tenant
from workers.agent.agent import SyncStats
from workers.agent.service import AgentService
from workers.bus import APPLY
from workers.controller import metrics, tasks
from workers.protocol import HostState, Report, ResourceResult


def scrape(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    r = client.get("/metrics")
    assert r.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def sample(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_api_latency_by_route_and_status_and_in_flight(client: TestClient, tenant: Tenant) -> None:
    route = "/v1/vpcs/{vpc_id}"
    before = scrape(client)
    vpc = h.vpc(client, tenant)
    for ident in (vpc["id"], vpc["id"], "00000000-0000-0000-0000-000000000000"):
        client.get(f"/v1/vpcs/{ident}", headers=tenant.headers)
    after = scrape(client)

    def grew(name: str, status: str) -> float:
        labels = {"method": "GET", "route": route, "status": status}
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert grew("vpcd_http_request_seconds_count", "200") == 2
    assert grew("vpcd_http_request_seconds_count", "404") == 1
    assert grew("vpcd_http_requests_total", "404") == 1
    sums = grew("vpcd_http_request_seconds_sum", "200")
    assert 0 < sums < 10
    inf = {"method": "GET", "route": route, "status": "200", "le": "+Inf"}
    assert sample(after, "vpcd_http_request_seconds_bucket", **inf) == sample(
        after, "vpcd_http_request_seconds_count", **{k: v for k, v in inf.items() if k != "le"}
    )
    assert sample(after, "vpcd_http_requests_in_flight") == 1  # the scrape itself


MULTIPROCESS = """
import json, sys
from fastapi.testclient import TestClient
from api import metrics
from api.app import create_app
from api.settings import Settings
app = create_app(Settings(database_url=sys.argv[1], vpcd_admin_token=sys.argv[2], redis_url=None))
with TestClient(app) as c:
    c.get("/v1/vpcs", headers={"Authorization": "Bearer " + sys.argv[2]})
    c.get("/v1/vpcs")
    body, _ = metrics.render()
print(json.dumps(body.decode()))
"""


def test_multiprocess_mode_sums_workers_and_keeps_status(
    db_url: str, tmp_path: Any, client: TestClient
) -> None:
    """With PROMETHEUS_MULTIPROC_DIR (several uvicorn workers), /metrics still carries the
    status label and the in-flight gauge (summed over live processes)."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", MULTIPROCESS, db_url, ADMIN_TOKEN],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    text = json.loads(out.stdout.strip().splitlines()[-1])
    got = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    ok = {"method": "GET", "route": "/v1/vpcs", "status": "200"}
    assert sample(got, "vpcd_http_request_seconds_count", **ok) == 1
    assert sample(got, "vpcd_http_request_seconds_count", **{**ok, "status": "401"}) == 1
    assert ("vpcd_http_requests_in_flight", frozenset()) in got
    assert list(tmp_path.iterdir())  # the samples went through the shared folder


# --------------------------------------------------------------------------- controller


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch, db_url: str) -> list[dict[str, Any]]:
    monkeypatch.setenv("DATABASE_URL", db_url)
    docs: list[dict[str, Any]] = []

    def send_task(name: str, args: list[Any] | None = None, **_: Any) -> None:
        if name == APPLY and args:
            docs.append(args[0])

    monkeypatch.setattr(tasks.app, "send_task", send_task)
    return docs


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def state_metrics() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    registry = CollectorRegistry()
    registry.register(metrics.StateCollector(tasks.host_revisions))
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in registry.collect()
        for s in family.samples
    }


def report(state: HostState, ok: bool = True, **extra: Any) -> dict[str, Any]:
    results = [
        ResourceResult(kind="subnet", id=s.id, revision=s.revision, ok=ok) for s in state.subnets
    ] + [ResourceResult(kind="port", id=p.id, revision=p.revision, ok=ok) for p in state.ports]
    return Report(
        host=state.host, revision=state.revision, ok=ok, results=results, **extra
    ).model_dump(mode="json")


def test_controller_metrics_follow_a_change_to_realised(
    client: TestClient, tenant: Tenant, sent: list[dict[str, Any]]
) -> None:
    compiles = value("vpcd_controller_compile_seconds_count")
    docs = value("vpcd_controller_documents_sent_total", sections="ports,subnets", role="compute")
    realised = value("vpcd_realisation_seconds_count", host="m1")
    ops = value("vpcd_agent_ops_total", host="m1", op="CreatePort")
    errors = value("vpcd_agent_errors_total", host="m1")
    tasks.heartbeat("m1", "198.18.0.21", ["compute"], first=True, sections=["subnets", "ports"])
    assert value("vpcd_agent_last_heartbeat_timestamp_seconds", host="m1") > 1.7e9

    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    h.port(client, tenant, s["id"], host="m1", netns="web")
    with tasks.transaction() as session:  # the API marked m1 dirty, with the commit's time
        assert q.dirty_hosts(session) == ["m1"]
    assert sample(state_metrics(), "vpcd_controller_dirty_hosts") == 1

    sent.clear()
    tasks.sync_host("m1")
    doc = HostState.model_validate(sent[-1])
    assert value("vpcd_controller_compile_seconds_count") == compiles + 1 + 1  # + heartbeat's
    assert (
        value("vpcd_controller_documents_sent_total", sections="ports,subnets", role="compute")
        == docs + 2
    )
    lag = state_metrics()
    assert sample(lag, "vpcd_controller_dirty_hosts") == 0
    assert sample(lag, "vpcd_host_desired_revision", host="m1") == doc.revision
    assert sample(lag, "vpcd_host_realisation_lag_revisions", host="m1") == doc.revision

    # a failed sync: counted, and the change is not realised yet
    tasks.report(report(doc, ok=False, errors=2, duration_ms=40.0))
    assert value("vpcd_agent_errors_total", host="m1") == errors + 2
    assert value("vpcd_realisation_seconds_count", host="m1") == realised
    assert value("vpcd_agent_reports_total", host="m1", ok="false") >= 1

    tasks.report(
        report(
            doc,
            duration_ms=120.0,
            ops_by_type={"CreatePort": 1, "CreateNetns": 1},
            applied_revision=doc.revision,
        )
    )
    assert value("vpcd_agent_ops_total", host="m1", op="CreatePort") == ops + 1
    assert value("vpcd_agent_applied_revision", host="m1") == doc.revision
    assert value("vpcd_agent_sync_seconds_bucket", host="m1", le="0.25") >= 1
    assert value("vpcd_realisation_seconds_count", host="m1") == realised + 1
    assert 0 < value("vpcd_realisation_seconds_sum", host="m1") < 60
    done = state_metrics()
    assert sample(done, "vpcd_host_realised_revision", host="m1") == doc.revision
    assert sample(done, "vpcd_host_realisation_lag_revisions", host="m1") == 0


def test_the_sweeper_counts_its_repushes(
    client: TestClient, tenant: Tenant, sent: list[dict[str, Any]]
) -> None:
    tasks.heartbeat("m2", "198.18.0.22", ["compute", "network"], first=True)
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    h.port(client, tenant, s["id"], host="m2", netns="db")  # the poke is lost: no bus
    before = value("vpcd_controller_sweep_repushes_total")
    tasks.sweep()
    assert value("vpcd_controller_sweep_repushes_total") == before + 1
    tasks.sweep()  # nothing dirty any more
    assert value("vpcd_controller_sweep_repushes_total") == before + 1
    role = "compute,network"
    assert value("vpcd_controller_documents_sent_total", sections="ports,subnets", role=role) >= 2


@pytest.fixture
def metrics_server(sent: list[dict[str, Any]]) -> Iterator[str]:
    server = metrics.serve(0, "127.0.0.1", tasks.host_revisions, CollectorRegistry())
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()


def test_the_controller_serves_its_metrics_on_a_port(
    client: TestClient, metrics_server: str
) -> None:
    tasks.heartbeat("m3", "198.18.0.23", ["compute"], first=True)  # revision 1 sent
    text = httpx.get(metrics_server, timeout=10).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    lag = families["vpcd_host_realisation_lag_revisions"]
    assert [(s.labels, s.value) for s in lag.samples] == [({"host": "m3"}, 1.0)]  # not reported yet
    assert "vpcd_controller_dirty_hosts" in families


# --------------------------------------------------------------------------- agent reports


class CountingAgent:
    """Applies nothing, but says what it would have (the kernel is not the point here)."""

    def __init__(self, ok: bool) -> None:
        self.ok = ok
        self.stats = SyncStats()

    def sync(self, state: HostState, *, full: bool = False) -> Report:
        self.stats = SyncStats(
            full=full,
            ops=3,
            applied=Counter({"CreateNetns": 1, "CreatePort": 1}),
            errors=0 if self.ok else 1,
            timings={"total": 0.05},
        )
        return Report(host=state.host, revision=state.revision, ok=self.ok)


def test_agents_report_ops_by_type_errors_and_applied_revision() -> None:
    reports: list[dict[str, Any]] = []

    class Bus:
        def send_task(self, name: str, args: list[Any], **_: Any) -> None:
            reports.append(args[0])

    agent = CountingAgent(ok=True)
    service = AgentService("a1", "198.18.0.31", ["compute"], agent, app=Bus())  # type: ignore[arg-type]
    doc = HostState(host="a1", revision=4, vtep_ip="198.18.0.31").wire(["subnets", "ports"])
    service.apply(doc, full=True)
    agent.ok = False
    service.apply({**doc, "revision": 5}, full=False)
    first, second = (Report.model_validate(r) for r in reports)
    assert (first.ops_by_type, first.errors, first.applied_revision) == (
        {"CreateNetns": 1, "CreatePort": 1},
        0,
        4,
    )
    assert first.duration_ms == 50.0
    assert (second.errors, second.applied_revision) == (1, 4)  # 5 was not applied in full
    # a report from an older agent (none of the new fields) is still valid
    old = Report.model_validate({"host": "a1", "revision": 3, "ok": True, "ops": 2})
    assert (old.ops_by_type, old.errors, old.applied_revision) == ({}, 0, None)


def test_vpcd_controller_passes_its_metrics_port_on(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(tasks, "run", lambda *args: calls.append(args))
    runner = CliRunner()
    assert runner.invoke(vpcd.app, ["controller"]).exit_code == 0
    argv = ["controller", "--metrics-port", "9464", "--metrics-address", "0.0.0.0"]
    assert runner.invoke(vpcd.app, argv).exit_code == 0
    assert calls == [(4, None, "127.0.0.1"), (4, 9464, "0.0.0.0")]  # loopback unless told
