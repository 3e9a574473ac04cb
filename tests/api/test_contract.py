"""The cross-cutting rules of DESIGN §3: idempotency, ETags, in-use deletes, immutable and
unknown fields, auth, address reuse across tenants, exhaustion, quotas, health endpoints.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api import helpers as h
from tests.conftest import ADMIN, Tenant

Json = dict[str, Any]


def items(c: TestClient, path: str, who: Tenant | dict[str, str], **params: Any) -> list[Json]:
    headers = who.headers if isinstance(who, Tenant) else who
    r = c.get(path, params={**params, "limit": 1000}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["next_page_token"] is None
    return r.json()["items"]  # type: ignore[no-any-return]


def blocking(body: Json) -> set[tuple[str, str]]:
    return {(b["type"], b["id"]) for b in body["blocking_resources"]}


def with_key(t: Tenant, key: str) -> dict[str, str]:
    return {**t.headers, "Idempotency-Key": key}


# -- Idempotency-Key -----------------------------------------------------------------------


def test_idempotent_post_replays_first_response(
    client: TestClient, make_tenant: Callable[..., Tenant]
) -> None:
    """Same key and body: the first response again (status, body, headers), one resource."""
    t = make_tenant()
    body = {"name": "once", "cidr": "10.0.0.0/16"}
    first = client.post("/v1/vpcs", json=body, headers=with_key(t, "k-1"))
    assert first.status_code == 201, first.text
    again = client.post("/v1/vpcs", json=body, headers=with_key(t, "k-1"))
    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["etag"] == first.headers["etag"]
    assert [v["id"] for v in items(client, "/v1/vpcs", t)] == [first.json()["id"]]
    assert len(items(client, "/v1/security-groups", t)) == 1  # one default SG, not two

    # another body under that key: 422, and nothing is created
    other = client.post("/v1/vpcs", json={**body, "name": "twice"}, headers=with_key(t, "k-1"))
    problem = h.problem(other, 422)
    assert problem["errors"][0]["field"] == "Idempotency-Key"
    assert len(items(client, "/v1/vpcs", t)) == 1

    # keys belong to one tenant: another tenant's identical key is a fresh request
    u = make_tenant()
    theirs = client.post("/v1/vpcs", json=body, headers=with_key(u, "k-1"))
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
    assert theirs.json()["tenant_id"] == u.id

    # without a key every POST is a new request
    for _ in range(2):
        assert client.post("/v1/vpcs", json=body, headers=t.headers).status_code == 201
    assert len(items(client, "/v1/vpcs", t)) == 3


def test_idempotency_key_reused_on_another_path(client: TestClient, tenant: Tenant) -> None:
    """A key names one request: the same key and body on another path is 422."""
    v = h.vpc(client, tenant)
    body = {"vpc_id": v["id"], "name": "same-body"}
    r = client.post("/v1/security-groups", json=body, headers=with_key(tenant, "k-path"))
    assert r.status_code == 201, r.text
    problem = h.problem(
        client.post("/v1/routers", json=body, headers=with_key(tenant, "k-path")), 422
    )
    assert problem["errors"][0]["field"] == "Idempotency-Key"
    assert items(client, "/v1/routers", tenant) == []


def test_idempotent_patch_replays(client: TestClient, tenant: Tenant) -> None:
    """A replayed PATCH returns its first answer and does not run again."""
    v = h.vpc(client, tenant)
    url = f"/v1/vpcs/{v['id']}"
    first = client.patch(url, json={"name": "a"}, headers=with_key(tenant, "p-1"))
    assert first.status_code == 200 and first.json()["revision"] == 2
    later = client.patch(url, json={"name": "b"}, headers=tenant.headers)
    assert later.json()["revision"] == 3
    replay = client.patch(url, json={"name": "a"}, headers=with_key(tenant, "p-1"))
    assert replay.status_code == 200
    assert replay.content == first.content and replay.headers["etag"] == '"2"'
    current = client.get(url, headers=tenant.headers).json()
    assert current["name"] == "b" and current["revision"] == 3
    h.problem(client.patch(url, json={"name": "c"}, headers=with_key(tenant, "p-1")), 422)
    assert client.get(url, headers=tenant.headers).json() == current


def test_idempotency_in_flight_and_bad_key(client: TestClient, tenant: Tenant, db_url: str) -> None:
    """While the first request has no answer yet, a retry is 409; keys are 1..255 chars."""
    from models.db import engine_for
    from models.idempotency import IdempotencyRecord

    body = {"cidr": "10.0.0.0/16"}
    assert client.post("/v1/vpcs", json=body, headers=with_key(tenant, "k-run")).status_code == 201
    table = IdempotencyRecord.__table__
    with engine_for(db_url).begin() as conn:  # as if the first request were still running
        conn.execute(
            table.update()
            .where(table.c.key == "k-run")
            .values(status_code=None, body=None, headers=None)
        )
    h.problem(client.post("/v1/vpcs", json=body, headers=with_key(tenant, "k-run")), 409)
    assert len(items(client, "/v1/vpcs", tenant)) == 1

    h.problem(client.post("/v1/vpcs", json=body, headers=with_key(tenant, "x" * 256)), 400)
    assert len(items(client, "/v1/vpcs", tenant)) == 1


# -- ETag / If-Match -----------------------------------------------------------------------


def _targets(c: TestClient, t: Tenant) -> dict[str, tuple[str, dict[str, str], Json]]:
    """One resource of several kinds: url, headers, a mutable change."""
    v = h.vpc(c, t)
    s = h.subnet(c, t, v["id"])
    p = h.port(c, t, s["id"])
    g = h.group(c, t, v["id"])
    e = h.external_network(c)
    return {
        "vpc": (f"/v1/vpcs/{v['id']}", t.headers, {"name": "n"}),
        "subnet": (f"/v1/subnets/{s['id']}", t.headers, {"name": "n"}),
        "port": (f"/v1/ports/{p['id']}", t.headers, {"name": "n"}),
        "group": (f"/v1/security-groups/{g['id']}", t.headers, {"name": "n"}),
        "external": (f"/v1/external-networks/{e['id']}", ADMIN, {"name": "n"}),
    }


def test_if_match(client: TestClient, tenant: Tenant) -> None:
    """A stale If-Match is 412 and changes nothing; the current ETag, a list or * succeed."""
    targets = _targets(client, tenant)
    for kind, (url, who, change) in targets.items():
        before = client.get(url, headers=who)
        assert before.headers["etag"] == '"1"', kind
        for stale in ('"2"', 'W/"1"', '"0", "7"'):  # weak tags never match (RFC 9110)
            h.problem(client.patch(url, json=change, headers={**who, "If-Match": stale}), 412)
            h.problem(client.delete(url, headers={**who, "If-Match": stale}), 412)
        after = client.get(url, headers=who)
        assert after.json() == before.json() and after.headers["etag"] == '"1"', kind

        ok = client.patch(url, json=change, headers={**who, "If-Match": '"3", "1"'})
        assert ok.status_code == 200 and ok.headers["etag"] == '"2"', (kind, ok.text)
        h.problem(client.patch(url, json={"name": "m"}, headers={**who, "If-Match": '"1"'}), 412)
        assert client.get(url, headers=who).json()["name"] == "n"
        star = client.patch(url, json={"name": "m"}, headers={**who, "If-Match": "*"})
        assert star.status_code == 200 and star.headers["etag"] == '"3"', kind

    for kind in ("port", "subnet", "group", "vpc", "external"):  # children first
        url, who, _ = targets[kind]
        h.problem(client.delete(url, headers={**who, "If-Match": '"2"'}), 412)
        header = "*" if kind in ("port", "vpc") else '"3"'
        r = client.delete(url, headers={**who, "If-Match": header})
        assert r.status_code == 204, (kind, r.text)
        h.problem(client.get(url, headers=who), 404)


# -- delete in use -------------------------------------------------------------------------


def test_vpc_in_use(client: TestClient, tenant: Tenant) -> None:
    """A VPC lists exactly its subnets, routers and user groups as blockers."""
    v = h.vpc(client, tenant)
    url = f"/v1/vpcs/{v['id']}"
    s = h.subnet(client, tenant, v["id"])
    r = h.router(client, tenant, v["id"])
    g = h.group(client, tenant, v["id"])
    other = h.vpc(client, tenant, "10.1.0.0/16")
    h.subnet(client, tenant, other["id"], "10.1.1.0/24")  # not this VPC's business

    body = h.problem(client.delete(url, headers=tenant.headers), 409)
    assert blocking(body) == {("subnet", s["id"]), ("router", r["id"]), ("security_group", g["id"])}
    assert client.get(url, headers=tenant.headers).json() == v
    for kind, ident, left in (
        ("routers", r["id"], {("subnet", s["id"]), ("security_group", g["id"])}),
        ("subnets", s["id"], {("security_group", g["id"])}),
    ):
        assert client.delete(f"/v1/{kind}/{ident}", headers=tenant.headers).status_code == 204
        assert blocking(h.problem(client.delete(url, headers=tenant.headers), 409)) == left
    r = client.delete(f"/v1/security-groups/{g['id']}", headers=tenant.headers)
    assert r.status_code == 204
    assert client.delete(url, headers=tenant.headers).status_code == 204


def test_subnet_in_use(client: TestClient, tenant: Tenant) -> None:
    """A subnet is held by its user ports and by a router interface (named by router id)."""
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    url = f"/v1/subnets/{s['id']}"
    p = h.port(client, tenant, s["id"])
    assert blocking(h.problem(client.delete(url, headers=tenant.headers), 409)) == {
        ("port", p["id"])
    }
    r = h.router(client, tenant, v["id"])
    iface = h.attach(client, tenant, r["id"], s["id"])
    assert blocking(h.problem(client.delete(url, headers=tenant.headers), 409)) == {
        ("port", p["id"]),
        ("router", r["id"]),
    }
    assert client.delete(f"/v1/ports/{p['id']}", headers=tenant.headers).status_code == 204
    body = h.problem(client.delete(url, headers=tenant.headers), 409)
    assert blocking(body) == {("router", r["id"])}  # never the service-made port
    assert iface["port_id"] not in str(body)
    assert client.get(url, headers=tenant.headers).json()["revision"] == 1


def test_security_group_in_use(client: TestClient, tenant: Tenant) -> None:
    """A group is held by member ports and by other groups' rules naming it."""
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    web = h.group(client, tenant, v["id"], name="web")
    db = h.group(client, tenant, v["id"], name="db")
    url = f"/v1/security-groups/{web['id']}"
    h.rule(client, tenant, web["id"], remote_group_id=web["id"])  # its own rule: no blocker
    p = h.port(client, tenant, s["id"], security_group_ids=[web["id"]])
    ref = h.rule(client, tenant, db["id"], remote_group_id=web["id"])
    assert blocking(h.problem(client.delete(url, headers=tenant.headers), 409)) == {
        ("port", p["id"]),
        ("security_group_rule", ref["id"]),
    }
    client.patch(
        f"/v1/ports/{p['id']}", json={"security_group_ids": [db["id"]]}, headers=tenant.headers
    ).raise_for_status()
    assert blocking(h.problem(client.delete(url, headers=tenant.headers), 409)) == {
        ("security_group_rule", ref["id"])
    }
    client.delete(f"/v1/security-group-rules/{ref['id']}", headers=tenant.headers)
    assert client.delete(url, headers=tenant.headers).status_code == 204
    assert items(client, "/v1/security-group-rules", tenant, security_group_id=web["id"]) == []


