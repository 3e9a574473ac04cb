"""Load balancers, listeners, pools, members and health monitors (issue 9): the Octavia
shapes, the fully populated create, cascade delete, and every bad input the issue names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from models import Host
from models.base import utcnow
from models.db import engine_for
from tests.api import helpers as h
from tests.conftest import ADMIN, Tenant

J = dict[str, Any]


def network_host(client: TestClient, name: str, vtep_ip: str) -> None:
    """A registered network host that is up (heard from just now): load balancers, like
    routers, go only to hosts that are up."""
    h.host(client, name, vtep_ip=vtep_ip, roles=["network"])
    with engine_for(client.app.state.settings.database_url).begin() as conn:  # type: ignore[attr-defined]
        conn.execute(sa.update(Host).where(Host.name == name).values(last_heartbeat=utcnow()))


@pytest.fixture
def net(client: TestClient, tenant: Tenant) -> J:
    """A network host, a VPC with two subnets: what a load balancer needs."""
    network_host(client, "net-1", "192.0.2.1")
    vpc = h.vpc(client, tenant)
    return {
        "vpc": vpc,
        "subnet": h.subnet(client, tenant, vpc["id"], "10.0.1.0/24"),
        "other": h.subnet(client, tenant, vpc["id"], "10.0.2.0/24"),
    }


def vips(client: TestClient, tenant: Tenant) -> list[J]:
    """The load balancers' VIP ports (subnets have service ports of their own)."""
    items = client.get("/v1/ports", headers=tenant.headers).json()["items"]
    return [p for p in items if p["device_owner"] == "load_balancer_vip"]


def full_tree(subnet_id: str) -> J:
    """Octavia's fully populated create: an HTTP and a UDP listener, a spare pool."""
    return {
        "vip_subnet_id": subnet_id,
        "name": "web",
        "listeners": [
            {
                "protocol": "HTTP",
                "protocol_port": 80,
                "default_pool": {
                    "protocol": "HTTP",
                    "lb_algorithm": "ROUND_ROBIN",
                    "members": [
                        {"address": "10.0.1.11", "protocol_port": 8080},
                        {"address": "10.0.1.12", "protocol_port": 8080, "weight": 2},
                    ],
                    "healthmonitor": {
                        "type": "HTTP",
                        "delay": 2,
                        "timeout": 1,
                        "max_retries": 2,
                        "url_path": "/health",
                    },
                },
            },
            {
                "protocol": "UDP",
                "protocol_port": 53,
                "default_pool": {
                    "protocol": "UDP",
                    "lb_algorithm": "SOURCE_IP",
                    "members": [{"address": "10.0.1.13", "protocol_port": 5353}],
                },
            },
        ],
        "pools": [{"protocol": "TCP", "lb_algorithm": "LEAST_CONNECTIONS"}],
    }


def test_create_allocates_the_vip_as_a_service_port_on_a_network_host(
    client: TestClient, tenant: Tenant, net: J
) -> None:
    r = client.post(
        "/v1/load-balancers", json={"vip_subnet_id": net["subnet"]["id"]}, headers=tenant.headers
    )
    assert r.status_code == 201, r.text
    lb = r.json()
    assert r.headers["location"].endswith(f"/v1/load-balancers/{lb['id']}")
    assert r.headers["etag"] == f'"{lb["revision"]}"'
    assert lb["host"] == "net-1" and lb["vpc_id"] == net["vpc"]["id"]
    assert lb["provisioning_status"] == "pending" and lb["operating_status"] == "OFFLINE"
    assert lb["listeners"] == [] and lb["pools"] == []
    port = client.get(f"/v1/ports/{lb['vip_port_id']}", headers=tenant.headers).json()
    assert port["ip_address"] == lb["vip_address"]
    assert (port["device_owner"], port["device_id"]) == ("load_balancer_vip", lb["id"])
    # the VIP is the service's: neither changed nor deleted by hand
    h.problem(client.delete(f"/v1/ports/{port['id']}", headers=tenant.headers), 409)
    h.problem(
        client.patch(f"/v1/ports/{port['id']}", json={"name": "x"}, headers=tenant.headers), 409
    )


