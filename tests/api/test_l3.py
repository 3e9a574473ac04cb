"""L3 API rules (issue 7): floating IP association, router gateways, scheduling and
failover of routers between network hosts. Each rule is a clear 4xx that changes
nothing, or a status that says what is wrong (never an endless `pending`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from models import Host
from models.base import utcnow
from models.db import engine_for
from models.host import HEARTBEAT_TIMEOUT
from tests.api import helpers as h
from tests.conftest import ADMIN, Tenant
from workers.bus import APPLY
from workers.controller import tasks
from workers.protocol import SECTIONS

ALL = list(SECTIONS)


def routed(c: TestClient, t: Tenant, ext_id: str | None) -> dict[str, Any]:
    v = h.vpc(c, t)
    s = h.subnet(c, t, v["id"])
    r = h.router(c, t, v["id"], external_network_id=ext_id)
    h.attach(c, t, r["id"], s["id"])
    p = h.port(c, t, s["id"])
    q = h.port(c, t, s["id"])
    return {"vpc": v, "subnet": s, "router": r, "p": p, "q": q}


def test_fip_on_a_port_without_a_router_names_the_missing_link(
    client: TestClient, tenant: Tenant
) -> None:
    ext = h.external_network(client)
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    p = h.port(client, tenant, s["id"])
    f = h.floating_ip(client, tenant, ext["id"])
    body = h.problem(
        client.patch(
            f"/v1/floating-ips/{f['id']}", json={"port_id": p["id"]}, headers=tenant.headers
        ),
        409,
    )
    assert s["id"] in body["detail"] and "not attached to a router" in body["detail"]
    # a router on the subnet, but with no gateway on the FIP's network: named too
    r = h.router(client, tenant, v["id"])
    h.attach(client, tenant, r["id"], s["id"])
    body = h.problem(
        client.patch(
            f"/v1/floating-ips/{f['id']}", json={"port_id": p["id"]}, headers=tenant.headers
        ),
        409,
    )
    assert r["id"] in body["detail"] and ext["id"] in body["detail"]
    got = client.get(f"/v1/floating-ips/{f['id']}", headers=tenant.headers).json()
    assert got["port_id"] is None and got["revision"] == f["revision"]  # nothing changed


def test_fip_to_another_tenants_port_is_404(
    client: TestClient, make_tenant: Callable[..., Tenant]
) -> None:
    a, b = make_tenant("a"), make_tenant("b")
    ext = h.external_network(client)
    theirs = routed(client, b, ext["id"])
    f = h.floating_ip(client, a, ext["id"])
    h.problem(
        client.patch(
            f"/v1/floating-ips/{f['id']}", json={"port_id": theirs["p"]["id"]}, headers=a.headers
        ),
        404,
    )
    h.problem(
        client.post(
            "/v1/floating-ips",
            json={"external_network_id": ext["id"], "port_id": theirs["p"]["id"]},
            headers=a.headers,
        ),
        404,
    )


def test_moving_a_fip_is_one_patch(client: TestClient, tenant: Tenant) -> None:
    ext = h.external_network(client)
    net = routed(client, tenant, ext["id"])
    f = h.floating_ip(client, tenant, ext["id"], port_id=net["p"]["id"])
    r = client.patch(
        f"/v1/floating-ips/{f['id']}", json={"port_id": net["q"]["id"]}, headers=tenant.headers
    )
    assert r.status_code == 200, r.text
    moved = r.json()
    assert moved["port_id"] == net["q"]["id"]
    assert moved["fixed_ip_address"] == net["q"]["ip_address"]
    assert moved["router_id"] == net["router"]["id"] and moved["address"] == f["address"]
    assert moved["revision"] == f["revision"] + 1


def test_gateway_overlapping_an_attached_subnet_is_409(client: TestClient, tenant: Tenant) -> None:
    ext = h.external_network(client, cidr="10.0.0.0/16", gateway_ip="10.0.0.1")
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"], "10.0.1.0/24")
    r = h.router(client, tenant, v["id"])
    h.attach(client, tenant, r["id"], s["id"])
    url = f"/v1/routers/{r['id']}"
    body = h.problem(
        client.patch(url, json={"external_network_id": ext["id"]}, headers=tenant.headers), 409
    )
    assert ext["id"] in body["detail"] and s["id"] in body["detail"]
    got = client.get(url, headers=tenant.headers).json()
    assert got["external_network_id"] is None and got["external_ip"] is None
    # the other way round: a router with that gateway refuses the overlapping subnet
    r2 = h.router(client, tenant, v["id"], external_network_id=ext["id"])
    s2 = h.subnet(client, tenant, v["id"], "10.0.2.0/24")
    body = h.problem(
        client.post(
            f"/v1/routers/{r2['id']}/interfaces",
            json={"subnet_id": s2["id"]},
            headers=tenant.headers,
        ),
        409,
    )
    assert s2["id"] in body["detail"]
    assert client.get(f"/v1/routers/{r2['id']}", headers=tenant.headers).json()["subnet_ids"] == []


def _age(client: TestClient, host: str) -> None:
    """Make `host` miss its heartbeats (as if it died HEARTBEAT_TIMEOUT ago)."""
    with engine_for(client.app.state.settings.database_url).begin() as conn:  # type: ignore[attr-defined]
        conn.execute(
            sa.update(Host)
            .where(Host.name == host)
            .values(last_heartbeat=utcnow() - HEARTBEAT_TIMEOUT - timedelta(seconds=1))
        )


def test_no_network_host_is_an_error_until_one_comes_up(
    client: TestClient, tenant: Tenant, sent: list[tuple[str, list[Any]]]
) -> None:
    v = h.vpc(client, tenant)
    r = h.router(client, tenant, v["id"])
    assert (r["host"], r["status"], r["status_detail"]) == (
        None,
        "error",
        "no network host is up",
    )
    tasks.sweep()  # still nothing up: still an error, not pending
    got = client.get(f"/v1/routers/{r['id']}", headers=tenant.headers).json()
    assert (got["status"], got["status_detail"]) == ("error", "no network host is up")
    tasks.heartbeat("n1", "198.18.0.21", ["compute", "network"], first=True, sections=ALL)
    tasks.sweep()
    got = client.get(f"/v1/routers/{r['id']}", headers=tenant.headers).json()
    assert got["host"] == "n1" and got["status"] == "pending"


def test_a_router_leaves_a_host_that_went_down_for_the_least_loaded_up_one(
    client: TestClient, tenant: Tenant, sent: list[tuple[str, list[Any]]]
) -> None:
    for name, vtep in (("n1", "198.18.0.21"), ("n2", "198.18.0.22"), ("n3", "198.18.0.23")):
        tasks.heartbeat(name, vtep, ["compute", "network"], first=True, sections=ALL)
    ext = h.external_network(client)
    net = routed(client, tenant, ext["id"])
    r = net["router"]
    assert r["host"] == "n1"
    v2 = h.vpc(client, tenant, "10.1.0.0/16")
    other = h.router(client, tenant, v2["id"])  # n2 now carries one router, n3 none
    assert other["host"] == "n2"
    f = h.floating_ip(client, tenant, ext["id"], port_id=net["p"]["id"])
    leg = net["router"]["id"]

    _age(client, "n1")
    sent.clear()
    tasks.sweep()
    got = client.get(f"/v1/routers/{r['id']}", headers=tenant.headers).json()
    assert got["host"] == "n3" and got["status"] == "pending"
    assert got["revision"] > r["revision"]
    legs = client.get("/v1/ports", params={"device_id": leg}, headers=tenant.headers).json()
    legs = legs["items"]
    assert [p["host"] for p in legs] == ["n3"]
    docs = {args[0]["host"]: args[0] for name, args in sent if name == APPLY}
    assert [x["id"] for x in docs["n3"]["routers"]] == [r["id"]]  # pushed to its new host
    assert docs["n1"]["routers"] == []  # and gone from the dead one's document
    # the FIP follows its router: it waits for n3's report
    fip = client.get(f"/v1/floating-ips/{f['id']}", headers=tenant.headers).json()
    assert fip["status"] == "pending"
    # a second sweep changes nothing (n1 stays down, the router stays on n3)
    tasks.sweep()
    again = client.get(f"/v1/routers/{r['id']}", headers=tenant.headers).json()
    assert (again["host"], again["revision"]) == ("n3", got["revision"])
    # n1 back up: no move back, and a DELETE still needs the interfaces gone first
    tasks.heartbeat("n1", "198.18.0.21", ["compute", "network"], sections=ALL)
    tasks.sweep()
    assert client.get(f"/v1/routers/{r['id']}", headers=tenant.headers).json()["host"] == "n3"
    assert client.get("/v1/hosts", headers=ADMIN).status_code == 200


def test_a_dhcp_service_leaves_a_host_that_went_down_with_its_address_and_mac(
    client: TestClient, tenant: Tenant, sent: list[tuple[str, list[Any]]]
) -> None:
    for name, vtep in (("n1", "198.18.0.21"), ("n2", "198.18.0.22"), ("c3", "198.18.0.23")):
        roles = ["compute", "network"] if name != "c3" else ["compute"]
        tasks.heartbeat(name, vtep, roles, first=True, sections=ALL)
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    assert s["dhcp_host"] == "n1"
    s2 = h.subnet(client, tenant, v["id"], "10.0.2.0/24")
    assert s2["dhcp_host"] == "n2"  # the least loaded
    h.port(client, tenant, s["id"], host="c3")  # a workload host carrying the subnet
    (svc,) = [
        p
        for p in client.get(
            "/v1/ports", params={"subnet_id": s["id"]}, headers=tenant.headers
        ).json()["items"]
        if p["device_owner"] == "network:dhcp"
    ]
    assert svc["host"] == "n1"

    _age(client, "n1")
    sent.clear()
    tasks.sweep()
    got = client.get(f"/v1/subnets/{s['id']}", headers=tenant.headers).json()
    assert (got["dhcp_host"], got["dhcp_address"]) == ("n2", s["dhcp_address"])
    moved = client.get(f"/v1/ports/{svc['id']}", headers=tenant.headers).json()
    assert (moved["host"], moved["ip_address"], moved["mac_address"]) == (
        "n2",
        svc["ip_address"],
        svc["mac_address"],
    )
    assert moved["revision"] > svc["revision"] and moved["status"] == "pending"
    docs = {args[0]["host"]: args[0] for name, args in sent if name == APPLY}
    assert {d["subnet_id"] for d in docs["n2"]["dhcp_dns"]} == {s["id"], s2["id"]}
    assert docs["n1"]["dhcp_dns"] == []  # gone from the dead host's document
    assert "c3" in docs  # its FDB entry for the service port now points at n2
    # a second sweep changes nothing; n1 back up: no move back
    tasks.sweep()
    tasks.heartbeat("n1", "198.18.0.21", ["compute", "network"], sections=ALL)
    tasks.sweep()
    again = client.get(f"/v1/ports/{svc['id']}", headers=tenant.headers).json()
    assert (again["host"], again["revision"]) == ("n2", moved["revision"])
    # with every network host down nothing moves (there is nowhere to go)
    _age(client, "n1")
    _age(client, "n2")
    tasks.sweep()
    assert client.get(f"/v1/subnets/{s['id']}", headers=tenant.headers).json()["dhcp_host"] == "n2"