def test_external_network_in_use(client: TestClient, tenant: Tenant) -> None:
    """An external network is held by routers with a gateway on it and by its floating IPs."""
    e = h.external_network(client)
    url = f"/v1/external-networks/{e['id']}"
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    r = h.router(client, tenant, v["id"], external_network_id=e["id"])
    h.attach(client, tenant, r["id"], s["id"])
    p = h.port(client, tenant, s["id"])
    f = h.floating_ip(client, tenant, e["id"], port_id=p["id"])
    assert blocking(h.problem(client.delete(url, headers=ADMIN), 409)) == {
        ("router", r["id"]),
        ("floating_ip", f["id"]),
    }
    # the router, too, is held by the floating IP that reaches its port through it, and
    # by its interface
    body = h.problem(client.delete(f"/v1/routers/{r['id']}", headers=tenant.headers), 409)
    assert blocking(body) == {
        ("floating_ip", f["id"]),
        ("router_interface", f"{r['id']}/{s['id']}"),
    }
    body = h.problem(
        client.patch(
            f"/v1/routers/{r['id']}", json={"external_network_id": None}, headers=tenant.headers
        ),
        409,
    )
    assert blocking(body) == {("floating_ip", f["id"])}
    assert client.delete(f"/v1/floating-ips/{f['id']}", headers=tenant.headers).status_code == 204
    assert blocking(h.problem(client.delete(url, headers=ADMIN), 409)) == {("router", r["id"])}
    client.patch(
        f"/v1/routers/{r['id']}", json={"external_network_id": None}, headers=tenant.headers
    ).raise_for_status()
    assert client.delete(url, headers=ADMIN).status_code == 204