def test_fixed_vip_address_in_use_is_409_and_outside_is_422(
    client: TestClient, tenant: Tenant, net: J
) -> None:
    sid = net["subnet"]["id"]
    lb = h.load_balancer(client, tenant, sid, vip_address="10.0.1.50")
    assert lb["vip_address"] == "10.0.1.50"
    taken = client.post(
        "/v1/load-balancers",
        json={"vip_subnet_id": sid, "vip_address": "10.0.1.50"},
        headers=tenant.headers,
    )
    p = h.problem(taken, 409)
    assert p["errors"][0]["field"] == "body.vip_address"
    port = h.port(client, tenant, sid)
    taken = client.post(
        "/v1/load-balancers",
        json={"vip_subnet_id": sid, "vip_address": port["ip_address"]},
        headers=tenant.headers,
    )
    h.problem(taken, 409)
    outside = client.post(
        "/v1/load-balancers",
        json={"vip_subnet_id": sid, "vip_address": "10.0.9.5"},
        headers=tenant.headers,
    )
    assert h.problem(outside, 422)["errors"][0]["field"] == "body.vip_address"
    listed = client.get("/v1/load-balancers", headers=tenant.headers).json()["items"]
    assert [x["id"] for x in listed] == [lb["id"]]


def test_fully_populated_create_returns_every_id(
    client: TestClient, tenant: Tenant, net: J
) -> None:
    lb = h.create(client, "/v1/load-balancers", tenant, **full_tree(net["subnet"]["id"]))
    http, udp = lb["listeners"]
    assert (http["protocol"], http["protocol_port"], udp["protocol"]) == ("HTTP", 80, "UDP")
    pools = {p["id"]: p for p in lb["pools"]}
    assert len(pools) == 3 and {http["default_pool_id"], udp["default_pool_id"]} <= set(pools)
    web = pools[http["default_pool_id"]]
    assert sorted(m["address"] for m in web["members"]) == ["10.0.1.11", "10.0.1.12"]
    mon = client.get(f"/v1/health-monitors/{web['healthmonitor_id']}", headers=tenant.headers)
    assert mon.status_code == 200
    assert (mon.json()["http_method"], mon.json()["url_path"], mon.json()["expected_codes"]) == (
        "GET",
        "/health",
        "200",
    )
    for m in web["members"]:
        got = client.get(f"/v1/pools/{web['id']}/members/{m['id']}", headers=tenant.headers)
        assert got.status_code == 200 and got.json()["subnet_id"] == net["subnet"]["id"]
    pool = client.get(f"/v1/pools/{web['id']}", headers=tenant.headers).json()
    assert pool["listener_ids"] == [http["id"]] and pool["healthmonitor_id"]
    listeners = client.get(
        "/v1/listeners", params={"load_balancer_id": lb["id"]}, headers=tenant.headers
    ).json()["items"]
    assert {x["id"] for x in listeners} == {http["id"], udp["id"]}
    again = client.get(f"/v1/load-balancers/{lb['id']}", headers=tenant.headers).json()
    assert again == lb


