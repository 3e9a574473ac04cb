"""CRUD for every resource of DESIGN §3: create, read, list, merge-PATCH, delete, filters, pages.

One parametrised lifecycle test walks each resource through the whole contract; the tests
after it cover what is particular to one resource (tokens, quotas, router interfaces, gateway
addresses, floating IP association) and the list machinery (filters, pagination).
"""

from __future__ import annotations

import hashlib
import ipaddress
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.api import helpers as h
from tests.conftest import ADMIN, Tenant

Json = dict[str, Any]
Headers = dict[str, str]


def ts(value: str) -> datetime:
    """Parse an RFC 3339 timestamp the API returned, insisting it is UTC."""
    assert value.endswith("Z") or value.endswith("+00:00"), value
    return datetime.fromisoformat(value)


def ids(items: list[Json]) -> list[str]:
    return [i["id"] for i in items]


def listing(c: TestClient, path: str, who: Headers, **params: Any) -> list[Json]:
    """Every item of a list call (all pages), so filters are checked on the full answer."""
    items: list[Json] = []
    token = None
    while True:
        query = {**params, "limit": 1000, **({"page_token": token} if token else {})}
        r = c.get(path, params=query, headers=who)
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["items"]
        token = body["next_page_token"]
        if token is None:
            return items


# -- the generic lifecycle ---------------------------------------------------------------


@dataclass
class Case:
    """How to create one resource of a kind, and a PATCH that changes only mutable fields."""

    path: str
    make: Callable[[TestClient, Tenant], tuple[Json, Headers]]
    patch: Json
    tenanted: bool = True
    realised: bool = True
    server_fields: set[str] = field(default_factory=set)


def _vpc(c: TestClient, t: Tenant) -> tuple[Json, Headers]:
    body = {"name": "web", "description": "d", "cidr": "10.0.0.0/16", "tags": ["env=dev"]}
    return body, t.headers


def _subnet(c: TestClient, t: Tenant) -> tuple[Json, Headers]:
    v = h.vpc(c, t)
    body = {
        "vpc_id": v["id"],
        "name": "app",
        "description": "d",
        "cidr": "10.0.1.0/24",
        "gateway_ip": "10.0.1.1",
        "allocation_pools": [{"start": "10.0.1.10", "end": "10.0.1.200"}],
        "dns_nameservers": ["10.0.0.2"],
        "host_routes": [{"destination": "192.168.0.0/24", "nexthop": "10.0.1.254"}],
        "tags": ["tier=app"],
    }
    return body, t.headers


def _port(c: TestClient, t: Tenant) -> tuple[Json, Headers]:
    h.host(c, "host-1")  # ports bind only to registered hosts
    v = h.vpc(c, t)
    s = h.subnet(c, t, v["id"])
    g = h.group(c, t, v["id"], name="web")
    body = {
        "subnet_id": s["id"],
        "name": "vm1",
        "description": "d",
        "host": "host-1",
        "netns": "vm1",
        "interface_name": "eth1",
        "ip_address": "10.0.1.7",
        "mac_address": "fa:16:3e:00:00:07",
        "security_group_ids": [g["id"], v["default_security_group_id"]],
        "tags": ["role=web"],
    }
    return body, t.headers


def _router(c: TestClient, t: Tenant) -> tuple[Json, Headers]:
    v = h.vpc(c, t)
    body = {
        "vpc_id": v["id"],
        "name": "edge",
        "description": "d",
        "enable_snat": False,
        "tags": ["r"],
    }
    return body, t.headers


def _group(c: TestClient, t: Tenant) -> tuple[Json, Headers]:
    v = h.vpc(c, t)
    return {"vpc_id": v["id"], "name": "web", "description": "d", "tags": ["g"]}, t.headers


def _rule(c: TestClient, t: Tenant) -> tuple[Json, Headers]:
    v = h.vpc(c, t)
    g = h.group(c, t, v["id"])
    body = {
        "security_group_id": g["id"],
        "description": "ssh",
        "direction": "ingress",
        "protocol": "tcp",
        "port_min": 22,
        "port_max": 22,
        "remote_cidr": "192.0.2.0/24",
    }
    return body, t.headers


def _external(c: TestClient, t: Tenant) -> tuple[Json, Headers]:
    body = {
        "name": "internet",
        "description": "d",
        "cidr": "198.51.100.0/24",
        "gateway_ip": "198.51.100.1",
        "allocation_pools": [{"start": "198.51.100.10", "end": "198.51.100.99"}],
        "tags": ["ext"],
    }
    return body, ADMIN