def test_tenant_in_use(client: TestClient, make_tenant: Callable[..., Tenant]) -> None:
    """A tenant that owns VPCs cannot go; once empty it does, with its tokens."""
    t = make_tenant()
    a = h.vpc(client, t)
    b = h.vpc(client, t, "10.1.0.0/16")
    url = f"/v1/tenants/{t.id}"
    body = h.problem(client.delete(url, headers=ADMIN), 409)
    assert blocking(body) == {("vpc", a["id"]), ("vpc", b["id"])}
    for v in (a, b):
        assert client.delete(f"/v1/vpcs/{v['id']}", headers=t.headers).status_code == 204
    assert client.delete(url, headers=ADMIN).status_code == 204
    h.problem(client.get("/v1/vpcs", headers=t.headers), 401)


# -- service-made dependents ---------------------------------------------------------------


def test_default_group_goes_with_its_vpc(client: TestClient, tenant: Tenant) -> None:
    """The default SG never blocks its VPC, cannot be deleted alone, and leaves with the VPC."""
    v = h.vpc(client, tenant)
    sg = v["default_security_group_id"]
    group = client.get(f"/v1/security-groups/{sg}", headers=tenant.headers).json()
    assert group["is_default"] and group["vpc_id"] == v["id"]
    rules = items(client, "/v1/security-group-rules", tenant, security_group_id=sg)
    assert len(rules) == 2

    body = h.problem(client.delete(f"/v1/security-groups/{sg}", headers=tenant.headers), 409)
    assert "VPC" in body["detail"]
    assert client.delete(f"/v1/vpcs/{v['id']}", headers=tenant.headers).status_code == 204
    h.problem(client.get(f"/v1/security-groups/{sg}", headers=tenant.headers), 404)
    for rule in rules:
        h.problem(client.get(f"/v1/security-group-rules/{rule['id']}", headers=ADMIN), 404)
    assert items(client, "/v1/security-group-rules", ADMIN, security_group_id=sg) == []
    assert items(client, "/v1/security-groups", ADMIN) == []