@pytest.mark.parametrize(
    ("path", "value", "status", "field"),
    [
        (("listeners", 0, "default_pool", "protocol"), "TCP", 422, "protocol"),
        (("listeners", 0, "default_pool", "members", 0, "address"), "10.0.2.5", 422, "address"),
        (("listeners", 0, "default_pool", "healthmonitor", "timeout"), 5, 422, "timeout"),
        (("listeners", 1, "protocol_port"), 53, 201, None),  # UDP 53 beside HTTP 80: fine
        (("listeners", 1, "protocol"), "TCP", 422, "protocol"),  # TCP listener, UDP pool
        (("listeners", 0, "default_pool", "members", 1, "address"), "10.0.1.11", 409, None),
        (("listeners", 0, "default_pool", "members", 0, "weight"), 257, 422, "weight"),
    ],
)
def test_a_bad_tree_is_refused_whole(
    client: TestClient,
    tenant: Tenant,
    net: J,
    path: tuple[Any, ...],
    value: Any,
    status: int,
    field: str | None,
) -> None:
    body = full_tree(net["subnet"]["id"])
    node: Any = body
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    r = client.post("/v1/load-balancers", json=body, headers=tenant.headers)
    if status == 201:
        assert r.status_code == 201, r.text
        return
    p = h.problem(r, status)
    if field is not None:
        assert p["errors"][0]["field"].endswith(field), p
    for kind in ("load-balancers", "listeners", "pools", "health-monitors"):
        assert client.get(f"/v1/{kind}", headers=tenant.headers).json()["items"] == []
    assert vips(client, tenant) == []


def test_two_listeners_on_one_port_conflict(client: TestClient, tenant: Tenant, net: J) -> None:
    lb = h.load_balancer(client, tenant, net["subnet"]["id"])
    first = h.listener(client, tenant, lb["id"], "TCP", 443)
    for protocol in ("TCP", "HTTP"):  # HTTP takes a TCP socket too
        r = client.post(
            "/v1/listeners",
            json={"load_balancer_id": lb["id"], "protocol": protocol, "protocol_port": 443},
            headers=tenant.headers,
        )
        assert first["id"] in h.problem(r, 409)["detail"]
    h.listener(client, tenant, lb["id"], "UDP", 443)
    other = h.load_balancer(client, tenant, net["subnet"]["id"])
    h.listener(client, tenant, other["id"], "TCP", 443)  # another VIP: its own ports


def test_pool_protocol_must_match_its_listener(client: TestClient, tenant: Tenant, net: J) -> None:
    lb = h.load_balancer(client, tenant, net["subnet"]["id"])
    lst = h.listener(client, tenant, lb["id"], "HTTP", 80)
    r = client.post(
        "/v1/pools",
        json={"listener_id": lst["id"], "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN"},
        headers=tenant.headers,
    )
    assert h.problem(r, 422)["errors"][0]["field"] == "body.protocol"
    tcp_pool = h.pool(client, tenant, "TCP", load_balancer_id=lb["id"])
    r = client.patch(
        f"/v1/listeners/{lst['id']}",
        json={"default_pool_id": tcp_pool["id"]},
        headers=tenant.headers,
    )
    assert h.problem(r, 422)["errors"][0]["field"] == "body.default_pool_id"
    pool = h.pool(client, tenant, "HTTP", listener_id=lst["id"])
    assert pool["load_balancer_id"] == lb["id"] and pool["listener_ids"] == [lst["id"]]
    got = client.get(f"/v1/listeners/{lst['id']}", headers=tenant.headers).json()
    assert got["default_pool_id"] == pool["id"]
    # a listener has one default pool
    r = client.post(
        "/v1/pools",
        json={"listener_id": lst["id"], "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN"},
        headers=tenant.headers,
    )
    h.problem(r, 409)
    # a pool in use by a listener is not deleted under it
    r = client.delete(f"/v1/pools/{pool['id']}", headers=tenant.headers)
    assert h.problem(r, 409)["blocking_resources"] == [{"type": "listener", "id": lst["id"]}]
    r = client.patch(
        f"/v1/listeners/{lst['id']}", json={"default_pool_id": None}, headers=tenant.headers
    )
    assert r.status_code == 200 and r.json()["default_pool_id"] is None
    assert client.delete(f"/v1/pools/{pool['id']}", headers=tenant.headers).status_code == 204