def _floating(c: TestClient, t: Tenant) -> tuple[Json, Headers]:
    e = h.external_network(c)
    return {"external_network_id": e["id"], "description": "d", "tags": ["f"]}, t.headers


def _tenant(c: TestClient, t: Tenant) -> tuple[Json, Headers]:
    return {"name": f"t-{uuid.uuid4().hex[:6]}", "description": "d"}, ADMIN


def _host(c: TestClient, t: Tenant) -> tuple[Json, Headers]:
    return {"name": "net-1", "vtep_ip": "192.0.2.21", "roles": ["compute", "network"]}, ADMIN


CASES = {
    "tenants": Case("/v1/tenants", _tenant, {"description": "renamed"}, False, False),
    "hosts": Case("/v1/hosts", _host, {"vtep_ip": "192.0.2.22"}, False, False),
    "vpcs": Case("/v1/vpcs", _vpc, {"name": "web2", "tags": ["env=prod"]}, realised=False),
    "subnets": Case("/v1/subnets", _subnet, {"name": "app2", "dns_nameservers": ["10.0.0.3"]}),
    "ports": Case("/v1/ports", _port, {"name": "vm1b", "netns": "vm1b"}),
    "routers": Case("/v1/routers", _router, {"name": "edge2", "enable_snat": True}),
    "security-groups": Case("/v1/security-groups", _group, {"description": "web tier"}),
    "security-group-rules": Case(
        "/v1/security-group-rules", _rule, {"description": "ssh in"}, realised=False
    ),
    "external-networks": Case(
        "/v1/external-networks", _external, {"name": "upstream"}, False, False
    ),
    "floating-ips": Case("/v1/floating-ips", _floating, {"description": "x", "tags": ["g"]}),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_lifecycle(client: TestClient, tenant: Tenant, kind: str) -> None:
    """POST/GET/list/PATCH/DELETE obey §3 for this resource kind."""
    case = CASES[kind]
    body, who = case.make(client, tenant)

    r = client.post(case.path, json=body, headers=who)
    assert r.status_code == 201, r.text
    obj = r.json()
    for key, value in body.items():  # what the user wrote comes back unchanged
        assert obj[key] == value, key
    uuid.UUID(obj["id"])
    assert obj["revision"] == 1
    assert ts(obj["created_at"]) <= ts(obj["updated_at"])
    if case.tenanted:
        assert obj["tenant_id"] == tenant.id
    if case.realised and kind == "routers":  # no network host is up here: said at once
        assert (obj["status"], obj["status_detail"]) == ("error", "no network host is up")
    elif case.realised:
        assert obj["status"] == "pending"
    assert r.headers["etag"] == '"1"'  # strong: no W/ prefix
    location = r.headers["location"]
    assert urlsplit(location).path == f"{case.path}/{obj['id']}"
    url = urlsplit(location).path

    g = client.get(url, headers=who)
    assert g.status_code == 200 and g.json() == obj
    assert g.headers["etag"] == '"1"'
    assert obj["id"] in ids(listing(client, case.path, who))

    p = client.patch(url, json=case.patch, headers=who)
    assert p.status_code == 200, p.text
    new = p.json()
    for key, value in case.patch.items():
        assert new[key] == value, key
    moving = {"revision", "updated_at", *case.patch}
    assert {k: v for k, v in new.items() if k not in moving} == {
        k: v for k, v in obj.items() if k not in moving
    }
    assert new["revision"] == 2
    assert ts(new["updated_at"]) > ts(obj["updated_at"])
    assert p.headers["etag"] == '"2"'
    g = client.get(url, headers=who)
    assert g.json() == new and g.headers["etag"] == '"2"'

    for same in (case.patch, {}):  # nothing changes: no new revision, same ETag
        p = client.patch(url, json=same, headers=who)
        assert p.status_code == 200, p.text
        assert p.json() == new and p.headers["etag"] == '"2"'

    d = client.delete(url, headers=who)
    assert d.status_code == 204, d.text
    assert d.content == b""
    h.problem(client.get(url, headers=who), 404)
    assert obj["id"] not in ids(listing(client, case.path, who))
    h.problem(client.delete(url, headers=who), 404)
    h.problem(client.patch(url, json=case.patch, headers=who), 404)


# -- tenants, tokens, quotas, hosts, external networks -------------------------------------


def test_tenant_tokens(client: TestClient, db_url: str) -> None:
    """Each POST mints a new working token, shown once and stored only as its hash."""
    t = h.create(client, "/v1/tenants", ADMIN, name="tok")
    tokens = []
    for _ in range(2):
        r = client.post(f"/v1/tenants/{t['id']}/tokens", headers=ADMIN)
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["tenant_id"] == t["id"] and body["token"]
        tokens.append(body["token"])
    assert tokens[0] != tokens[1]
    for token in tokens:
        r = client.get("/v1/vpcs", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["items"] == []

    from models.db import engine_for

    with engine_for(db_url).connect() as conn:
        stored = set(
            conn.execute(
                sa.text("SELECT token_hash FROM api_tokens WHERE tenant_id = :t"), {"t": t["id"]}
            ).scalars()
        )
    assert stored == {hashlib.sha256(tok.encode()).hexdigest() for tok in tokens}
    h.problem(client.post(f"/v1/tenants/{uuid.uuid4()}/tokens", headers=ADMIN), 404)


def test_quotas_get_and_patch(client: TestClient, make_tenant: Callable[..., Tenant]) -> None:
    """GET shows every limit; PATCH changes only the limits given, and they take effect."""
    t = make_tenant()
    url = f"/v1/tenants/{t.id}/quotas"
    r = client.get(url, headers=ADMIN)
    assert r.status_code == 200, r.text
    before = r.json()
    assert before["tenant_id"] == t.id
    kinds = {
        "vpcs",
        "subnets",
        "ports",
        "routers",
        "security_groups",
        "security_group_rules",
        "floating_ips",
    }
    assert kinds <= set(before) and all(before[k] > 0 for k in kinds)

    r = client.patch(url, json={"vpcs": 1, "ports": 7}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json() == {**before, "vpcs": 1, "ports": 7}
    assert client.get(url, headers=ADMIN).json() == {**before, "vpcs": 1, "ports": 7}

    h.vpc(client, t)
    h.problem(client.post("/v1/vpcs", json={"cidr": "10.1.0.0/16"}, headers=t.headers), 409)

    for bad in ({"vpcs": -1}, {"widgets": 3}):
        body = h.problem(client.patch(url, json=bad, headers=ADMIN), 422)
        assert body["errors"][0]["field"] == f"body.{next(iter(bad))}"
    assert client.get(url, headers=ADMIN).json()["vpcs"] == 1
    h.problem(client.get(f"/v1/tenants/{uuid.uuid4()}/quotas", headers=ADMIN), 404)


def test_tenant_and_host_name_filters(client: TestClient) -> None:
    a = h.create(client, "/v1/tenants", ADMIN, name="acme")
    h.create(client, "/v1/tenants", ADMIN, name="globex")
    assert ids(listing(client, "/v1/tenants", ADMIN, name="acme")) == [a["id"]]
    one = h.host(client, "host-1", "192.0.2.11")
    h.host(client, "host-2", "192.0.2.12")
    assert ids(listing(client, "/v1/hosts", ADMIN, name="host-1")) == [one["id"]]
    assert one["status"] == "down" and one["last_heartbeat"] is None
    assert one["roles"] == ["compute"] and one["realised_revision"] == 0


def test_tenants_read_external_networks(client: TestClient, tenant: Tenant) -> None:
    """External networks are admin-made, and every tenant can read them to choose one."""
    e = h.external_network(client, name="internet", tags=["public"])
    h.external_network(client, cidr="198.51.100.0/24", gateway_ip="198.51.100.1", name="lab")
    r = client.get(f"/v1/external-networks/{e['id']}", headers=tenant.headers)
    assert r.status_code == 200 and r.json() == e
    assert ids(listing(client, "/v1/external-networks", tenant.headers, name="internet")) == [
        e["id"]
    ]
    assert ids(listing(client, "/v1/external-networks", tenant.headers, tag="public")) == [e["id"]]
    assert e["allocation_pools"] == [{"start": "203.0.113.2", "end": "203.0.113.254"}]


# -- routers -------------------------------------------------------------------------------


def test_router_gateway_address_from_external_pool(client: TestClient, tenant: Tenant) -> None:
    """external_network_id gives the router an external_ip from that network's pool."""
    pool = {"start": "203.0.113.100", "end": "203.0.113.102"}
    e = h.external_network(client, allocation_pools=[pool])
    in_pool = {
        str(ipaddress.IPv4Address(a))
        for a in range(
            int(ipaddress.IPv4Address(pool["start"])), int(ipaddress.IPv4Address(pool["end"])) + 1
        )
    }
    v = h.vpc(client, tenant)
    r = h.router(client, tenant, v["id"], external_network_id=e["id"])
    assert r["external_network_id"] == e["id"] and r["external_ip"] in in_pool
    assert r["revision"] == 1  # created whole, not inserted then updated

    other = h.router(client, tenant, v["id"], external_network_id=e["id"])
    assert other["external_ip"] in in_pool and other["external_ip"] != r["external_ip"]

    plain = h.router(client, tenant, v["id"])
    assert plain["external_network_id"] is None and plain["external_ip"] is None
    p = client.patch(
        f"/v1/routers/{plain['id']}", json={"external_network_id": e["id"]}, headers=tenant.headers
    )
    assert p.status_code == 200, p.text
    assert p.json()["external_ip"] in in_pool - {r["external_ip"], other["external_ip"]}
    assert p.json()["revision"] == 2

    p = client.patch(
        f"/v1/routers/{r['id']}", json={"external_network_id": None}, headers=tenant.headers
    )
    assert p.status_code == 200, p.text
    assert p.json()["external_network_id"] is None and p.json()["external_ip"] is None
    # the released address is the only one left: the next gateway gets exactly it
    last = h.router(client, tenant, v["id"], external_network_id=e["id"])
    assert last["external_ip"] == r["external_ip"]
    body = h.problem(
        client.post(
            "/v1/routers",
            json={"vpc_id": v["id"], "external_network_id": e["id"]},
            headers=tenant.headers,
        ),
        409,
    )
    assert "no free address" in body["detail"]
    # deleting a router gives its gateway address back too
    assert client.delete(f"/v1/routers/{last['id']}", headers=tenant.headers).status_code == 204
    again = h.router(client, tenant, v["id"], external_network_id=e["id"])
    assert again["external_ip"] == r["external_ip"]

    missing = str(uuid.uuid4())
    h.problem(
        client.post(
            "/v1/routers",
            json={"vpc_id": v["id"], "external_network_id": missing},
            headers=tenant.headers,
        ),
        404,
    )
    h.problem(
        client.patch(
            f"/v1/routers/{plain['id']}",
            json={"external_network_id": missing},
            headers=tenant.headers,
        ),
        404,
    )


def test_router_interfaces(client: TestClient, tenant: Tenant) -> None:
    """An interface takes the subnet's gateway_ip on a service-made port; removing it frees it."""
    v = h.vpc(client, tenant)
    s = h.subnet(
        client,
        tenant,
        v["id"],
        "10.0.1.0/24",
        gateway_ip="10.0.1.254",
        allocation_pools=[{"start": "10.0.1.10", "end": "10.0.1.20"}],
    )
    r = h.router(client, tenant, v["id"])
    base = f"/v1/routers/{r['id']}/interfaces"

    a = client.post(base, json={"subnet_id": s["id"]}, headers=tenant.headers)
    assert a.status_code == 201, a.text
    iface = a.json()
    assert iface["router_id"] == r["id"] and iface["subnet_id"] == s["id"]
    assert iface["ip_address"] == "10.0.1.254"
    assert urlsplit(a.headers["location"]).path == f"{base}/{s['id']}"

    got = client.get(f"{base}/{s['id']}", headers=tenant.headers)
    assert got.status_code == 200 and got.json() == iface
    assert client.get(base, headers=tenant.headers).json() == [iface]
    router = client.get(f"/v1/routers/{r['id']}", headers=tenant.headers).json()
    assert router["subnet_ids"] == [s["id"]] and router["revision"] == 2

    ports = listing(client, "/v1/ports", tenant.headers, subnet_id=s["id"])
    assert [(p["id"], p["ip_address"], p["device_owner"], p["device_id"]) for p in ports] == [
        (iface["port_id"], "10.0.1.254", "router_interface", r["id"])
    ]
    assert ids(listing(client, "/v1/ports", tenant.headers, device_id=r["id"])) == [
        iface["port_id"]
    ]
    # the service owns that port: users change it only through the router
    h.problem(client.delete(f"/v1/ports/{iface['port_id']}", headers=tenant.headers), 409)
    h.problem(
        client.patch(f"/v1/ports/{iface['port_id']}", json={"name": "x"}, headers=tenant.headers),
        409,
    )
    h.problem(client.post(base, json={"subnet_id": s["id"]}, headers=tenant.headers), 409)
    other_vpc = h.vpc(client, tenant, "10.9.0.0/16")
    foreign = h.subnet(client, tenant, other_vpc["id"], "10.9.1.0/24")
    body = h.problem(
        client.post(base, json={"subnet_id": foreign["id"]}, headers=tenant.headers), 422
    )
    assert body["errors"][0]["field"] == "body.subnet_id"

    d = client.delete(f"{base}/{s['id']}", headers=tenant.headers)
    assert d.status_code == 204, d.text
    assert client.get(base, headers=tenant.headers).json() == []
    h.problem(client.get(f"/v1/ports/{iface['port_id']}", headers=tenant.headers), 404)
    h.problem(client.get(f"{base}/{s['id']}", headers=tenant.headers), 404)
    h.problem(client.delete(f"{base}/{s['id']}", headers=tenant.headers), 404)
    router = client.get(f"/v1/routers/{r['id']}", headers=tenant.headers).json()
    assert router["subnet_ids"] == [] and router["revision"] == 3
    assert client.delete(f"/v1/subnets/{s['id']}", headers=tenant.headers).status_code == 204


def test_router_static_routes(client: TestClient, tenant: Tenant) -> None:
    """routes PATCH in whole; each nexthop must be on an attached subnet."""
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    r = h.router(client, tenant, v["id"])
    url = f"/v1/routers/{r['id']}"
    routes = [{"destination": "172.16.0.0/12", "nexthop": "10.0.1.9"}]
    body = h.problem(client.patch(url, json={"routes": routes}, headers=tenant.headers), 422)
    assert body["errors"][0]["field"] == "body.routes.0.nexthop"
    h.attach(client, tenant, r["id"], s["id"])
    p = client.patch(url, json={"routes": routes}, headers=tenant.headers)
    assert p.status_code == 200, p.text
    assert p.json()["routes"] == routes


# -- floating IPs --------------------------------------------------------------------------


def _routed_port(c: TestClient, t: Tenant, external_id: str | None) -> tuple[Json, Json, Json]:
    """A port on a subnet attached to a router (with a gateway on external_id, if given)."""
    v = h.vpc(c, t)
    s = h.subnet(c, t, v["id"])
    kw = {"external_network_id": external_id} if external_id else {}
    r = h.router(c, t, v["id"], **kw)
    h.attach(c, t, r["id"], s["id"])
    return h.port(c, t, s["id"]), s, r


def test_floating_ip_associate_and_disassociate(client: TestClient, tenant: Tenant) -> None:
    """PATCH port_id associates through the serving router; null disassociates."""
    e = h.external_network(
        client, allocation_pools=[{"start": "203.0.113.50", "end": "203.0.113.51"}]
    )
    port, _, r = _routed_port(client, tenant, e["id"])
    fip = h.floating_ip(client, tenant, e["id"])
    assert fip["address"] in {"203.0.113.50", "203.0.113.51"}
    assert fip["address"] != r["external_ip"]
    assert fip["port_id"] is None and fip["router_id"] is None
    url = f"/v1/floating-ips/{fip['id']}"

    p = client.patch(url, json={"port_id": port["id"]}, headers=tenant.headers)
    assert p.status_code == 200, p.text
    assoc = p.json()
    assert assoc["port_id"] == port["id"] and assoc["router_id"] == r["id"]
    assert assoc["fixed_ip_address"] == port["ip_address"]
    assert assoc["address"] == fip["address"] and assoc["revision"] == 2
    assert p.headers["etag"] == '"2"'
    assert ids(listing(client, "/v1/floating-ips", tenant.headers, port_id=port["id"])) == [
        fip["id"]
    ]
    assert ids(listing(client, "/v1/floating-ips", tenant.headers, router_id=r["id"])) == [
        fip["id"]
    ]

    p = client.patch(url, json={"port_id": None}, headers=tenant.headers)
    assert p.status_code == 200, p.text
    free = p.json()
    assert free["port_id"] is None and free["router_id"] is None
    assert free["fixed_ip_address"] is None and free["revision"] == 3

    # the router's gateway and this FIP hold both pool addresses
    h.problem(
        client.post(
            "/v1/floating-ips", json={"external_network_id": e["id"]}, headers=tenant.headers
        ),
        409,
    )
    d = client.delete(url, headers=tenant.headers)
    assert d.status_code == 204
    again = h.floating_ip(client, tenant, e["id"], port_id=port["id"])
    assert again["address"] == fip["address"]  # the deleted FIP gave its address back
    # created and associated in one call
    assert again["router_id"] == r["id"] and again["port_id"] == port["id"]
    assert again["revision"] == 1
    # the FIP reaches the port through the router's leg on its subnet: that leg stays
    body = h.problem(
        client.delete(
            f"/v1/routers/{r['id']}/interfaces/{port['subnet_id']}", headers=tenant.headers
        ),
        409,
    )
    assert body["blocking_resources"] == [{"type": "floating_ip", "id": again["id"]}]
    # deleting the port disassociates its FIP, as in Neutron
    assert client.delete(f"/v1/ports/{port['id']}", headers=tenant.headers).status_code == 204
    freed = client.get(f"/v1/floating-ips/{again['id']}", headers=tenant.headers).json()
    assert freed["port_id"] is None and freed["router_id"] is None and freed["revision"] == 2


def test_port_security_group_membership(client: TestClient, tenant: Tenant) -> None:
    """security_group_ids defaults to the VPC's default group and PATCHes as a whole list."""
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    a = h.group(client, tenant, v["id"], name="a")
    b = h.group(client, tenant, v["id"], name="b")
    p = h.port(client, tenant, s["id"])
    assert p["security_group_ids"] == [v["default_security_group_id"]]
    url = f"/v1/ports/{p['id']}"
    revision = 1
    for groups in ([a["id"], b["id"]], [b["id"], a["id"]], [b["id"]], []):
        r = client.patch(url, json={"security_group_ids": groups}, headers=tenant.headers)
        assert r.status_code == 200, r.text
        revision += 1
        assert r.json()["security_group_ids"] == groups and r.json()["revision"] == revision
        got = client.get(url, headers=tenant.headers).json()
        assert got["security_group_ids"] == groups and got["revision"] == revision
    same = client.patch(url, json={"security_group_ids": []}, headers=tenant.headers)
    assert same.json()["revision"] == revision
    other = h.vpc(client, tenant, "10.1.0.0/16")
    body = h.problem(
        client.patch(
            url,
            json={"security_group_ids": [other["default_security_group_id"]]},
            headers=tenant.headers,
        ),
        422,
    )
    assert body["errors"][0]["field"] == "body.security_group_ids.0"
    body = h.problem(
        client.patch(url, json={"security_group_ids": [a["id"], a["id"]]}, headers=tenant.headers),
        422,
    )
    assert body["errors"][0]["field"] == "body.security_group_ids"
    assert client.get(url, headers=tenant.headers).json()["revision"] == revision


def test_floating_ip_needs_router_with_gateway(client: TestClient, tenant: Tenant) -> None:
    """Association without a router on the subnet, or without a gateway there, is 409."""
    e = h.external_network(client)
    other = h.external_network(client, cidr="198.51.100.0/24", gateway_ip="198.51.100.1")
    fip = h.floating_ip(client, tenant, e["id"])
    url = f"/v1/floating-ips/{fip['id']}"

    v = h.vpc(client, tenant)
    lonely = h.port(client, tenant, h.subnet(client, tenant, v["id"])["id"])
    body = h.problem(client.patch(url, json={"port_id": lonely["id"]}, headers=tenant.headers), 409)
    assert "not attached to a router" in body["detail"]

    for gateway in (None, other["id"]):
        port, _, r = _routed_port(client, tenant, gateway)
        body = h.problem(
            client.patch(url, json={"port_id": port["id"]}, headers=tenant.headers), 409
        )
        assert r["id"] in body["detail"] and "no gateway" in body["detail"]
        body = h.problem(
            client.post(
                "/v1/floating-ips",
                headers=tenant.headers,
                json={"external_network_id": e["id"], "port_id": port["id"]},
            ),
            409,
        )
        assert "no gateway" in body["detail"]

    got = client.get(url, headers=tenant.headers).json()
    assert got == fip  # nothing changed
    assert len(listing(client, "/v1/floating-ips", tenant.headers)) == 1


# -- filters -------------------------------------------------------------------------------


def test_list_filters(client: TestClient, tenant: Tenant) -> None:
    """Filters by parent id, name and tag return exactly the matching items."""
    t = tenant.headers
    va = h.vpc(client, tenant, "10.0.0.0/16", name="a", tags=["blue"])
    vb = h.vpc(client, tenant, "10.1.0.0/16", name="b", tags=["blue", "green"])
    assert ids(listing(client, "/v1/vpcs", t, name="a")) == [va["id"]]
    assert ids(listing(client, "/v1/vpcs", t, tag="blue")) == [va["id"], vb["id"]]
    assert ids(listing(client, "/v1/vpcs", t, tag="green")) == [vb["id"]]
    assert listing(client, "/v1/vpcs", t, tag="gre") == []

    sa1 = h.subnet(client, tenant, va["id"], "10.0.1.0/24", name="front", tags=["x"])
    sa2 = h.subnet(client, tenant, va["id"], "10.0.2.0/24", name="back")
    sb1 = h.subnet(client, tenant, vb["id"], "10.1.1.0/24", name="front")
    assert ids(listing(client, "/v1/subnets", t, vpc_id=va["id"])) == [sa1["id"], sa2["id"]]
    assert ids(listing(client, "/v1/subnets", t, name="front")) == [sa1["id"], sb1["id"]]
    assert ids(listing(client, "/v1/subnets", t, tag="x")) == [sa1["id"]]
    assert ids(listing(client, "/v1/subnets", t, vpc_id=vb["id"], name="back")) == []

    web = h.group(client, tenant, va["id"], name="web", tags=["w"])
    db = h.group(client, tenant, va["id"], name="db")
    assert ids(listing(client, "/v1/security-groups", t, vpc_id=va["id"])) == [
        va["default_security_group_id"],
        web["id"],
        db["id"],
    ]
    assert ids(listing(client, "/v1/security-groups", t, name="web")) == [web["id"]]
    assert ids(listing(client, "/v1/security-groups", t, tag="w")) == [web["id"]]

    rule = h.rule(client, tenant, web["id"], port_min=80, port_max=80)
    ref = h.rule(client, tenant, db["id"], remote_group_id=web["id"], port_min=5432, port_max=5432)
    web_rules = listing(client, "/v1/security-group-rules", t, security_group_id=web["id"])
    assert [r["id"] for r in web_rules][-1] == rule["id"]
    # a new group comes with allow-all egress, IPv4 and IPv6, as on AWS and in Neutron
    assert sorted((r["direction"], r["protocol"], r["remote_cidr"]) for r in web_rules[:-1]) == [
        ("egress", "any", "0.0.0.0/0"),
        ("egress", "any", "::/0"),
    ]
    assert ids(listing(client, "/v1/security-group-rules", t, remote_group_id=web["id"])) == [
        ref["id"]
    ]
    default_rules = listing(
        client, "/v1/security-group-rules", t, security_group_id=va["default_security_group_id"]
    )
    assert sorted((r["direction"], r["remote_cidr"]) for r in default_rules) == [
        ("egress", "0.0.0.0/0"),
        ("egress", "::/0"),
        ("ingress", None),
    ]

    h.host(client, "host-1")
    p1 = h.port(client, tenant, sa1["id"], name="vm", tags=["t1"], host="host-1")
    p2 = h.port(client, tenant, sa1["id"], name="db", security_group_ids=[db["id"]])
    p3 = h.port(client, tenant, sa2["id"], name="vm", security_group_ids=[web["id"], db["id"]])
    h.port(client, tenant, sb1["id"], name="other")
    assert ids(listing(client, "/v1/ports", t, subnet_id=sa1["id"])) == [p1["id"], p2["id"]]
    assert ids(listing(client, "/v1/ports", t, name="vm")) == [p1["id"], p3["id"]]
    assert ids(listing(client, "/v1/ports", t, tag="t1")) == [p1["id"]]
    assert ids(listing(client, "/v1/ports", t, host="host-1")) == [p1["id"]]
    assert ids(listing(client, "/v1/ports", t, security_group_id=db["id"])) == [p2["id"], p3["id"]]
    assert ids(listing(client, "/v1/ports", t, security_group_id=web["id"])) == [p3["id"]]
    assert ids(
        listing(client, "/v1/ports", t, security_group_id=va["default_security_group_id"])
    ) == [p1["id"]]
    assert ids(
        listing(client, "/v1/ports", t, ip_address=p2["ip_address"], subnet_id=sa1["id"])
    ) == [p2["id"]]

    ra = h.router(client, tenant, va["id"], name="edge", tags=["r"])
    rb = h.router(client, tenant, vb["id"], name="core")
    assert ids(listing(client, "/v1/routers", t, vpc_id=vb["id"])) == [rb["id"]]
    assert ids(listing(client, "/v1/routers", t, name="edge")) == [ra["id"]]
    assert ids(listing(client, "/v1/routers", t, tag="r")) == [ra["id"]]

    e1 = h.external_network(client)
    e2 = h.external_network(client, cidr="198.51.100.0/24", gateway_ip="198.51.100.1")
    f1 = h.floating_ip(client, tenant, e1["id"], tags=["f"])
    f2 = h.floating_ip(client, tenant, e2["id"])
    assert ids(listing(client, "/v1/floating-ips", t, external_network_id=e2["id"])) == [f2["id"]]
    assert ids(listing(client, "/v1/floating-ips", t, tag="f")) == [f1["id"]]


# -- pagination ----------------------------------------------------------------------------

PAGED = 250


def _fill_vpcs(c: TestClient, t: Tenant) -> tuple[list[str], Json]:
    return [h.vpc(c, t, "10.0.0.0/16")["id"] for _ in range(PAGED)], {}


def _fill_subnets(c: TestClient, t: Tenant) -> tuple[list[str], Json]:
    v = h.vpc(c, t, "10.0.0.0/8")
    made = [h.subnet(c, t, v["id"], f"10.{i // 256}.{i % 256}.0/24")["id"] for i in range(PAGED)]
    return made, {"vpc_id": v["id"]}


def _fill_ports(c: TestClient, t: Tenant) -> tuple[list[str], Json]:
    v = h.vpc(c, t)
    s = h.subnet(c, t, v["id"], "10.0.0.0/23")
    return [h.port(c, t, s["id"])["id"] for _ in range(PAGED)], {"subnet_id": s["id"]}


def _fill_rules(c: TestClient, t: Tenant) -> tuple[list[str], Json]:
    v = h.vpc(c, t)
    g = h.group(c, t, v["id"])
    made = [h.rule(c, t, g["id"], port_min=p, port_max=p)["id"] for p in range(1, PAGED + 1)]
    return made, {"security_group_id": g["id"], "direction": "ingress"}  # not the defaults


FILL = {
    "vpcs": _fill_vpcs,
    "subnets": _fill_subnets,
    "ports": _fill_ports,
    "security-group-rules": _fill_rules,
}


@pytest.mark.parametrize("kind", list(FILL))
def test_pagination(client: TestClient, make_tenant: Callable[..., Tenant], kind: str) -> None:
    """limit/page_token walk every item exactly once, in creation order."""
    t = make_tenant(vpcs=300, subnets=300, ports=300, security_group_rules=1300)
    made, filters = FILL[kind](client, t)
    path = f"/v1/{kind}"

    for limit in (60, 125):
        seen: list[str] = []
        sizes: list[int] = []
        token: str | None = None
        while True:
            params = {**filters, "limit": limit, **({"page_token": token} if token else {})}
            r = client.get(path, params=params, headers=t.headers)
            assert r.status_code == 200, r.text
            body = r.json()
            seen += ids(body["items"])
            sizes.append(len(body["items"]))
            token = body["next_page_token"]
            if token is None:
                break
        assert seen == made  # all 250, in creation order, none twice
        assert sizes == [limit] * (PAGED // limit) + ([PAGED % limit] if PAGED % limit else [])

    first = client.get(path, params=filters, headers=t.headers).json()
    assert ids(first["items"]) == made[:100] and first["next_page_token"]
    whole = client.get(path, params={**filters, "limit": 1000}, headers=t.headers).json()
    assert ids(whole["items"]) == made and whole["next_page_token"] is None

    for limit in (0, 1001):
        body = h.problem(client.get(path, params={"limit": limit}, headers=t.headers), 422)
        assert body["errors"][0]["field"] == "query.limit"
    for garbage in ("garbage!", "bm90IGpzb24", "WzEsIDJd"):  # junk, 'not json', '[1, 2]'
        h.problem(client.get(path, params={"page_token": garbage}, headers=t.headers), 400)