def test_router_with_interfaces_is_409_and_its_legs_go_with_them(
    client: TestClient, tenant: Tenant
) -> None:
    """As in Neutron: a router with interfaces cannot be deleted (409 listing them);
    removing an interface removes its service-made leg port; the subnets are then free."""
    v = h.vpc(client, tenant)
    subnets = [h.subnet(client, tenant, v["id"], f"10.0.{i}.0/24") for i in (1, 2)]
    r = h.router(client, tenant, v["id"])
    legs = [h.attach(client, tenant, r["id"], s["id"])["port_id"] for s in subnets]
    body = h.problem(client.delete(f"/v1/routers/{r['id']}", headers=tenant.headers), 409)
    assert blocking(body) == {("router_interface", f"{r['id']}/{s['id']}") for s in subnets}
    assert len(items(client, "/v1/ports", tenant)) == 2  # nothing was half-deleted
    for s in subnets:
        url = f"/v1/routers/{r['id']}/interfaces/{s['id']}"
        assert client.delete(url, headers=tenant.headers).status_code == 204
    assert client.delete(f"/v1/routers/{r['id']}", headers=tenant.headers).status_code == 204
    for leg in legs:
        h.problem(client.get(f"/v1/ports/{leg}", headers=tenant.headers), 404)
    assert items(client, "/v1/ports", tenant) == []
    for s in subnets:
        assert client.delete(f"/v1/subnets/{s['id']}", headers=tenant.headers).status_code == 204
    assert client.delete(f"/v1/vpcs/{v['id']}", headers=tenant.headers).status_code == 204