def test_members_are_checked_against_their_subnet(
    client: TestClient, tenant: Tenant, make_tenant: Callable[..., Tenant], net: J
) -> None:
    lb = h.load_balancer(client, tenant, net["subnet"]["id"])
    pool = h.pool(client, tenant, load_balancer_id=lb["id"])
    path = f"/v1/pools/{pool['id']}/members"

    def post(**body: Any) -> Any:
        return client.post(path, json={"protocol_port": 80, **body}, headers=tenant.headers)

    r = post(address="10.0.1.20")
    assert r.status_code == 201 and r.headers["location"].endswith(f"{path}/{r.json()['id']}")
    assert r.json()["subnet_id"] == net["subnet"]["id"] and r.json()["weight"] == 1
    assert h.problem(post(address="10.0.2.20"), 422)["errors"][0]["field"] == "body.address"
    assert post(address="10.0.2.20", subnet_id=net["other"]["id"]).status_code == 201
    assert h.problem(post(address="10.0.1.20"), 409)
    assert h.problem(post(address="10.0.1.255"), 422)
    assert h.problem(post(address="10.0.1.21", weight=257), 422)
    assert post(address="10.0.1.21", weight=0).status_code == 201
    # another tenant's subnet is a 404, whatever the address
    other = make_tenant("beta")
    their = h.subnet(client, other, h.vpc(client, other)["id"], "10.0.1.0/24")
    r = post(address="10.0.1.30", subnet_id=their["id"])
    assert h.problem(r, 404)["detail"] == f"subnet {their['id']} not found"
    # another VPC of the same tenant: the LB cannot reach it
    mine = h.subnet(client, tenant, h.vpc(client, tenant, "10.8.0.0/16")["id"], "10.8.1.0/24")
    r = post(address="10.8.1.30", subnet_id=mine["id"])
    assert h.problem(r, 422)["errors"][0]["field"] == "body.subnet_id"
    items = client.get(path, headers=tenant.headers).json()["items"]
    assert sorted(m["address"] for m in items) == ["10.0.1.20", "10.0.1.21", "10.0.2.20"]


def test_member_update_drains_and_bumps_the_revision(
    client: TestClient, tenant: Tenant, net: J
) -> None:
    lb = h.load_balancer(client, tenant, net["subnet"]["id"])
    pool = h.pool(client, tenant, load_balancer_id=lb["id"])
    m = h.member(client, tenant, pool["id"], "10.0.1.20")
    url = f"/v1/pools/{pool['id']}/members/{m['id']}"
    r = client.patch(
        url,
        json={"admin_state_up": False},
        headers={**tenant.headers, "If-Match": f'"{m["revision"]}"'},
    )
    assert r.status_code == 200 and r.json()["admin_state_up"] is False
    assert r.json()["revision"] == m["revision"] + 1
    r = client.patch(url, json={"address": "10.0.1.21"}, headers=tenant.headers)
    assert h.problem(r, 422)["errors"][0]["field"] == "body.address"
    # a member is found only under its own pool
    other = h.pool(client, tenant, load_balancer_id=lb["id"])
    h.problem(client.get(f"/v1/pools/{other['id']}/members/{m['id']}", headers=tenant.headers), 404)


