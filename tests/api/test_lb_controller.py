"""Load balancers through the controller against a real DB (issue 9): the
`load_balancers` section on the scheduled network host, the VIP subnet carried there,
statuses from reports (provisioning per object, operating from measurements), and hosts
without the section."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api import helpers as h
from tests.api.test_controller import _doc, sent  # noqa: F401  (the fixture)
from tests.api.test_l3 import _age
from tests.conftest import Tenant
from workers.bus import APPLY
from workers.controller import tasks
from workers.controller.lb_section import load_balancers_carry
from workers.protocol import SECTIONS, SECTIONS_L2, HostState, Report, ResourceResult

Sent = list[tuple[str, list[Any], dict[str, Any]]]


def _report(state: HostState, operating: dict[str, str] | None = None) -> dict[str, Any]:
    """Everything realised, with the operating statuses given (by id)."""
    operating = operating or {}
    results = [
        ResourceResult(kind="subnet", id=s.id, revision=s.revision, ok=True) for s in state.subnets
    ]
    results += [
        ResourceResult(kind="port", id=p.id, revision=p.revision, ok=True) for p in state.ports
    ]
    revisions = {lb.vip_port_id: lb.vip_port_revision for lb in state.load_balancers}
    for lb in state.load_balancers:
        revisions[lb.id] = lb.revision
        revisions |= {x.id: x.revision for x in lb.listeners}
        for p in lb.pools:
            revisions[p.id] = p.revision
            revisions |= {m.id: m.revision for m in p.members}
            if p.monitor is not None:
                revisions[p.monitor.id] = p.monitor.revision
    for kind, ids in load_balancers_carry(list(state.load_balancers)).items():
        results += [
            ResourceResult(
                kind=kind,  # type: ignore[arg-type]
                id=i,
                revision=revisions[i],
                ok=True,
                operating_status=operating.get(i),  # type: ignore[arg-type]
            )
            for i in sorted(ids)
        ]
    return Report(host=state.host, revision=state.revision, ok=True, results=results).model_dump(
        mode="json"
    )


@pytest.fixture
def tree(client: TestClient, tenant: Tenant, sent: Sent) -> dict[str, Any]:  # noqa: F811
    tasks.heartbeat("net-1", "198.18.0.1", ["network"], first=True, sections=list(SECTIONS))
    tasks.heartbeat("c-1", "198.18.0.2", ["compute"], first=True, sections=list(SECTIONS))
    vpc = h.vpc(client, tenant)
    subnet = h.subnet(client, tenant, vpc["id"])
    backend = h.port(client, tenant, subnet["id"], host="c-1", netns="web")
    lb = h.create(
        client,
        "/v1/load-balancers",
        tenant,
        vip_subnet_id=subnet["id"],
        listeners=[
            {
                "protocol": "TCP",
                "protocol_port": 80,
                "default_pool": {
                    "protocol": "TCP",
                    "lb_algorithm": "ROUND_ROBIN",
                    "members": [{"address": backend["ip_address"], "protocol_port": 8080}],
                    "healthmonitor": {"type": "TCP", "delay": 2, "timeout": 1, "max_retries": 2},
                },
            }
        ],
    )
    return {"lb": lb, "subnet": subnet, "backend": backend}


def test_the_network_host_gets_the_whole_load_balancer(
    client: TestClient,
    tenant: Tenant,
    sent: Sent,  # noqa: F811
    tree: dict[str, Any],
) -> None:
    lb = tree["lb"]
    assert lb["host"] == "net-1"
    tasks.sync_host("net-1")
    doc = _doc(sent, "net-1")
    (state,) = doc.load_balancers
    assert (state.id, state.vip_address, state.subnet_id) == (
        lb["id"],
        lb["vip_address"],
        tree["subnet"]["id"],
    )
    assert state.prefixlen == 24 and state.gateway_ip is None  # no router on the subnet
    (listener,) = state.listeners
    (pool,) = state.pools
    assert listener.default_pool_id == pool.id and pool.monitor is not None
    assert [m.address for m in pool.members] == [tree["backend"]["ip_address"]]
    # the VIP subnet's bridge is carried by the network host; the compute host learns the
    # VIP's MAC behind the network host's VTEP, and the network host the backend's
    assert [s.id for s in doc.subnets] == [tree["subnet"]["id"]]
    assert doc.subnets[0].remote_vteps == ["198.18.0.2"]
    tasks.sync_host("c-1")
    compute = _doc(sent, "c-1")
    assert compute.load_balancers == []
    assert (lb["vip_address"], "198.18.0.1") in {
        (r.ip, r.vtep_ip) for r in compute.subnets[0].remote_ports
    }

    got = client.get(f"/v1/load-balancers/{lb['id']}", headers=tenant.headers).json()
    assert got["provisioning_status"] == "pending"
    member_id = lb["pools"][0]["members"][0]["id"]
    pool_id = lb["pools"][0]["id"]
    tasks.report(_report(doc, {lb["id"]: "DEGRADED", member_id: "OFFLINE", pool_id: "DEGRADED"}))
    got = client.get(f"/v1/load-balancers/{lb['id']}", headers=tenant.headers).json()
    assert (got["provisioning_status"], got["operating_status"]) == ("active", "DEGRADED")
    assert got["revision"] == lb["revision"]  # a measurement is no change of the resource
    member = client.get(f"/v1/pools/{pool_id}/members/{member_id}", headers=tenant.headers)
    assert (member.json()["provisioning_status"], member.json()["operating_status"]) == (
        "active",
        "OFFLINE",
    )
    vip = client.get(f"/v1/ports/{lb['vip_port_id']}", headers=tenant.headers).json()
    assert vip["status"] == "active"

    # a member change: pending until realised, then back ONLINE from the next report
    r = client.patch(
        f"/v1/pools/{pool_id}/members/{member_id}", json={"weight": 5}, headers=tenant.headers
    )
    assert r.json()["provisioning_status"] == "pending"
    tasks.sync_host("net-1")
    newer = _doc(sent, "net-1")
    assert newer.load_balancers[0].pools[0].members[0].weight == 5
    tasks.report(_report(newer, {member_id: "ONLINE", lb["id"]: "ONLINE"}))
    member = client.get(f"/v1/pools/{pool_id}/members/{member_id}", headers=tenant.headers)
    assert (member.json()["provisioning_status"], member.json()["operating_status"]) == (
        "active",
        "ONLINE",
    )


def test_a_host_without_the_section_marks_the_tree_error(
    client: TestClient,
    tenant: Tenant,
    sent: Sent,  # noqa: F811
    tree: dict[str, Any],
) -> None:
    tasks.heartbeat("net-1", "198.18.0.1", ["network"], sections=list(SECTIONS_L2))
    tasks.sync_host("net-1")
    assert _doc(sent, "net-1").load_balancers == []
    lb = tree["lb"]
    got = client.get(f"/v1/load-balancers/{lb['id']}", headers=tenant.headers).json()
    assert got["provisioning_status"] == "error"
    assert "load_balancers" in got["status_detail"]
    listener = lb["listeners"][0]["id"]
    got = client.get(f"/v1/listeners/{listener}", headers=tenant.headers).json()
    assert got["provisioning_status"] == "error"


def test_cascade_delete_takes_the_load_balancer_off_its_host(
    client: TestClient,
    tenant: Tenant,
    sent: Sent,  # noqa: F811
    tree: dict[str, Any],
) -> None:
    lb = tree["lb"]
    tasks.sync_host("net-1")
    assert _doc(sent, "net-1").load_balancers
    r = client.delete(
        f"/v1/load-balancers/{lb['id']}", params={"cascade": "true"}, headers=tenant.headers
    )
    assert r.status_code == 204
    tasks.sync_host("net-1")
    doc = _doc(sent, "net-1")
    assert doc.load_balancers == []
    assert lb["vip_port_id"] not in {p.id for p in doc.ports}


def test_a_load_balancer_leaves_a_network_host_that_went_down(
    client: TestClient,
    tenant: Tenant,
    sent: Sent,  # noqa: F811
    tree: dict[str, Any],
) -> None:
    lb = tree["lb"]
    assert lb["host"] == "net-1"
    tasks.heartbeat("net-2", "198.18.0.3", ["network"], first=True, sections=list(SECTIONS))
    _age(client, "net-1")
    sent.clear()
    tasks.sweep()
    got = client.get(f"/v1/load-balancers/{lb['id']}", headers=tenant.headers).json()
    assert (got["host"], got["provisioning_status"]) == ("net-2", "pending")
    assert got["revision"] > lb["revision"]
    vip = client.get(f"/v1/ports/{lb['vip_port_id']}", headers=tenant.headers).json()
    assert vip["host"] == "net-2"
    docs = {args[0]["host"]: args[0] for name, args, _ in sent if name == APPLY}
    assert [x["id"] for x in docs["net-2"]["load_balancers"]] == [lb["id"]]
    assert docs["net-1"]["load_balancers"] == []
    # the compute host learns the VIP's MAC behind the new host's VTEP
    remote = {(r["ip"], r["vtep_ip"]) for r in docs["c-1"]["subnets"][0]["remote_ports"]}
    assert (lb["vip_address"], "198.18.0.3") in remote
    # realised there: active again, with its whole tree
    tasks.sync_host("net-2")
    tasks.report(_report(_doc(sent, "net-2")))
    got = client.get(f"/v1/load-balancers/{lb['id']}", headers=tenant.headers).json()
    assert got["provisioning_status"] == "active"
    member = lb["pools"][0]["members"][0]["id"]
    m = client.get(f"/v1/pools/{lb['pools'][0]['id']}/members/{member}", headers=tenant.headers)
    assert m.json()["provisioning_status"] == "active"
    # a second sweep, with net-1 still down, moves nothing
    tasks.sweep()
    again = client.get(f"/v1/load-balancers/{lb['id']}", headers=tenant.headers).json()
    assert (again["host"], again["revision"]) == ("net-2", got["revision"])


def test_no_network_host_up_is_an_error_until_one_comes(
    client: TestClient,
    tenant: Tenant,
    sent: Sent,  # noqa: F811
    tree: dict[str, Any],
) -> None:
    lb = tree["lb"]
    _age(client, "net-1")
    tasks.sweep()
    got = client.get(f"/v1/load-balancers/{lb['id']}", headers=tenant.headers).json()
    assert (got["host"], got["provisioning_status"]) == (None, "error")
    assert got["status_detail"] == "no network host is up"
    tasks.heartbeat("net-1", "198.18.0.1", ["network"], sections=list(SECTIONS))
    tasks.sweep()
    got = client.get(f"/v1/load-balancers/{lb['id']}", headers=tenant.headers).json()
    assert (got["host"], got["provisioning_status"]) == ("net-1", "pending")
