"""Network ACLs over HTTP: the REST contract, validation naming the field, association."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api import helpers as h
from tests.conftest import Tenant


def _acl(c: TestClient, t: Tenant, vpc_id: str, **kw: Any) -> dict[str, Any]:
    return h.create(c, "/v1/network-acls", t, vpc_id=vpc_id, **kw)


def _entry(c: TestClient, t: Tenant, acl_id: str, **kw: Any) -> dict[str, Any]:
    body = {"rule_number": 100, "direction": "ingress", "action": "allow", "protocol": "any"}
    body |= {"cidr": "0.0.0.0/0", **kw}
    return h.create(c, "/v1/network-acl-entries", t, network_acl_id=acl_id, **body)


def test_create_list_get_patch_delete(client: TestClient, tenant: Tenant) -> None:
    v = h.vpc(client, tenant)
    r = client.post(
        "/v1/network-acls", json={"vpc_id": v["id"], "name": "web"}, headers=tenant.headers
    )
    assert r.status_code == 201 and r.headers["location"].endswith(r.json()["id"])
    acl = r.json()
    assert (acl["status"], acl["subnet_ids"], acl["name"]) == ("active", [], "web")
    got = client.get(f"/v1/network-acls/{acl['id']}", headers=tenant.headers)
    assert got.headers["etag"] and got.json() == acl
    listed = client.get(f"/v1/network-acls?vpc_id={v['id']}", headers=tenant.headers).json()
    assert [a["id"] for a in listed["items"]] == [acl["id"]]
    e = _entry(client, tenant, acl["id"], protocol="tcp", port_min=80, port_max=443)
    assert (e["rule_number"], e["action"], e["port_max"]) == (100, "allow", 443)
    r = client.patch(
        f"/v1/network-acl-entries/{e['id']}", json={"action": "deny"}, headers=tenant.headers
    )
    assert r.status_code == 200 and r.json()["action"] == "deny"
    r = client.patch(
        f"/v1/network-acl-entries/{e['id']}", json={"rule_number": 5}, headers=tenant.headers
    )
    h.problem(r, 422)
    entries = client.get(
        f"/v1/network-acl-entries?network_acl_id={acl['id']}", headers=tenant.headers
    ).json()
    assert [x["id"] for x in entries["items"]] == [e["id"]]
    assert client.delete(f"/v1/network-acls/{acl['id']}", headers=tenant.headers).status_code == 204
    r = client.get(f"/v1/network-acl-entries/{e['id']}", headers=tenant.headers)
    h.problem(r, 404)  # the entries went with it


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rule_number": 0}, "rule_number"),
        ({"rule_number": 32767}, "rule_number"),
        ({"direction": "sideways"}, "direction"),
        ({"action": "maybe"}, "action"),
        ({"protocol": "sctp"}, "protocol"),
        ({"cidr": "10.0.0.0/33"}, "cidr"),
        ({"protocol": "icmp", "port_min": 1}, "port_min"),
        ({"protocol": "tcp", "port_min": 90, "port_max": 80}, "port_min"),
        ({"protocol": "udp", "port_max": 70000}, "port_max"),
    ],
)
def test_bad_entries_name_the_field(
    client: TestClient, tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    v = h.vpc(client, tenant)
    acl = _acl(client, tenant, v["id"])
    full = {"network_acl_id": acl["id"], "rule_number": 10, "direction": "ingress"}
    full |= {"action": "allow", "protocol": "any", "cidr": "0.0.0.0/0", **body}
    r = client.post("/v1/network-acl-entries", json=full, headers=tenant.headers)
    problem = h.problem(r, 422)
    assert any(e["field"].endswith(field) for e in problem["errors"]), problem
    listed = client.get(
        f"/v1/network-acl-entries?network_acl_id={acl['id']}", headers=tenant.headers
    )
    assert listed.json()["items"] == []  # nothing changed


def test_a_rule_number_is_taken_once_per_direction(client: TestClient, tenant: Tenant) -> None:
    v = h.vpc(client, tenant)
    acl = _acl(client, tenant, v["id"])
    _entry(client, tenant, acl["id"], rule_number=100)
    _entry(client, tenant, acl["id"], rule_number=100, direction="egress")
    body = {"network_acl_id": acl["id"], "rule_number": 100, "direction": "ingress"}
    body |= {"action": "deny", "protocol": "any", "cidr": "10.0.0.0/8"}
    h.problem(client.post("/v1/network-acl-entries", json=body, headers=tenant.headers), 409)


def test_association_through_the_subnet(
    client: TestClient, tenant: Tenant, make_tenant: Callable[..., Tenant]
) -> None:
    other = make_tenant("beta")
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    acl = _acl(client, tenant, v["id"])
    assert s["network_acl_id"] is None  # no ACL: everything allowed
    url = f"/v1/subnets/{s['id']}"
    r = client.patch(url, json={"network_acl_id": acl["id"]}, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["network_acl_id"] == acl["id"]
    got = client.get(f"/v1/network-acls/{acl['id']}", headers=tenant.headers).json()
    assert got["subnet_ids"] == [s["id"]]
    # in use: the ACL and its VPC cannot go
    blocked = h.problem(client.delete(f"/v1/network-acls/{acl['id']}", headers=tenant.headers), 409)
    assert blocked["blocking_resources"] == [{"type": "subnet", "id": s["id"]}]
    # another VPC's ACL is refused naming the field; another tenant's is not found
    v2 = h.vpc(client, tenant, cidr="10.1.0.0/16")
    foreign = _acl(client, tenant, v2["id"])
    r = client.patch(url, json={"network_acl_id": foreign["id"]}, headers=tenant.headers)
    assert h.problem(r, 422)["errors"][0]["field"] == "body.network_acl_id"
    v3 = h.vpc(client, other)
    theirs = _acl(client, other, v3["id"])
    h.problem(client.patch(url, json={"network_acl_id": theirs["id"]}, headers=tenant.headers), 404)
    h.problem(client.get(f"/v1/network-acls/{acl['id']}", headers=other.headers), 404)
    r = client.patch(url, json={"network_acl_id": None}, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["network_acl_id"] is None
    assert client.delete(f"/v1/network-acls/{acl['id']}", headers=tenant.headers).status_code == 204