def test_health_monitor_rules(client: TestClient, tenant: Tenant, net: J) -> None:
    lb = h.load_balancer(client, tenant, net["subnet"]["id"])
    tcp = h.pool(client, tenant, load_balancer_id=lb["id"])
    udp = h.pool(client, tenant, "UDP", load_balancer_id=lb["id"])

    def post(pool_id: str, **body: Any) -> Any:
        body = {"type": "TCP", "delay": 5, "timeout": 3, "max_retries": 2, **body}
        return client.post(
            "/v1/health-monitors", json={"pool_id": pool_id, **body}, headers=tenant.headers
        )

    p = h.problem(post(tcp["id"], timeout=6), 422)
    assert p["errors"][0]["field"] == "body.timeout" and "delay" in p["detail"]
    assert h.problem(post(tcp["id"], url_path="/x"), 422)["errors"][0]["field"] == "body.url_path"
    assert h.problem(post(tcp["id"], type="UDP-CONNECT"), 422)["errors"][0]["field"] == "body.type"
    assert h.problem(post(udp["id"]), 422)["errors"][0]["field"] == "body.type"
    # PING: haproxy's external check on TCP and HTTP pools, the agent's ICMP prober on UDP
    # ones; HTTP's own fields make no sense for it
    assert h.problem(post(udp["id"], type="HTTP"), 422)["errors"][0]["field"] == "body.type"
    ping_pool = h.pool(client, tenant, load_balancer_id=lb["id"])
    assert post(ping_pool["id"], type="PING").status_code == 201
    udp_ping = h.pool(client, tenant, "UDP", load_balancer_id=lb["id"])
    bad = post(udp_ping["id"], type="PING", url_path="/x")
    assert h.problem(bad, 422)["errors"][0]["field"] == "body.url_path"
    assert post(udp_ping["id"], type="PING").status_code == 201
    assert h.problem(post(tcp["id"], type="HTTP", expected_codes="2000"), 422)
    assert h.problem(post(tcp["id"], type="HTTP", expected_codes="204-200"), 422)
    assert h.problem(post(tcp["id"], max_retries=11), 422)
    mon = post(tcp["id"], type="HTTP", expected_codes="200-204", http_method="HEAD")
    assert mon.status_code == 201, mon.text
    assert mon.json()["max_retries_down"] == 3 and mon.json()["url_path"] == "/"
    h.problem(post(tcp["id"]), 409)  # one monitor per pool
    assert post(udp["id"], type="UDP-CONNECT").status_code == 201
    url = f"/v1/health-monitors/{mon.json()['id']}"
    r = client.patch(url, json={"delay": 2}, headers=tenant.headers)  # timeout 3 > delay 2
    assert h.problem(r, 422)["errors"][0]["field"] == "body.timeout"
    r = client.patch(url, json={"delay": 2, "timeout": 2}, headers=tenant.headers)
    assert r.status_code == 200 and (r.json()["delay"], r.json()["timeout"]) == (2, 2)
    h.problem(client.patch(url, json={"type": "TCP"}, headers=tenant.headers), 422)
    # a pool's monitor and members go with the pool
    h.member(client, tenant, tcp["id"], "10.0.1.40")
    assert client.delete(f"/v1/pools/{tcp['id']}", headers=tenant.headers).status_code == 204
    h.problem(client.get(url, headers=tenant.headers), 404)


def test_delete_needs_cascade_and_cascade_removes_the_tree(
    client: TestClient, tenant: Tenant, net: J
) -> None:
    lb = h.create(client, "/v1/load-balancers", tenant, **full_tree(net["subnet"]["id"]))
    url = f"/v1/load-balancers/{lb['id']}"
    p = h.problem(client.delete(url, headers=tenant.headers), 409)
    named = {(b["type"], b["id"]) for b in p["blocking_resources"]}
    assert named == {("listener", x["id"]) for x in lb["listeners"]} | {
        ("pool", x["id"]) for x in lb["pools"]
    }
    # the subnet is held by the VIP and the members
    p = h.problem(client.delete(f"/v1/subnets/{net['subnet']['id']}", headers=tenant.headers), 409)
    assert {"type": "load_balancer", "id": lb["id"]} in p["blocking_resources"]
    assert any(b["type"] == "member" for b in p["blocking_resources"])
    r = client.delete(url, params={"cascade": "true"}, headers=tenant.headers)
    assert r.status_code == 204, r.text
    for kind in ("load-balancers", "listeners", "pools", "health-monitors"):
        assert client.get(f"/v1/{kind}", headers=tenant.headers).json()["items"] == []
    assert vips(client, tenant) == []
    h.problem(client.get(f"/v1/ports/{lb['vip_port_id']}", headers=tenant.headers), 404)
    for sid in (net["subnet"]["id"], net["other"]["id"]):
        assert client.delete(f"/v1/subnets/{sid}", headers=tenant.headers).status_code == 204


def test_an_empty_load_balancer_deletes_without_cascade(
    client: TestClient, tenant: Tenant, net: J
) -> None:
    lb = h.load_balancer(client, tenant, net["subnet"]["id"])
    r = client.delete(f"/v1/load-balancers/{lb['id']}", headers=tenant.headers)
    assert r.status_code == 204
    assert vips(client, tenant) == []