# -- immutable, unknown and read-only fields -----------------------------------------------


def test_immutable_fields(client: TestClient, tenant: Tenant) -> None:
    """Changing an immutable field is 422 naming it, and nothing (not even a name) changes."""
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    other = h.subnet(client, tenant, v["id"], "10.0.2.0/24")
    p = h.port(client, tenant, s["id"])
    v2 = h.vpc(client, tenant, "10.1.0.0/16")
    g = h.group(client, tenant, v["id"])
    rule = h.rule(client, tenant, g["id"])
    r = h.router(client, tenant, v["id"])
    e = h.external_network(client)
    f = h.floating_ip(client, tenant, e["id"])
    host = h.host(client)
    t = tenant.headers
    cases = [
        (f"/v1/vpcs/{v['id']}", t, "cidr", "10.9.0.0/16"),
        (f"/v1/subnets/{s['id']}", t, "cidr", "10.0.1.0/25"),
        (f"/v1/subnets/{s['id']}", t, "vpc_id", v2["id"]),
        (f"/v1/subnets/{s['id']}", t, "gateway_ip", "10.0.1.2"),
        (f"/v1/ports/{p['id']}", t, "subnet_id", other["id"]),
        (f"/v1/ports/{p['id']}", t, "ip_address", "10.0.1.99"),
        (f"/v1/ports/{p['id']}", t, "mac_address", "fa:16:3e:aa:bb:cc"),
        (f"/v1/routers/{r['id']}", t, "vpc_id", v2["id"]),
        (f"/v1/security-groups/{g['id']}", t, "vpc_id", v2["id"]),
        (f"/v1/security-group-rules/{rule['id']}", t, "protocol", "udp"),
        (f"/v1/floating-ips/{f['id']}", t, "external_network_id", str(uuid.uuid4())),
        (f"/v1/external-networks/{e['id']}", ADMIN, "cidr", "203.0.112.0/23"),
        (f"/v1/hosts/{host['id']}", ADMIN, "name", "host-9"),
    ]
    for url, who, name, value in cases:
        before = client.get(url, headers=who).json()
        change = {"vtep_ip": "192.0.2.99"} if "/hosts/" in url else {"description": "changed"}
        res = client.patch(url, json={**change, name: value}, headers=who)
        body = h.problem(res, 422)
        assert [e["field"] for e in body["errors"]] == [f"body.{name}"], body
        assert "cannot be changed" in body["errors"][0]["message"]
        assert client.get(url, headers=who).json() == before


def test_unknown_and_read_only_fields(client: TestClient, tenant: Tenant) -> None:
    """POST and PATCH reject fields they do not know, and server-set fields, by name."""
    v = h.vpc(client, tenant)
    post_cases = [
        ("/v1/vpcs", {"cidr": "10.1.0.0/16", "colour": "red"}, "colour"),
        ("/v1/vpcs", {"cidr": "10.1.0.0/16", "id": str(uuid.uuid4())}, "id"),
        (
            "/v1/vpcs",
            {"cidr": "10.1.0.0/16", "default_security_group_id": "x"},
            "default_security_group_id",
        ),
        ("/v1/vpcs", {"cidr": "10.1.0.0/16", "revision": 9}, "revision"),
        ("/v1/subnets", {"vpc_id": v["id"], "cidr": "10.0.1.0/24", "vni": 42}, "vni"),
        ("/v1/subnets", {"vpc_id": v["id"], "cidr": "10.0.1.0/24", "status": "active"}, "status"),
        ("/v1/routers", {"vpc_id": v["id"], "external_ip": "203.0.113.9"}, "external_ip"),
        ("/v1/security-groups", {"vpc_id": v["id"], "tenant_id": str(uuid.uuid4())}, "tenant_id"),
    ]
    for path, body, name in post_cases:
        problem = h.problem(client.post(path, json=body, headers=tenant.headers), 422)
        assert [e["field"] for e in problem["errors"]] == [f"body.{name}"], problem
    assert [x["id"] for x in items(client, "/v1/vpcs", tenant)] == [v["id"]]
    assert items(client, "/v1/subnets", tenant) == []
    assert items(client, "/v1/routers", tenant) == []

    url = f"/v1/vpcs/{v['id']}"
    for body, name in (
        ({"colour": "red"}, "colour"),
        ({"revision": 5}, "revision"),
        ({"name": "x", "created_at": "2020-01-01T00:00:00Z"}, "created_at"),
    ):
        problem = h.problem(client.patch(url, json=body, headers=tenant.headers), 422)
        assert [e["field"] for e in problem["errors"]] == [f"body.{name}"], problem
    assert client.get(url, headers=tenant.headers).json() == v


