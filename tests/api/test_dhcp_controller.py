"""The controller's DHCP/DNS sections against a real DB: what the service host and the
workload hosts are sent, which hosts a name change makes dirty, and the service port's
status on a host that cannot run it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api import helpers as h
from tests.api.test_controller import _doc, sent  # noqa: F401  (the fixture)
from workers.controller import tasks
from workers.protocol import SECTIONS, DhcpLease, DnsRecord, Report, ResourceResult, Route

ALL = list(SECTIONS)


def _names(doc: Any, subnet_id: str) -> set[str]:
    return {r.name for d in doc.dhcp_dns if d.subnet_id == subnet_id for r in d.hosts}


def _dirty(client: Any) -> set[str]:
    from models import HostStateRow
    from models.db import engine_for, session_factory

    maker = session_factory(engine_for(client.app.state.settings.database_url))
    with maker() as session:
        return {r.host for r in session.query(HostStateRow) if r.dirty}


@pytest.fixture
def world(client, tenant, sent) -> dict[str, Any]:  # type: ignore[no-untyped-def]  # noqa: F811
    tasks.heartbeat("net1", "198.18.0.11", ["network"], first=True, sections=ALL)
    tasks.heartbeat("cmp2", "198.18.0.12", ["compute"], first=True, sections=ALL)
    tasks.heartbeat("cmp3", "198.18.0.13", ["compute"], first=True, sections=ALL)
    v = h.vpc(client, tenant, name="prod")
    routes = [{"destination": "192.168.9.0/24", "nexthop": "10.0.1.9"}]
    s = h.subnet(client, tenant, v["id"], dns_nameservers=["203.0.113.53"], host_routes=routes)
    s2 = h.subnet(client, tenant, v["id"], "10.0.2.0/24")
    web = h.port(client, tenant, s["id"], host="cmp2", netns="w", dns_name="Web", ip_config="dhcp")
    db = h.port(client, tenant, s2["id"], host="cmp3", netns="d", dns_name="db")
    other = h.vpc(client, tenant, "10.7.0.0/16", name="other")
    h.port(
        client, tenant, h.subnet(client, tenant, other["id"], "10.7.1.0/24")["id"], dns_name="web"
    )
    return {"vpc": v, "subnet": s, "subnet2": s2, "web": web, "db": db}


def test_the_service_host_gets_leases_names_and_options(client, tenant, sent, world) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    s, web, db = world["subnet"], world["web"], world["db"]
    assert s["dhcp_host"] == "net1"
    sent.clear()
    tasks.sync_host("net1")
    doc = _doc(sent, "net1")
    services = {d.subnet_id: d for d in doc.dhcp_dns}
    svc = services[s["id"]]
    assert (svc.address, svc.cidr, svc.router, svc.mtu) == (
        s["dhcp_address"],
        s["cidr"],
        None,
        1450,
    )
    assert svc.domain == "prod.vpc.internal"
    assert svc.upstreams == ["203.0.113.53"]
    assert svc.host_routes == [Route(destination="192.168.9.0/24", nexthop="10.0.1.9")]
    assert svc.leases == [DhcpLease(mac=web["mac_address"], ip=web["ip_address"], hostname="web")]
    # Names of the whole VPC (both subnets), never of another VPC.
    assert svc.hosts == [
        DnsRecord(name="db.prod.vpc.internal", ip=db["ip_address"]),
        DnsRecord(name="web.prod.vpc.internal", ip=web["ip_address"]),
    ]
    # The host carries the subnet's L2, flooding to the workload host.
    (l2,) = [x for x in doc.subnets if x.id == s["id"]]
    assert l2.remote_vteps == ["198.18.0.12"]
    assert doc.ports == [] and doc.resolvers == []


def test_workload_hosts_get_the_resolver_and_reach_the_service(client, tenant, sent, world) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    s, web = world["subnet"], world["web"]
    sent.clear()
    tasks.sync_host("cmp2")
    doc = _doc(sent, "cmp2")
    (resolver,) = doc.resolvers
    assert (resolver.subnet_id, resolver.nameserver, resolver.domain, resolver.dhcp_ports) == (
        s["id"],
        s["dhcp_address"],
        "prod.vpc.internal",
        [web["id"]],
    )
    (l2,) = doc.subnets
    assert l2.remote_vteps == ["198.18.0.11"]
    assert [p.ip for p in l2.remote_ports] == [s["dhcp_address"]]


def test_name_changes_mark_every_service_host_of_the_vpc(client, tenant, sent, world) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    tasks.sweep()
    assert _dirty(client) == set()
    r = client.patch(
        f"/v1/ports/{world['db']['id']}", json={"dns_name": "database"}, headers=tenant.headers
    )
    assert r.status_code == 200, r.text
    # cmp3 carries the port, net1 serves both subnets' names; cmp2 is untouched.
    assert _dirty(client) == {"net1", "cmp3"}
    sent.clear()
    tasks.sweep()
    doc = _doc(sent, "net1")
    for sid in (world["subnet"]["id"], world["subnet2"]["id"]):
        assert _names(doc, sid) == {"database.prod.vpc.internal", "web.prod.vpc.internal"}
    r = client.patch(
        f"/v1/vpcs/{world['vpc']['id']}",
        json={"dns_domain": "corp.example"},
        headers=tenant.headers,
    )
    assert _dirty(client) == {"net1"}
    sent.clear()
    tasks.sweep()
    names = _names(_doc(sent, "net1"), world["subnet2"]["id"])
    assert names == {"database.corp.example", "web.corp.example"}


def test_service_port_status_follows_the_service_host(client, tenant, sent) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    tasks.heartbeat("old", "198.18.0.21", ["network"], first=True, sections=["subnets", "ports"])
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    (svc,) = [
        p
        for p in client.get(f"/v1/ports?subnet_id={s['id']}", headers=tenant.headers).json()[
            "items"
        ]
        if p["device_owner"] == "network:dhcp"
    ]
    tasks.sync_host("old")
    port = client.get(f"/v1/ports/{svc['id']}", headers=tenant.headers).json()
    assert port["status"] == "error"
    assert "does not support section 'dhcp_dns'" in port["status_detail"]
    # A host that supports it realises it: the port goes active on its report.
    tasks.heartbeat("old", "198.18.0.21", ["network"], sections=ALL)
    doc = _doc(sent, "old")
    (d,) = doc.dhcp_dns
    results = [ResourceResult(kind="subnet", id=s["id"], revision=doc.subnets[0].revision, ok=True)]
    results.append(ResourceResult(kind="port", id=d.port_id, revision=d.port_revision, ok=True))
    tasks.report(
        Report(host="old", revision=doc.revision, ok=True, results=results).model_dump(mode="json")
    )
    assert client.get(f"/v1/ports/{svc['id']}", headers=tenant.headers).json()["status"] == "active"
