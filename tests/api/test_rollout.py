"""Mixed-version rollouts: agents that support fewer sections than the controller knows.

The real controller tasks and the real AgentService run against one in-memory bus; only
the kernel side of the agent is a fake that realises whatever the document says.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest

from tests.api import helpers as h
from workers import docdelta
from workers.agent.agent import SyncStats
from workers.agent.service import SUPPORTED_SECTIONS, AgentService
from workers.bus import APPLY, HEARTBEAT, REPORT, SYNC_HOST
from workers.controller import tasks
from workers.protocol import SECTIONS, SECTIONS_L2, HostState, Report, ResourceResult


class FakeAgent:
    """Realises every resource of every document it is given (the kernel is not the point)."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.documents: list[HostState] = []
        self.stats = SyncStats()

    def sync(self, state: HostState, *, full: bool = False) -> Report:
        self.documents.append(state)
        self.stats = SyncStats(full=full)
        results = [
            ResourceResult(kind="subnet", id=s.id, revision=s.revision, ok=True)
            for s in state.subnets
        ]
        results += [
            ResourceResult(kind="port", id=p.id, revision=p.revision, ok=True) for p in state.ports
        ]
        used = {g for p in state.ports for g in p.security_group_ids or ()}
        results += [
            ResourceResult(kind="security_group", id=g.id, revision=g.revision, ok=True)
            for g in state.security_groups
            if g.id in used
        ]
        results += [
            ResourceResult(kind="network_acl", id=a.id, revision=a.revision, ok=True)
            for a in state.network_acls
        ]
        for r in state.routers:
            results.append(ResourceResult(kind="router", id=r.id, revision=r.revision, ok=True))
            results += [
                ResourceResult(kind="port", id=i.port_id, revision=i.port_revision, ok=True)
                for i in r.interfaces
            ]
            results += [
                ResourceResult(kind="floating_ip", id=f.id, revision=f.revision, ok=True)
                for f in r.floating_ips
            ]
        return Report(host=self.host, revision=state.revision, ok=True, results=results)

    def remeasure(self) -> Report | None:
        return None  # it measures no load balancer

    def close(self) -> None:
        pass


class Bus:
    """Delivers what the controller and the agents send, in order, in this process."""

    def __init__(self) -> None:
        self.queue: deque[tuple[str, list[Any], dict[str, Any]]] = deque()
        self.agents: dict[str, AgentService] = {}
        self.reports: list[Report] = []
        self.applies: list[dict[str, Any]] = []  # whole documents (deltas patched)
        self.messages: list[dict[str, Any]] = []  # what was sent: whole or delta
        self.raw_reports: list[dict[str, Any]] = []
        self.whole: dict[str, dict[str, Any]] = {}
        self.lose: set[str] = set()  # task names the bus drops (into `lost`)
        self.lost: list[tuple[str, list[Any], dict[str, Any]]] = []

    def send_task(
        self,
        name: str,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        countdown: float | None = None,
        **_: Any,
    ) -> None:
        if countdown:  # delayed resyncs: the tests drive every sync themselves
            return
        self.queue.append((name, args or [], kwargs or {}))

    def agent(
        self, host: str, vtep_ip: str, sections: tuple[str, ...], deltas: bool = True
    ) -> AgentService:
        """An agent; `deltas=False` is one from before incremental documents."""
        service = AgentService(
            host=host,
            vtep_ip=vtep_ip,
            roles=["compute", "network"],
            agent=FakeAgent(host),  # type: ignore[arg-type]
            app=self,  # type: ignore[arg-type]
            sections=sections,
            deltas=deltas,
        )
        self.agents[host] = service
        service.heartbeat(first=True)
        self.run()
        return service

    def run(self) -> None:
        while self.queue:
            name, args, kwargs = self.queue.popleft()
            if name in self.lose:
                self.lost.append((name, args, kwargs))
            elif name == APPLY:
                doc, host = args[0], args[0]["host"]
                self.messages.append(doc)
                if docdelta.is_delta(doc) and host in self.whole:
                    self.whole[host] = docdelta.patch(self.whole[host], doc)
                elif not docdelta.is_delta(doc):
                    self.whole[host] = doc
                self.applies.append(self.whole.get(host, doc))
                service = self.agents.get(args[0]["host"])
                if service is not None:
                    service.apply(args[0], **kwargs)
            elif name == REPORT:
                self.raw_reports.append(args[0])
                self.reports.append(Report.model_validate(args[0]))
                tasks.report(*args, **kwargs)
            elif name == HEARTBEAT:
                tasks.heartbeat(*args, **kwargs)
            elif name == SYNC_HOST:
                tasks.sync_host(*args, **kwargs)

    def settle(self) -> None:
        """What the controller does on its own: push dirty hosts, re-derive statuses."""
        tasks.sweep()
        self.run()
        tasks.sweep()
        self.run()

    def last_doc(self, host: str) -> dict[str, Any]:
        return [d for d in self.applies if d["host"] == host][-1]