# -- auth and problem documents -------------------------------------------------------------


def test_authentication(client: TestClient) -> None:
    """No token, an unknown token, or another scheme: 401 problems with a Bearer challenge."""
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic YTpi"},
        {"Authorization": "Bearer "},
    ):
        for method, path in (
            ("GET", "/v1/vpcs"),
            ("POST", "/v1/vpcs"),
            ("GET", "/v1/tenants"),
            ("DELETE", f"/v1/ports/{uuid.uuid4()}"),
        ):
            r = client.request(
                method,
                path,
                headers=headers,
                json={"cidr": "10.0.0.0/16"} if method == "POST" else None,
            )
            h.problem(r, 401)
            assert r.headers["www-authenticate"].startswith("Bearer")
    r = client.post(
        "/v1/vpcs",
        json={"cidr": "10.0.0.0/16"},
        headers={"Authorization": "Bearer nope", "Idempotency-Key": "k"},
    )
    h.problem(r, 401)


def test_admin_only_calls(client: TestClient, tenant: Tenant) -> None:
    """Tenants get 403 problems on admin calls and nothing is made."""
    t = tenant.headers
    calls = [
        ("POST", "/v1/tenants", {"name": "evil"}),
        ("GET", "/v1/tenants", None),
        ("GET", f"/v1/tenants/{tenant.id}", None),
        ("POST", f"/v1/tenants/{tenant.id}/tokens", None),
        ("GET", f"/v1/tenants/{tenant.id}/quotas", None),
        ("PATCH", f"/v1/tenants/{tenant.id}/quotas", {"vpcs": 1000}),
        ("POST", "/v1/hosts", {"name": "h1", "vtep_ip": "192.0.2.1"}),
        ("GET", "/v1/hosts", None),
        ("POST", "/v1/external-networks", {"cidr": "203.0.113.0/24", "gateway_ip": "203.0.113.1"}),
    ]
    for method, path, body in calls:
        h.problem(client.request(method, path, json=body, headers=t), 403)
    e = h.external_network(client)
    h.problem(client.patch(f"/v1/external-networks/{e['id']}", json={"name": "x"}, headers=t), 403)
    h.problem(client.delete(f"/v1/external-networks/{e['id']}", headers=t), 403)
    assert [x["name"] for x in items(client, "/v1/tenants", ADMIN)] == ["alpha"]
    assert items(client, "/v1/hosts", ADMIN) == []
    assert [x["id"] for x in items(client, "/v1/external-networks", ADMIN)] == [e["id"]]
    assert client.get(f"/v1/tenants/{tenant.id}/quotas", headers=ADMIN).json()["vpcs"] < 1000


def test_errors_are_problem_documents(client: TestClient, tenant: Tenant) -> None:
    """Every error, from routing to validation, is application/problem+json."""
    t = tenant.headers
    h.problem(client.get("/v1/nothing-here", headers=t), 404)
    h.problem(client.get(f"/v1/vpcs/{uuid.uuid4()}", headers=t), 404)
    h.problem(client.put("/v1/vpcs", json={}, headers=t), 405)
    body = h.problem(client.post("/v1/vpcs", json={"cidr": "10.0.0.1/16"}, headers=t), 422)
    assert body["errors"][0]["field"] == "body.cidr"
    body = h.problem(
        client.post(
            "/v1/vpcs", content=b"{not json", headers={**t, "content-type": "application/json"}
        ),
        422,
    )
    assert body["errors"]


# -- address reuse, exhaustion, quotas -----------------------------------------------------