def test_quotas_count_the_whole_tree(
    client: TestClient, make_tenant: Callable[..., Tenant]
) -> None:
    h.host(client, "net-1", vtep_ip="192.0.2.1", roles=["network"])
    t = make_tenant("small", load_balancers=1, members=2)
    sid = h.subnet(client, t, h.vpc(client, t)["id"])["id"]
    r = client.post("/v1/load-balancers", json=full_tree(sid), headers=t.headers)
    assert h.problem(r, 409)["quota"] == {"resource": "members", "limit": 2, "used": 0}
    lb = h.load_balancer(client, t, sid)
    r = client.post("/v1/load-balancers", json={"vip_subnet_id": sid}, headers=t.headers)
    assert h.problem(r, 409)["quota"]["resource"] == "load_balancers"
    pool = h.pool(client, t, load_balancer_id=lb["id"])
    h.member(client, t, pool["id"], "10.0.1.5")
    h.member(client, t, pool["id"], "10.0.1.6")
    r = client.post(
        f"/v1/pools/{pool['id']}/members",
        json={"address": "10.0.1.7", "protocol_port": 80},
        headers=t.headers,
    )
    assert h.problem(r, 409)["quota"]["resource"] == "members"
    quotas = client.get(f"/v1/tenants/{t.id}/quotas", headers=ADMIN).json()
    assert (quotas["load_balancers"], quotas["listeners"], quotas["health_monitors"]) == (
        1,
        50,
        50,
    )


def test_other_tenants_see_nothing(
    client: TestClient, tenant: Tenant, make_tenant: Callable[..., Tenant], net: J
) -> None:
    lb = h.create(client, "/v1/load-balancers", tenant, **full_tree(net["subnet"]["id"]))
    other = make_tenant("beta")
    pool = lb["pools"][0]
    for path in (
        f"/v1/load-balancers/{lb['id']}",
        f"/v1/listeners/{lb['listeners'][0]['id']}",
        f"/v1/pools/{pool['id']}",
        f"/v1/pools/{pool['id']}/members",
        f"/v1/pools/{pool['id']}/members/{pool['members'][0]['id']}",
        f"/v1/health-monitors/{pool['healthmonitor_id']}",
    ):
        h.problem(client.get(path, headers=other.headers), 404)
        assert client.get(path, headers=ADMIN).status_code == 200
    r = client.post(
        "/v1/listeners",
        json={"load_balancer_id": lb["id"], "protocol": "TCP", "protocol_port": 81},
        headers=other.headers,
    )
    h.problem(r, 404)
    for kind in ("load-balancers", "listeners", "pools", "health-monitors"):
        assert client.get(f"/v1/{kind}", headers=other.headers).json()["items"] == []


def test_no_network_host_leaves_the_load_balancer_unscheduled(
    client: TestClient, tenant: Tenant
) -> None:
    sid = h.subnet(client, tenant, h.vpc(client, tenant)["id"])["id"]
    lb = h.load_balancer(client, tenant, sid)
    assert lb["host"] is None and lb["provisioning_status"] == "pending"


def test_load_balancers_spread_over_network_hosts(
    client: TestClient, tenant: Tenant, net: J
) -> None:
    network_host(client, "net-2", "192.0.2.2")
    hosts = [h.load_balancer(client, tenant, net["subnet"]["id"])["host"] for _ in range(4)]
    assert sorted(hosts) == ["net-1", "net-1", "net-2", "net-2"]
    r = client.delete("/v1/hosts/" + _host_id(client, "net-1"), headers=ADMIN)
    blocking = h.problem(r, 409)["blocking_resources"]
    assert {b["type"] for b in blocking} >= {"load_balancer"}


def _host_id(client: TestClient, name: str) -> str:
    items = client.get("/v1/hosts", headers=ADMIN).json()["items"]
    return str(next(x["id"] for x in items if x["name"] == name))
