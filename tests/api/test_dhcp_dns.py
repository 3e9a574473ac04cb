"""DHCP and DNS through the API (issue 10): subnet enable_dhcp and its service port, port
ip_config and dns_name (unique per VPC), VPC dns_domain; validation names the field and
changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api import helpers as h
from tests.conftest import Tenant


def _service_ports(c: TestClient, t: Tenant, subnet_id: str) -> list[dict[str, Any]]:
    items = c.get(f"/v1/ports?subnet_id={subnet_id}", headers=t.headers).json()["items"]
    return [p for p in items if p["device_owner"] == "network:dhcp"]


def test_defaults_without_a_network_host(client: TestClient, tenant: Tenant) -> None:
    v = h.vpc(client, tenant, name="Prod East_1")
    assert v["dns_domain"] == "prod-east-1.vpc.internal"
    s = h.subnet(client, tenant, v["id"])
    assert s["enable_dhcp"] is True
    assert (s["dhcp_host"], s["dhcp_address"]) == (None, None)  # nowhere to run it yet
    assert s["dns_nameservers"] == []
    p = h.port(client, tenant, s["id"])
    assert (p["ip_config"], p["dns_name"]) == ("static", None)
    unnamed = h.vpc(client, tenant, cidr="10.1.0.0/16")
    assert unnamed["dns_domain"] == f"vpc-{unnamed['id'][:8]}.vpc.internal"


def test_service_port_on_the_least_loaded_network_host(client: TestClient, tenant: Tenant) -> None:
    h.host(client, "net-a", "192.0.2.11", roles=["network"])
    h.host(client, "net-b", "192.0.2.12", roles=["network"])
    h.host(client, "cmp-c", "192.0.2.13", roles=["compute"])
    v = h.vpc(client, tenant)
    a = h.subnet(client, tenant, v["id"], "10.0.1.0/24")
    b = h.subnet(client, tenant, v["id"], "10.0.2.0/24")
    assert {a["dhcp_host"], b["dhcp_host"]} == {"net-a", "net-b"}
    assert a["dhcp_address"] == "10.0.1.254"  # the top of the pool: users fill from below
    assert a["revision"] == 1
    (service,) = _service_ports(client, tenant, a["id"])
    assert (service["ip_address"], service["host"], service["device_id"]) == (
        "10.0.1.254",
        a["dhcp_host"],
        a["id"],
    )
    # The service's own port neither blocks the user nor may be changed or deleted by them.
    r = client.delete(f"/v1/ports/{service['id']}", headers=tenant.headers)
    assert h.problem(r, 409)["detail"].startswith(f"port {service['id']} is the DHCP/DNS")
    r = client.patch(f"/v1/ports/{service['id']}", json={"name": "x"}, headers=tenant.headers)
    h.problem(r, 409)
    assert client.delete(f"/v1/subnets/{a['id']}", headers=tenant.headers).status_code == 204
    assert client.get(f"/v1/ports/{service['id']}", headers=tenant.headers).status_code == 404
    # A host serving a subnet's DHCP is in use.
    r = client.delete("/v1/hosts/" + _host_id(client, b["dhcp_host"]), headers=h.ADMIN)
    assert {"type": "subnet", "id": b["id"]} in h.problem(r, 409)["blocking_resources"]


def _host_id(c: TestClient, name: str) -> str:
    items = c.get(f"/v1/hosts?name={name}", headers=h.ADMIN).json()["items"]
    return str(items[0]["id"])


def test_enable_dhcp_toggles_the_service(client: TestClient, tenant: Tenant) -> None:
    h.host(client, "net-a", roles=["network"])
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"], enable_dhcp=False)
    assert (s["dhcp_host"], s["dhcp_address"]) == (None, None)
    r = client.post(
        "/v1/ports", json={"subnet_id": s["id"], "ip_config": "dhcp"}, headers=tenant.headers
    )
    assert h.problem(r, 422)["errors"][0]["field"] == "body.ip_config"
    r = client.patch(f"/v1/subnets/{s['id']}", json={"enable_dhcp": True}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert (r.json()["dhcp_host"], r.json()["dhcp_address"]) == ("net-a", "10.0.1.254")
    p = h.port(client, tenant, s["id"], ip_config="dhcp")
    r = client.patch(f"/v1/subnets/{s['id']}", json={"enable_dhcp": False}, headers=tenant.headers)
    body = h.problem(r, 409)
    assert body["blocking_resources"] == [{"type": "port", "id": p["id"]}]
    assert client.get(f"/v1/subnets/{s['id']}", headers=tenant.headers).json()["enable_dhcp"]
    r = client.patch(f"/v1/ports/{p['id']}", json={"ip_config": "static"}, headers=tenant.headers)
    assert r.json()["ip_config"] == "static"
    r = client.patch(f"/v1/subnets/{s['id']}", json={"enable_dhcp": False}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert (r.json()["dhcp_host"], r.json()["dhcp_address"]) == (None, None)
    assert _service_ports(client, tenant, s["id"]) == []


def test_dns_name_unique_per_vpc_case_insensitively(
    client: TestClient, make_tenant: Any, tenant: Tenant
) -> None:
    v = h.vpc(client, tenant)
    s1 = h.subnet(client, tenant, v["id"], "10.0.1.0/24")
    s2 = h.subnet(client, tenant, v["id"], "10.0.2.0/24")
    web = h.port(client, tenant, s1["id"], dns_name="Web")
    assert web["dns_name"] == "Web"  # returned as written
    r = client.post(
        "/v1/ports", json={"subnet_id": s2["id"], "dns_name": "web"}, headers=tenant.headers
    )
    body = h.problem(r, 409)
    assert body["errors"] == [
        {"field": "body.dns_name", "message": f"already used by port {web['id']}"}
    ]
    assert (
        len(client.get(f"/v1/ports?subnet_id={s2['id']}", headers=tenant.headers).json()["items"])
        == 0
    )
    # Another VPC, or another tenant, may use the same name.
    other = h.vpc(client, tenant, "10.9.0.0/16")
    h.port(
        client, tenant, h.subnet(client, tenant, other["id"], "10.9.1.0/24")["id"], dns_name="web"
    )
    beta = make_tenant("beta")
    bv = h.vpc(client, beta)
    h.port(client, beta, h.subnet(client, beta, bv["id"])["id"], dns_name="web")
    # Rename: the old name is free again; a clash by PATCH is 409 and changes nothing.
    db = h.port(client, tenant, s2["id"], dns_name="db")
    r = client.patch(f"/v1/ports/{web['id']}", json={"dns_name": "www"}, headers=tenant.headers)
    assert r.json()["dns_name"] == "www"
    r = client.patch(f"/v1/ports/{db['id']}", json={"dns_name": "WWW"}, headers=tenant.headers)
    assert h.problem(r, 409)["errors"][0]["field"] == "body.dns_name"
    assert client.get(f"/v1/ports/{db['id']}", headers=tenant.headers).json()["dns_name"] == "db"
    assert client.get(f"/v1/ports/{db['id']}", headers=tenant.headers).json()["revision"] == 1
    h.port(client, tenant, s1["id"], dns_name="web")
    # Removing the name and deleting the port free it.
    r = client.patch(f"/v1/ports/{db['id']}", json={"dns_name": None}, headers=tenant.headers)
    assert r.json()["dns_name"] is None
    h.port(client, tenant, s1["id"], dns_name="db")
    assert client.delete(f"/v1/ports/{web['id']}", headers=tenant.headers).status_code == 204
    h.port(client, tenant, s1["id"], dns_name="www")


@pytest.mark.parametrize(
    ("path", "field", "value"),
    [
        ("port", "dns_name", "-web"),
        ("port", "dns_name", "web-"),
        ("port", "dns_name", "we_b"),
        ("port", "dns_name", "a.b"),
        ("port", "dns_name", "x" * 64),
        ("port", "dns_name", ""),
        ("port", "ip_config", "auto"),
        ("vpc", "dns_domain", "bad_domain.internal"),
        ("vpc", "dns_domain", "example..com"),
        ("vpc", "dns_domain", "example.com."),
        ("vpc", "dns_domain", "10.0.0.1"),
        ("vpc", "dns_domain", ("a" * 60 + ".") * 4 + "com"),
        ("subnet", "enable_dhcp", "yes"),
        ("subnet", "dns_nameservers", ["8.8.8"]),
    ],
)
def test_invalid_input_names_the_field(
    client: TestClient, tenant: Tenant, path: str, field: str, value: Any
) -> None:
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    body: dict[str, Any] = {
        "port": {"subnet_id": s["id"]},
        "vpc": {"cidr": "10.5.0.0/16"},
        "subnet": {"vpc_id": v["id"], "cidr": "10.0.7.0/24"},
    }[path]
    before = client.get(f"/v1/{path}s", headers=tenant.headers).json()["items"]
    r = client.post(f"/v1/{path}s", json={**body, field: value}, headers=tenant.headers)
    errors = h.problem(r, 422)["errors"]
    assert any(e["field"].startswith(f"body.{field}") for e in errors), errors
    assert client.get(f"/v1/{path}s", headers=tenant.headers).json()["items"] == before
    # The same value by PATCH is refused too.
    target = {"port": h.port(client, tenant, s["id"]), "vpc": v, "subnet": s}[path]
    r = client.patch(f"/v1/{path}s/{target['id']}", json={field: value}, headers=tenant.headers)
    assert any(e["field"].startswith(f"body.{field}") for e in h.problem(r, 422)["errors"])


def test_dns_domain_set_and_changed(client: TestClient, tenant: Tenant) -> None:
    v = h.vpc(client, tenant, name="x", dns_domain="corp.example")
    assert v["dns_domain"] == "corp.example"
    r = client.patch(
        f"/v1/vpcs/{v['id']}", json={"dns_domain": "lab.example"}, headers=tenant.headers
    )
    assert (r.json()["dns_domain"], r.json()["revision"]) == ("lab.example", 2)
    r = client.patch(f"/v1/vpcs/{v['id']}", json={"dns_domain": None}, headers=tenant.headers)
    assert h.problem(r, 422)["errors"][0]["field"] == "body.dns_domain"
    r = client.patch(f"/v1/vpcs/{v['id']}", json={"name": "renamed"}, headers=tenant.headers)
    assert r.json()["dns_domain"] == "lab.example"  # what the user set stays


def test_subnet_dns_fields_round_trip(client: TestClient, tenant: Tenant) -> None:
    v = h.vpc(client, tenant)
    routes = [{"destination": "192.168.50.0/24", "nexthop": "10.0.1.5"}]
    s = h.subnet(client, tenant, v["id"], dns_nameservers=["198.51.100.53"], host_routes=routes)
    assert (s["dns_nameservers"], s["host_routes"]) == (["198.51.100.53"], routes)
    r = client.patch(f"/v1/subnets/{s['id']}", json={"dns_nameservers": []}, headers=tenant.headers)
    assert r.json()["dns_nameservers"] == []
    listed = client.get(f"/v1/subnets?vpc_id={v['id']}", headers=tenant.headers).json()["items"]
    assert [x["id"] for x in listed] == [s["id"]]
    assert listed[0]["dhcp_address"] is None