def test_tenants_reuse_cidrs_and_addresses(
    client: TestClient, make_tenant: Callable[..., Tenant]
) -> None:
    """Address spaces are private: tenants, and VPCs of one tenant, may overlap freely."""
    made = []
    for t in (make_tenant(), make_tenant()):
        v = h.vpc(client, t, "10.0.0.0/16")
        s = h.subnet(client, t, v["id"], "10.0.1.0/24")
        p = h.port(client, t, s["id"], ip_address="10.0.1.10", mac_address="fa:16:3e:00:00:10")
        made.append((v, s, p))
    (v1, s1, p1), (v2, s2, p2) = made
    assert v1["cidr"] == v2["cidr"] and s1["cidr"] == s2["cidr"]
    assert s1["vni"] != s2["vni"]
    assert (p1["ip_address"], p1["mac_address"]) == (p2["ip_address"], p2["mac_address"])

    t = make_tenant()
    twins = [h.vpc(client, t, "10.0.0.0/16") for _ in range(2)]
    ports = []
    for v in twins:
        s = h.subnet(client, t, v["id"], "10.0.1.0/24")
        ports.append(h.port(client, t, s["id"], ip_address="10.0.1.10"))
    assert ports[0]["ip_address"] == ports[1]["ip_address"]
    assert ports[0]["vpc_id"] != ports[1]["vpc_id"]


def test_subnet_exhaustion(client: TestClient, tenant: Tenant) -> None:
    """A /29 has 5 addresses once network, broadcast and gateway are taken: then 409."""
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"], "10.0.1.0/29")
    assert s["gateway_ip"] == "10.0.1.1"
    got = {h.port(client, tenant, s["id"])["ip_address"] for _ in range(5)}
    assert got == {f"10.0.1.{i}" for i in range(2, 7)}
    body = h.problem(
        client.post("/v1/ports", json={"subnet_id": s["id"]}, headers=tenant.headers), 409
    )
    assert "no free address" in body["detail"]
    assert len(items(client, "/v1/ports", tenant)) == 5


QUOTA_KINDS = ["vpcs", "subnets", "ports", "routers", "floating_ips"]


@pytest.mark.parametrize("kind", QUOTA_KINDS)
def test_quota_exceeded(client: TestClient, make_tenant: Callable[..., Tenant], kind: str) -> None:
    """Past the tenant's limit a create is 409 with a quota problem, and nothing is made."""
    t = make_tenant(**{kind: 2})
    v = h.vpc(client, t)
    s = h.subnet(client, t, v["id"])
    e = h.external_network(client)
    make: dict[str, tuple[str, Json]] = {
        "vpcs": ("/v1/vpcs", {"cidr": "10.5.0.0/16"}),
        "subnets": ("/v1/subnets", {"vpc_id": v["id"], "cidr": "10.0.9.0/24"}),
        "ports": ("/v1/ports", {"subnet_id": s["id"]}),
        "routers": ("/v1/routers", {"vpc_id": v["id"]}),
        "floating_ips": ("/v1/floating-ips", {"external_network_id": e["id"]}),
    }
    path, body = make[kind]
    while len(items(client, path, t)) < 2:
        if kind == "subnets":
            body = {**body, "cidr": "10.0.8.0/24"}
        assert client.post(path, json=body, headers=t.headers).status_code == 201
    if kind == "subnets":
        body = {**body, "cidr": "10.0.7.0/24"}
    problem = h.problem(client.post(path, json=body, headers=t.headers), 409)
    assert kind in problem["detail"]
    assert len(items(client, path, t)) == 2


# -- health ---------------------------------------------------------------------------------


def test_health_ready_and_metrics(client: TestClient, tenant: Tenant) -> None:
    """Outside /v1 and without auth: liveness, readiness (DB answers) and Prometheus text."""
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    client.get("/v1/vpcs", headers=tenant.headers)
    m = client.get("/metrics")
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    lines = [ln for ln in m.text.splitlines() if ln.startswith("vpcd_http_requests_total{")]
    assert any(
        'route="/v1/vpcs"' in ln and 'method="GET"' in ln and 'status="200"' in ln for ln in lines
    ), lines