@pytest.fixture
def bus(monkeypatch: pytest.MonkeyPatch, db_url: str) -> Bus:
    monkeypatch.setenv("DATABASE_URL", db_url)
    b = Bus()
    monkeypatch.setattr(tasks.app, "send_task", b.send_task)
    return b


def _get(client: Any, who: Any, path: str) -> dict[str, Any]:
    headers = who if isinstance(who, dict) else who.headers
    r = client.get(path, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _host(client: Any, name: str) -> dict[str, Any]:
    (host,) = client.get(f"/v1/hosts?name={name}", headers=h.ADMIN).json()["items"]
    return host  # type: ignore[no-any-return]


def _routed_network(client: Any, tenant: Any) -> dict[str, dict[str, Any]]:
    """h1 (network) and h2 each hold a port; a router on h1 serves the subnet; a floating
    IP maps to the port on h2."""
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    p1 = h.port(client, tenant, s["id"], host="h1", netns="a")
    p2 = h.port(client, tenant, s["id"], host="h2", netns="b")
    ext = h.external_network(client)
    r = h.router(client, tenant, v["id"], external_network_id=ext["id"])
    assert r["host"] == "h1"
    leg = h.attach(client, tenant, r["id"], s["id"])
    fip = h.floating_ip(client, tenant, ext["id"], port_id=p2["id"])
    return {"subnet": s, "p1": p1, "p2": p2, "router": r, "leg": leg, "fip": fip}


L2_DETAIL = "host h1 does not support section 'routers' (protocol 1: subnets, ports)"


def test_an_l2_agent_against_a_controller_that_knows_routers(client, tenant, bus) -> None:  # type: ignore[no-untyped-def]
    # every section, typed_networks too (issue 12)
    assert set(SUPPORTED_SECTIONS) == set(SECTIONS) and set(SECTIONS) > set(SECTIONS_L2)
    bus.agent("h1", "198.18.0.11", SECTIONS_L2, deltas=False)  # the network host
    bus.agent("h2", "198.18.0.12", SECTIONS_L2, deltas=False)
    host = _host(client, "h1")
    assert (host["protocol_version"], host["sections"]) == (1, ["subnets", "ports"])
    net = _routed_network(client, tenant)
    bus.settle()

    # its L2 keeps working and its reports are accepted
    for p in ("p1", "p2"):
        assert _get(client, tenant, f"/v1/ports/{net[p]['id']}")["status"] == "active"
    assert _get(client, tenant, f"/v1/subnets/{net['subnet']['id']}")["status"] == "active"
    assert all(r.ok and r.applied for r in bus.reports)
    assert _host(client, "h1")["status_detail"] is None
    # what needs the routers section is `error`, naming the host and the section
    for path in (
        f"/v1/routers/{net['router']['id']}",
        f"/v1/floating-ips/{net['fip']['id']}",
        f"/v1/ports/{net['leg']['port_id']}",
    ):
        got = _get(client, tenant, path)
        assert (got["status"], got["status_detail"]) == ("error", L2_DETAIL), path
    # it is sent only the sections it supports; the leg is no FDB entry anywhere
    doc = bus.last_doc("h1")
    assert "routers" not in doc and [p["id"] for p in doc["ports"]] == [net["p1"]["id"]]
    remote = bus.last_doc("h2")["subnets"][0]["remote_ports"]
    assert [r["mac"] for r in remote] == [net["p1"]["mac_address"]]
    # nor are its ports' groups: the VPC's default group is `error` until it can be
    assert "security_groups" not in doc and "security_group_ids" not in doc["ports"][0]
    vpc = _get(client, tenant, f"/v1/subnets/{net['subnet']['id']}")["vpc_id"]
    (default,) = _get(client, tenant, f"/v1/security-groups?vpc_id={vpc}")["items"]
    assert default["status"] == "error"
    assert "does not support section 'security_groups'" in default["status_detail"]


def test_an_older_agent_without_advertisement_is_protocol_1_l2(client, bus) -> None:  # type: ignore[no-untyped-def]
    tasks.heartbeat("old", "198.18.0.19", ["compute"], first=True)  # as agents before sections
    host = _host(client, "old")
    assert (host["protocol_version"], host["sections"]) == (1, ["subnets", "ports"])
    created = h.host(client, name="admin-made", vtep_ip="198.18.0.20")  # no agent yet
    assert (created["protocol_version"], created["sections"]) == (1, ["subnets", "ports"])


def test_a_host_gaining_and_losing_routers(client, tenant, bus) -> None:  # type: ignore[no-untyped-def]
    bus.agent("h1", "198.18.0.11", SECTIONS_L2, deltas=False)
    bus.agent("h2", "198.18.0.12", SECTIONS_L2, deltas=False)
    net = _routed_network(client, tenant)
    bus.settle()
    router = f"/v1/routers/{net['router']['id']}"
    assert _get(client, tenant, router)["status"] == "error"

    bus.agent("h1", "198.18.0.11", SECTIONS)  # upgraded in place
    bus.settle()
    host = _host(client, "h1")
    assert host["sections"] == list(SECTIONS)
    doc = bus.last_doc("h1")
    (r,) = doc["routers"]
    assert [i["port_id"] for i in r["interfaces"]] == [net["leg"]["port_id"]]
    assert r["external_gateway"]["external_ip"] == net["router"]["external_ip"]
    assert [(f["id"], f["fixed_ip"]) for f in r["floating_ips"]] == [
        (net["fip"]["id"], net["p2"]["ip_address"])
    ]
    for path in (
        router,
        f"/v1/floating-ips/{net['fip']['id']}",
        f"/v1/ports/{net['leg']['port_id']}",
        f"/v1/subnets/{net['subnet']['id']}",
    ):
        got = _get(client, tenant, path)
        assert (got["status"], got["status_detail"]) == ("active", None), path
    # h2's workloads reach the gateway on h1: its leg is an FDB entry there now
    remote = bus.last_doc("h2")["subnets"][0]["remote_ports"]
    leg = _get(client, tenant, f"/v1/ports/{net['leg']['port_id']}")
    ports = client.get(f"/v1/ports?subnet_id={net['subnet']['id']}", headers=tenant.headers)
    service = {
        p["mac_address"] for p in ports.json()["items"] if p["device_owner"] == "network:dhcp"
    }
    assert {r["mac"] for r in remote} == {net["p1"]["mac_address"], leg["mac_address"]} | service

    bus.agent("h1", "198.18.0.11", SECTIONS_L2, deltas=False)  # rolled back
    bus.settle()
    assert "routers" not in bus.last_doc("h1")
    got = _get(client, tenant, router)
    assert (got["status"], got["status_detail"]) == ("error", L2_DETAIL)
    assert _get(client, tenant, f"/v1/ports/{net['p1']['id']}")["status"] == "active"


def test_a_document_with_unknown_sections_is_refused_whole(client, tenant, bus) -> None:  # type: ignore[no-untyped-def]
    service = bus.agent("h1", "198.18.0.11", SECTIONS_L2)
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    p = h.port(client, tenant, s["id"], host="h1", netns="a")
    bus.settle()
    assert _get(client, tenant, f"/v1/ports/{p['id']}")["status"] == "active"
    realised = _host(client, "h1")["realised_revision"]
    applied = len(service.agent.documents)

    doc = dict(bus.last_doc("h1"))
    doc.update(revision=doc["revision"] + 1, routers=[], firewalls=[{"id": "x"}], ports=[])
    service.apply(doc, False)
    bus.run()
    assert len(service.agent.documents) == applied  # nothing of it was applied
    refusal = bus.reports[-1]
    assert not refusal.ok and not refusal.applied and refusal.results == []
    assert refusal.detail is not None and "firewalls, routers" in refusal.detail
    host = _get(client, h.ADMIN, f"/v1/hosts/{_host(client, 'h1')['id']}")
    assert host["status_detail"] == refusal.detail  # the host shows why
    assert host["realised_revision"] == realised
    assert _get(client, tenant, f"/v1/ports/{p['id']}")["status"] == "active"

    client.patch(f"/v1/ports/{p['id']}", json={"name": "b"}, headers=tenant.headers)
    bus.settle()  # a document it can apply clears the host's error
    assert _host(client, "h1")["status_detail"] is None
    assert _get(client, tenant, f"/v1/ports/{p['id']}")["status"] == "active"


def test_security_groups_are_sent_realised_and_follow_members(client, tenant, bus) -> None:  # type: ignore[no-untyped-def]
    bus.agent("h1", "198.18.0.11", SUPPORTED_SECTIONS)
    bus.agent("h2", "198.18.0.12", SUPPORTED_SECTIONS)
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    web = h.group(client, tenant, v["id"], name="web")
    p1 = h.port(client, tenant, s["id"], host="h1", netns="a")  # the default group
    bus.settle()
    default = p1["security_group_ids"][0]
    assert _get(client, tenant, f"/v1/security-groups/{default}")["status"] == "active"
    assert _get(client, tenant, f"/v1/security-groups/{web['id']}")["status"] == "active"
    (g,) = bus.last_doc("h1")["security_groups"]
    assert g["id"] == default and g["members"] == [p1["ip_address"]]
    assert bus.last_doc("h1")["ports"][0]["security_group_ids"] == [default]

    # a rule: the group is pending until every host of its ports realised it
    h.port(client, tenant, s["id"], host="h2", netns="b", security_group_ids=[web["id"]])
    bus.settle()
    rule = h.rule(client, tenant, web["id"], port_min=22, port_max=22, remote_group_id=default)
    assert _get(client, tenant, f"/v1/security-groups/{web['id']}")["status"] == "pending"
    bus.settle()
    assert _get(client, tenant, f"/v1/security-groups/{web['id']}")["status"] == "active"
    doc = {g["id"]: g for g in bus.last_doc("h2")["security_groups"]}
    ingress = [r["id"] for r in doc[web["id"]]["rules"] if r["direction"] == "ingress"]
    assert ingress == [rule["id"]]  # beside the group's default allow-all egress rules
    assert doc[default]["members"] == [p1["ip_address"]] and doc[default]["rules"] == []

    # a new member of the default group reaches h2, which holds it as a remote group
    before = len([d for d in bus.applies if d["host"] == "h2"])
    p3 = h.port(client, tenant, s["id"], host="h1", netns="c")
    bus.settle()
    assert len([d for d in bus.applies if d["host"] == "h2"]) > before
    doc = {g["id"]: g for g in bus.last_doc("h2")["security_groups"]}
    assert doc[default]["members"] == sorted([p1["ip_address"], p3["ip_address"]])


def test_network_acls_are_sent_to_the_subnet_hosts_and_realised(client, tenant, bus) -> None:  # type: ignore[no-untyped-def]
    bus.agent("h1", "198.18.0.11", SUPPORTED_SECTIONS)
    bus.agent("h2", "198.18.0.12", SUPPORTED_SECTIONS)
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    h.port(client, tenant, s["id"], host="h1", netns="a")
    h.port(client, tenant, s["id"], host="h2", netns="b")
    acl = h.create(client, "/v1/network-acls", tenant, vpc_id=v["id"])
    url = f"/v1/network-acls/{acl['id']}"
    r = client.patch(
        f"/v1/subnets/{s['id']}", json={"network_acl_id": acl["id"]}, headers=tenant.headers
    )
    assert r.status_code == 200
    bus.settle()
    assert _get(client, tenant, url)["status"] == "active"
    for host in ("h1", "h2"):
        (doc,) = bus.last_doc(host)["network_acls"]
        assert (doc["id"], doc["subnet_ids"], doc["entries"]) == (acl["id"], [s["id"]], [])
    h.create(
        client, "/v1/network-acl-entries", tenant, network_acl_id=acl["id"], rule_number=10,
        direction="ingress", action="deny", protocol="tcp", port_min=22, cidr="10.0.0.0/8",
    )  # fmt: skip
    assert _get(client, tenant, url)["status"] == "pending"
    bus.settle()
    assert _get(client, tenant, url)["status"] == "active"
    (doc,) = bus.last_doc("h2")["network_acls"]
    assert [(e["rule_number"], e["action"], e["port_min"]) for e in doc["entries"]] == [
        (10, "deny", 22)
    ]


def test_incremental_documents_and_partial_reports(client, tenant, bus) -> None:  # type: ignore[no-untyped-def]
    """An agent that takes deltas gets its whole document once, then only what changed,
    and answers with only the results that changed; statuses stay right throughout."""
    bus.agent("h1", "198.18.0.11", SUPPORTED_SECTIONS)
    bus.agent("h2", "198.18.0.12", SUPPORTED_SECTIONS)
    assert _host(client, "h1")["protocol_version"] == docdelta.PROTOCOL
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    ports = [h.port(client, tenant, s["id"], host="h1", netns=f"n{i}") for i in range(4)]
    bus.settle()
    assert all(_get(client, tenant, f"/v1/ports/{p['id']}")["status"] == "active" for p in ports)
    # one more port on h1: a delta naming it alone, a report naming it alone
    sent, reported = len(bus.messages), len(bus.reports)
    extra = h.port(client, tenant, s["id"], host="h1", netns="x")
    bus.settle()
    to_h1 = [m for m in bus.messages[sent:] if m["host"] == "h1"]
    assert to_h1 and all(docdelta.is_delta(m) for m in to_h1)
    assert [p["id"] for p in to_h1[0]["changes"]["ports"]["set"]] == [extra["id"]]
    partial = [r for r in bus.reports[reported:] if r.host == "h1"]
    assert partial and all(r.partial for r in partial)
    assert extra["id"] in {r.id for r in partial[0].results}
    assert not {p["id"] for p in ports} & {r.id for r in partial[0].results}
    for p in [*ports, extra]:  # the rows of unreported ports were kept
        assert _get(client, tenant, f"/v1/ports/{p['id']}")["status"] == "active"
    # the patched document is the whole one the controller compiled
    assert {p["id"] for p in bus.last_doc("h1")["ports"]} == {p["id"] for p in [*ports, extra]}
    # a removed port: a delta removing it, a report naming it as removed
    reported = len(bus.reports)
    assert client.delete(f"/v1/ports/{ports[0]['id']}", headers=tenant.headers).status_code == 204
    bus.settle()
    removed = [r for r in bus.reports[reported:] if r.host == "h1" and r.removed]
    assert removed and removed[0].removed == [ports[0]["id"]] and removed[0].partial
    assert ports[0]["id"] not in {p["id"] for p in bus.last_doc("h1")["ports"]}


def test_a_delta_on_another_base_falls_back_to_the_whole_document(client, tenant, bus) -> None:  # type: ignore[no-untyped-def]
    service = bus.agent("h1", "198.18.0.11", SUPPORTED_SECTIONS)
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    h.port(client, tenant, s["id"], host="h1", netns="a")
    bus.settle()
    service.documents.last = None  # as if the last document had been lost on the way
    applied = len(service.agent.documents)
    sent = len(bus.messages)
    p = h.port(client, tenant, s["id"], host="h1", netns="b")
    bus.settle()
    to_h1 = [m for m in bus.messages[sent:] if m["host"] == "h1"]
    assert docdelta.is_delta(to_h1[0]) and not docdelta.is_delta(to_h1[-1])  # the fallback
    assert len(service.agent.documents) == applied + 1  # the delta itself was not applied
    assert p["id"] in {x.id for x in service.agent.documents[-1].ports}
    assert not bus.reports[-1].partial  # a whole document gets a full report
    assert _get(client, tenant, f"/v1/ports/{p['id']}")["status"] == "active"


def test_an_agent_without_deltas_gets_whole_documents_only(client, tenant, bus) -> None:  # type: ignore[no-untyped-def]
    bus.agent("h1", "198.18.0.11", SUPPORTED_SECTIONS, deltas=False)
    assert _host(client, "h1")["protocol_version"] == 1
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    for i in range(3):
        h.port(client, tenant, s["id"], host="h1", netns=f"n{i}")
        bus.settle()
    assert not any(docdelta.is_delta(m) for m in bus.messages)
    assert not any(r.partial for r in bus.reports)


def test_full_reports_are_what_an_older_controller_reads(client, tenant, bus) -> None:  # type: ignore[no-untyped-def]
    """An agent answering a whole document (as an older controller sends) sends a report
    with no field an older Report lacks: that one forbids unknown fields."""
    bus.agent("h1", "198.18.0.11", SUPPORTED_SECTIONS)
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    h.port(client, tenant, s["id"], host="h1", netns="a")
    bus.settle()
    older = set(Report.model_fields) - {"partial", "removed"}
    whole = [r for r, m in zip(bus.raw_reports, bus.reports, strict=True) if not m.partial]
    assert whole and all(set(r) <= older for r in whole)


def test_a_document_sent_again_after_a_lost_report_is_answered_again(  # type: ignore[no-untyped-def]
    client, tenant, bus
) -> None:
    """The controller that took a report died before recording it: the host's revision
    looks unrealised, and the sweep sends the same document again. The agent, which has
    realised it, skips the apply but answers again, whole; the port becomes active."""
    from datetime import timedelta

    import sqlalchemy as sa

    from models import HostStateRow
    from models.base import utcnow
    from models.db import engine_for
    from workers.agent.simulated import SimAgent

    service = AgentService(
        host="h1",
        vtep_ip="198.18.0.11",
        roles=["compute", "network"],
        agent=SimAgent(),  # type: ignore[arg-type]  # the real skip rule, no kernel
        app=bus,  # type: ignore[arg-type]
        sections=SUPPORTED_SECTIONS,
    )
    bus.agents["h1"] = service
    service.heartbeat(first=True)
    bus.run()
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    h.port(client, tenant, s["id"], host="h1", netns="a")
    bus.settle()
    late = h.port(client, tenant, s["id"], host="h1", netns="b")
    bus.lose = {REPORT}
    tasks.sweep()
    bus.run()  # applied; its report is lost
    bus.lose = set()
    assert [name for name, _, _ in bus.lost] == [REPORT]
    assert _get(client, tenant, f"/v1/ports/{late['id']}")["status"] == "pending"
    engine = engine_for(client.app.state.settings.database_url)
    with engine.begin() as conn:  # compiled longer ago than REPUSH_AFTER
        older = utcnow() - (tasks.REPUSH_AFTER + timedelta(seconds=1))
        conn.execute(sa.update(HostStateRow).values(updated_at=older))
    syncs, reports = service.agent.syncs, len(bus.reports)  # type: ignore[attr-defined]
    bus.settle()
    assert service.agent.syncs == syncs  # type: ignore[attr-defined]  # nothing applied again
    assert [r.partial for r in bus.reports[reports:]] == [False]
    assert _get(client, tenant, f"/v1/ports/{late['id']}")["status"] == "active"