def test_unknown_query_parameter_is_422_not_an_unfiltered_list(client, tenant) -> None:  # type: ignore[no-untyped-def]
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    h.port(client, tenant, s["id"])
    r = client.get("/v1/ports", params={"vpc_id": v["id"]}, headers=tenant.headers)
    body = h.problem(r, 422)
    assert body["errors"][0]["field"] == "query.vpc_id"
    assert "subnet_id" in body["errors"][0]["message"]  # says what it does filter by
    assert client.get("/v1/ports", params={"subnet_id": s["id"]}, headers=tenant.headers).json()[
        "items"
    ]


def test_a_new_resource_was_updated_when_it_was_created(client, tenant) -> None:  # type: ignore[no-untyped-def]
    v = h.vpc(client, tenant)
    assert v["created_at"] == v["updated_at"] and v["created_at"].endswith("Z")
    p = client.patch(f"/v1/vpcs/{v['id']}", json={"name": "x"}, headers=tenant.headers).json()
    assert p["created_at"] == v["created_at"] and p["updated_at"] > v["updated_at"]


def test_setting_the_admin_token_revokes_older_admin_tokens(client, db_url) -> None:  # type: ignore[no-untyped-def]
    from api.app import ensure_admin_token
    from api.settings import Settings

    assert client.get("/v1/tenants", headers=ADMIN).status_code == 200
    # As another process would (a restart with a new VPCD_ADMIN_TOKEN): this app's token
    # cache refuses the old token once its lifetime has passed (tests/api/test_tokens.py).
    ensure_admin_token(Settings(database_url=db_url, vpcd_admin_token="rotated-admin-token"))
    rotated = {"Authorization": "Bearer rotated-admin-token"}
    tokens = client.app.state.tokens
    real_clock = tokens.clock
    tokens.clock = lambda: real_clock() + tokens.ttl + 1
    try:
        assert client.get("/v1/tenants", headers=ADMIN).status_code == 401
        assert client.get("/v1/tenants", headers=rotated).status_code == 200
    finally:
        ensure_admin_token(
            Settings(database_url=db_url, vpcd_admin_token=ADMIN["Authorization"][7:])
        )
        tokens.clock = real_clock
        tokens.revoked()
    assert client.get("/v1/tenants", headers=ADMIN).status_code == 200


def _routed_port(client: TestClient, t: Tenant, ext: dict[str, Any], cidr: str) -> dict[str, Any]:
    v = h.vpc(client, t, cidr=cidr)
    s = h.subnet(client, t, v["id"], cidr=cidr.replace("/16", "/24"))
    r = h.router(client, t, v["id"], external_network_id=ext["id"])
    h.attach(client, t, r["id"], s["id"])
    return h.port(client, t, s["id"])


def test_even_the_admin_cannot_map_one_tenants_floating_ip_to_anothers_port(
    client, make_tenant
) -> None:  # type: ignore[no-untyped-def]
    a, b = make_tenant("fip-a"), make_tenant("fip-b")
    ext = h.external_network(client)
    _routed_port(client, a, ext, "10.0.0.0/16")
    port_b = _routed_port(client, b, ext, "10.1.0.0/16")
    fip_a = h.floating_ip(client, a, ext["id"])
    r = client.patch(
        f"/v1/floating-ips/{fip_a['id']}", json={"port_id": port_b["id"]}, headers=ADMIN
    )
    h.problem(r, 404)
    assert (
        client.get(f"/v1/floating-ips/{fip_a['id']}", headers=a.headers).json()["port_id"] is None
    )


def test_changing_a_router_gateway_is_one_revision(client, tenant) -> None:  # type: ignore[no-untyped-def]
    ext1 = h.external_network(client)
    ext2 = h.external_network(client, cidr="198.51.100.0/24", gateway_ip="198.51.100.1")
    v = h.vpc(client, tenant)
    r = h.router(client, tenant, v["id"], external_network_id=ext1["id"])
    assert r["revision"] == 1 and r["external_ip"].startswith("203.0.113.")
    moved = client.patch(
        f"/v1/routers/{r['id']}", json={"external_network_id": ext2["id"]}, headers=tenant.headers
    ).json()
    assert moved["revision"] == 2 and moved["external_ip"].startswith("198.51.100.")
    cleared = client.patch(
        f"/v1/routers/{r['id']}", json={"external_network_id": None}, headers=tenant.headers
    ).json()
    assert cleared["revision"] == 3 and cleared["external_ip"] is None
