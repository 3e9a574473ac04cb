"""Tenant isolation over every endpoint and method (DESIGN §3, issue 2).

Tenant A owns a full set: VPC, subnets, port, router with an interface and an external
gateway, security group + rule, a floating IP on A's port. Tenant B owns the same shapes with
the same names, CIDRs and fixed IPs. For every /v1 route (taken from `app.routes`, so a new
endpoint without a probe fails `test_matrix_covers_every_v1_route`) B tries to read, list,
change, delete or attach to A's things. Each refusal must be the 404 a random id gets (no
existence leak, never 403), and afterwards A's resources must be byte-for-byte unchanged
(same body, same ETag/revision). Admin-only routes answer 403 to tenants; every route
answers 401 without a valid token.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.api import helpers as h
from tests.api.helpers import dependency_names, v1_routes
from tests.conftest import ADMIN, Tenant

SHARED_NAME = "same"
IDEMPOTENCY_KEY = "create-my-vpc"
A_ONLY_KEY = "only-a-used-this-key"
A_ONLY_BODY = {"cidr": "10.5.0.0/16", "name": "a-only"}


# -- the routes --------------------------------------------------------------------------


def route_keys(app: Any) -> set[tuple[str, str]]:
    return {(m, r.path) for r in v1_routes(app) for m in r.methods if m != "HEAD"}


EXPECTED_ADMIN_ONLY = {
    ("POST", "/v1/tenants"),
    ("GET", "/v1/tenants"),
    ("GET", "/v1/tenants/{tenant_id}"),
    ("PATCH", "/v1/tenants/{tenant_id}"),
    ("DELETE", "/v1/tenants/{tenant_id}"),
    ("POST", "/v1/tenants/{tenant_id}/tokens"),
    ("GET", "/v1/tenants/{tenant_id}/quotas"),
    ("PATCH", "/v1/tenants/{tenant_id}/quotas"),
    ("POST", "/v1/hosts"),
    ("GET", "/v1/hosts"),
    ("GET", "/v1/hosts/{host_id}"),
    ("PATCH", "/v1/hosts/{host_id}"),
    ("DELETE", "/v1/hosts/{host_id}"),
    ("POST", "/v1/external-networks"),
    ("PATCH", "/v1/external-networks/{external_network_id}"),
    ("DELETE", "/v1/external-networks/{external_network_id}"),
    ("POST", "/v1/physical-networks"),
    ("GET", "/v1/physical-networks"),
    ("GET", "/v1/physical-networks/{physical_network_id}"),
    ("PATCH", "/v1/physical-networks/{physical_network_id}"),
    ("DELETE", "/v1/physical-networks/{physical_network_id}"),
    ("POST", "/v1/address-scopes"),
    ("PATCH", "/v1/address-scopes/{address_scope_id}"),
    ("DELETE", "/v1/address-scopes/{address_scope_id}"),
}
# Admin-made objects the admin-only probes address (any id: the 403 comes first).
ADMIN_IDS = {"physical_network_id": str(uuid.uuid4()), "address_scope_id": str(uuid.uuid4())}


# -- the two worlds ----------------------------------------------------------------------


def build(c: TestClient, t: Tenant, ext_id: str) -> dict[str, str]:
    """One tenant's full set, with the names, CIDRs and fixed IPs both tenants share."""
    r = c.post(
        "/v1/vpcs",
        json={"cidr": "10.0.0.0/16", "name": SHARED_NAME, "tags": ["t"]},
        headers={**t.headers, "Idempotency-Key": IDEMPOTENCY_KEY},
    )
    assert r.status_code == 201, r.text
    vpc = r.json()
    subnet = h.subnet(c, t, vpc["id"], "10.0.1.0/24", name=SHARED_NAME, tags=["t"])
    spare = h.subnet(c, t, vpc["id"], "10.0.2.0/24", name="spare")
    sg = h.group(c, t, vpc["id"], name=SHARED_NAME)
    rule = h.rule(c, t, sg["id"], port_min=22, port_max=22, remote_group_id=sg["id"])
    default_sg = vpc["default_security_group_id"]
    port = h.port(
        c,
        t,
        subnet["id"],
        name=SHARED_NAME,
        ip_address="10.0.1.10",
        host="compute-1",
        security_group_ids=[default_sg, sg["id"]],
        tags=["t"],
    )
    router = h.router(c, t, vpc["id"], name=SHARED_NAME, external_network_id=ext_id)
    leg = h.attach(c, t, router["id"], subnet["id"])
    fip = h.floating_ip(c, t, ext_id, port_id=port["id"])
    assert fip["router_id"] == router["id"]
    acl = h.create(c, "/v1/network-acls", t, vpc_id=vpc["id"], name=SHARED_NAME)
    entry = h.create(
        c, "/v1/network-acl-entries", t, network_acl_id=acl["id"], rule_number=100,
        direction="ingress", action="allow", protocol="any", cidr="0.0.0.0/0",
    )  # fmt: skip
    r = c.patch(f"/v1/subnets/{spare['id']}", json={"network_acl_id": acl["id"]}, headers=t.headers)
    assert r.status_code == 200, r.text
    lb = h.create(
        c,
        "/v1/load-balancers",
        t,
        vip_subnet_id=subnet["id"],
        vip_address="10.0.1.100",
        name=SHARED_NAME,
        tags=["t"],
        listeners=[
            {
                "protocol": "TCP",
                "protocol_port": 80,
                "name": SHARED_NAME,
                "default_pool": {
                    "protocol": "TCP",
                    "lb_algorithm": "ROUND_ROBIN",
                    "name": SHARED_NAME,
                    "members": [{"address": "10.0.1.10", "protocol_port": 8080}],
                    "healthmonitor": {"type": "TCP", "delay": 5, "timeout": 3, "max_retries": 2},
                },
            }
        ],
    )
    lb_pool = lb["pools"][0]
    default_rules = c.get(
        "/v1/security-group-rules", params={"security_group_id": default_sg}, headers=t.headers
    ).json()["items"]
    return {
        "tenant": t.id,
        "vpc": vpc["id"],
        "subnet": subnet["id"],
        "spare_subnet": spare["id"],
        "sg": sg["id"],
        "default_sg": default_sg,
        "rule": rule["id"],
        "default_rule": default_rules[0]["id"],
        "port": port["id"],
        "iface_port": leg["port_id"],
        "router": router["id"],
        "fip": fip["id"],
        "acl": acl["id"],
        "acl_entry": entry["id"],
        "lb": lb["id"],
        "vip_port": lb["vip_port_id"],
        "listener": lb["listeners"][0]["id"],
        "pool": lb_pool["id"],
        "member": lb_pool["members"][0]["id"],
        "monitor": lb_pool["healthmonitor_id"],
    }


BY_ID = {
    "vpc": "/v1/vpcs/{}",
    "vpc2": "/v1/vpcs/{}",
    "subnet": "/v1/subnets/{}",
    "spare_subnet": "/v1/subnets/{}",
    "sg": "/v1/security-groups/{}",
    "default_sg": "/v1/security-groups/{}",
    "rule": "/v1/security-group-rules/{}",
    "default_rule": "/v1/security-group-rules/{}",
    "port": "/v1/ports/{}",
    "iface_port": "/v1/ports/{}",
    "router": "/v1/routers/{}",
    "fip": "/v1/floating-ips/{}",
    "acl": "/v1/network-acls/{}",
    "acl_entry": "/v1/network-acl-entries/{}",
    "lb": "/v1/load-balancers/{}",
    "vip_port": "/v1/ports/{}",
    "listener": "/v1/listeners/{}",
    "pool": "/v1/pools/{}",
    "monitor": "/v1/health-monitors/{}",
}
LISTS = [
    "/v1/vpcs",
    "/v1/subnets",
    "/v1/ports",
    "/v1/routers",
    "/v1/security-groups",
    "/v1/security-group-rules",
    "/v1/network-acls",
    "/v1/network-acl-entries",
    "/v1/floating-ips",
    "/v1/external-networks",
    "/v1/load-balancers",
    "/v1/listeners",
    "/v1/pools",
    "/v1/health-monitors",
]


@dataclass
class Ctx:
    c: TestClient
    A: Tenant
    B: Tenant
    a: dict[str, str]
    b: dict[str, str]
    ext: str
    host: str

    def a_ids(self) -> set[str]:
        return set(self.a.values())

    def as_b(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        return self.c.request(method, path, json=body, headers={**self.B.headers, **headers})


def view(ctx: Ctx, t: Tenant, ids: dict[str, str], lists: bool) -> dict[str, Any]:
    """What an owner sees of its resources: each body with its ETag (the revision)."""
    out: dict[str, Any] = {}
    for key, path in BY_ID.items():
        if key not in ids:
            continue
        r = ctx.c.get(path.format(ids[key]), headers=t.headers)
        assert r.status_code == 200, r.text
        out[key] = (r.headers["etag"], r.json())
    r = ctx.c.get(f"/v1/routers/{ids['router']}/interfaces", headers=t.headers)
    out["interfaces"] = r.json()
    r = ctx.c.get(f"/v1/pools/{ids['pool']}/members/{ids['member']}", headers=t.headers)
    out["member"] = (r.headers["etag"], r.json())
    out["members"] = ctx.c.get(f"/v1/pools/{ids['pool']}/members", headers=t.headers).json()
    if lists:
        for path in LISTS:
            out[path] = ctx.c.get(path, params={"limit": 1000}, headers=t.headers).json()
        tid = ids["tenant"]
        for path in (
            f"/v1/tenants/{tid}",
            f"/v1/tenants/{tid}/quotas",
            f"/v1/external-networks/{ctx.ext}",
            f"/v1/hosts/{ctx.host}",
        ):
            r = ctx.c.get(path, headers=ADMIN)
            assert r.status_code == 200, r.text
            out[path] = (r.headers.get("etag"), r.json())
        out["tenants"] = ctx.c.get("/v1/tenants", headers=ADMIN).json()
    return out


@pytest.fixture
def ctx(client: TestClient, make_tenant: Callable[..., Tenant]) -> Ctx:
    host = h.host(client, "net-1", roles=["network", "compute"])
    h.host(client, "compute-1", vtep_ip="192.0.2.12")  # ports bind only to registered hosts
    ext = h.external_network(client, name="internet")
    A, B = make_tenant("tenant-a"), make_tenant("tenant-b")
    a = build(client, A, ext["id"])
    r = client.post(
        "/v1/vpcs", json=A_ONLY_BODY, headers={**A.headers, "Idempotency-Key": A_ONLY_KEY}
    )
    assert r.status_code == 201, r.text
    a["vpc2"] = r.json()["id"]
    b = build(client, B, ext["id"])
    assert not set(a.values()) & set(b.values())
    return Ctx(client, A, B, a, b, ext["id"], host["id"])


# -- assertions --------------------------------------------------------------------------


def hidden(ctx: Ctx, method: str, path: str, body: Any = None, **headers: str) -> None:
    """B's call naming A's ids is a 404, indistinguishable from one naming fresh ids."""
    r = ctx.as_b(method, path, body, **headers)
    problem = h.problem(r, 404)
    text = json.dumps([path, body])
    ghosts = {aid: str(uuid.uuid4()) for aid in ctx.a_ids() if aid in text}
    assert ghosts, f"probe {method} {path} names none of A's ids"
    for aid, ghost in ghosts.items():
        text = text.replace(aid, ghost)
    ghost_path, ghost_body = json.loads(text)
    g = h.problem(ctx.as_b(method, ghost_path, ghost_body, **headers), 404)
    for aid, ghost in ghosts.items():
        g = json.loads(json.dumps(g).replace(ghost, aid))
    assert problem == g, f"{method} {path}: A's id answers differently from a missing id"


def refused(ctx: Ctx, method: str, path: str, body: Any = None, status: int = 403) -> None:
    h.problem(ctx.as_b(method, path, body), status)


def lists_none(
    ctx: Ctx, path: str, params: dict[str, str] | None = None, must_have: str | None = None
) -> None:
    """Every page of B's list is free of A's ids (A's tenant id included)."""
    seen: list[str] = []
    token: str | None = None
    while True:
        q = {**(params or {}), "limit": "2", **({"page_token": token} if token else {})}
        r = ctx.c.get(path, params=q, headers=ctx.B.headers)
        assert r.status_code == 200, r.text
        for aid in ctx.a_ids():
            assert aid not in r.text, f"GET {path}?{params} shows A's {aid}"
        seen += [i["id"] for i in r.json()["items"]]
        token = r.json()["next_page_token"]
        if not token:
            break
    if must_have is not None:
        assert must_have in seen, f"GET {path}?{params} lacks B's own {must_have}"


# -- the probes, one entry per (method, route) -------------------------------------------

Probe = Callable[[Ctx], None]
PROBES: dict[tuple[str, str], Probe] = {}


def probe(method: str, path: str) -> Callable[[Probe], Probe]:
    def register(fn: Probe) -> Probe:
        assert (method, path) not in PROBES
        PROBES[(method, path)] = fn
        return fn

    return register


def crud(
    base: str,
    param: str,
    keys: list[str],
    patches: list[dict[str, Any]],
    filters: list[dict[str, str]],
    own: str,
) -> None:
    """GET/PATCH/DELETE by id and the list of one resource type."""
    item = f"{base}/{{{param}}}"

    @probe("GET", item)
    def _get(ctx: Ctx) -> None:
        for key in keys:
            hidden(ctx, "GET", f"{base}/{ctx.a[key]}")
            assert ctx.c.get(f"{base}/{ctx.a[key]}", headers=ADMIN).status_code == 200

    @probe("PATCH", item)
    def _patch(ctx: Ctx) -> None:
        for key in keys:
            for body in patches:
                hidden(ctx, "PATCH", f"{base}/{ctx.a[key]}", body)
            hidden(ctx, "PATCH", f"{base}/{ctx.a[key]}", patches[0], **{"If-Match": "*"})
            hidden(ctx, "PATCH", f"{base}/{ctx.a[key]}", {})

    @probe("DELETE", item)
    def _delete(ctx: Ctx) -> None:
        for key in keys:
            hidden(ctx, "DELETE", f"{base}/{ctx.a[key]}")
            hidden(ctx, "DELETE", f"{base}/{ctx.a[key]}", **{"If-Match": "*"})

    @probe("GET", base)
    def _list(ctx: Ctx) -> None:
        lists_none(ctx, base, must_have=ctx.b[own])
        for f in filters:
            lists_none(
                ctx,
                base,
                {k: ctx.a.get(v[1:], v) if v.startswith("$") else v for k, v in f.items()},
            )


crud(
    "/v1/vpcs",
    "vpc_id",
    ["vpc", "vpc2"],
    [{"name": "pwned"}, {"tags": []}, {"description": "x"}],
    [{"name": SHARED_NAME}, {"cidr": "10.0.0.0/16"}, {"tag": "t"}],
    "vpc",
)
crud(
    "/v1/subnets",
    "subnet_id",
    ["subnet", "spare_subnet"],
    [
        {"name": "pwned"},
        {"dns_nameservers": ["10.0.0.2"]},
        {"allocation_pools": [{"start": "10.0.1.100", "end": "10.0.1.110"}]},
    ],
    [{"vpc_id": "$vpc"}, {"cidr": "10.0.1.0/24"}, {"name": SHARED_NAME}, {"tag": "t"}],
    "subnet",
)
crud(
    "/v1/ports",
    "port_id",
    ["port", "iface_port"],
    [{"name": "pwned"}, {"security_group_ids": []}, {"netns": "evil"}, {"host": "compute-2"}],
    [
        {"subnet_id": "$subnet"},
        {"security_group_id": "$sg"},
        {"device_id": "$router"},
        {"ip_address": "10.0.1.10"},
        {"name": SHARED_NAME},
        {"host": "compute-1"},
        {"tag": "t"},
    ],
    "port",
)
crud(
    "/v1/routers",
    "router_id",
    ["router"],
    [{"name": "pwned"}, {"external_network_id": None}, {"enable_snat": False}, {"routes": []}],
    [{"vpc_id": "$vpc"}, {"name": SHARED_NAME}],
    "router",
)
crud(
    "/v1/security-groups",
    "security_group_id",
    ["sg", "default_sg"],
    [{"name": "pwned"}, {"description": "x"}],
    [{"vpc_id": "$vpc"}, {"name": SHARED_NAME}, {"name": "default"}],
    "sg",
)
crud(
    "/v1/security-group-rules",
    "rule_id",
    ["rule", "default_rule"],
    [{"description": "pwned"}],
    [
        {"security_group_id": "$sg"},
        {"security_group_id": "$default_sg"},
        {"remote_group_id": "$sg"},
        {"direction": "ingress"},
    ],
    "rule",
)
crud(
    "/v1/network-acls",
    "network_acl_id",
    ["acl"],
    [{"name": "pwned"}, {"tags": []}],
    [{"vpc_id": "$vpc"}, {"name": SHARED_NAME}],
    "acl",
)
crud(
    "/v1/network-acl-entries",
    "entry_id",
    ["acl_entry"],
    [{"action": "deny"}, {"description": "pwned"}],
    [{"network_acl_id": "$acl"}, {"direction": "ingress"}],
    "acl_entry",
)
crud(
    "/v1/floating-ips",
    "floating_ip_id",
    ["fip"],
    [{"port_id": None}, {"description": "pwned"}],
    [{"port_id": "$port"}, {"router_id": "$router"}],
    "fip",
)


crud(
    "/v1/load-balancers",
    "load_balancer_id",
    ["lb"],
    [{"name": "pwned"}, {"admin_state_up": False}, {"tags": []}],
    [
        {"vpc_id": "$vpc"},
        {"vip_subnet_id": "$subnet"},
        {"vip_address": "10.0.1.100"},
        {"name": SHARED_NAME},
        {"tag": "t"},
    ],
    "lb",
)
crud(
    "/v1/listeners",
    "listener_id",
    ["listener"],
    [{"name": "pwned"}, {"default_pool_id": None}, {"admin_state_up": False}],
    [{"load_balancer_id": "$lb"}, {"default_pool_id": "$pool"}, {"name": SHARED_NAME}],
    "listener",
)
crud(
    "/v1/pools",
    "pool_id",
    ["pool"],
    [{"name": "pwned"}, {"lb_algorithm": "SOURCE_IP"}],
    [{"load_balancer_id": "$lb"}, {"name": SHARED_NAME}, {"protocol": "TCP"}],
    "pool",
)
crud(
    "/v1/health-monitors",
    "health_monitor_id",
    ["monitor"],
    [{"name": "pwned"}, {"delay": 9}],
    [{"pool_id": "$pool"}, {"type": "TCP"}],
    "monitor",
)


@probe("POST", "/v1/load-balancers")
def _create_lb(ctx: Ctx) -> None:
    hidden(ctx, "POST", "/v1/load-balancers", {"vip_subnet_id": ctx.a["subnet"]})
    # A's VIP address on A's subnet: 404, not the 409 that would confirm it is taken
    body = {"vip_subnet_id": ctx.a["subnet"], "vip_address": "10.0.1.100"}
    hidden(ctx, "POST", "/v1/load-balancers", body)


@probe("POST", "/v1/listeners")
def _create_listener(ctx: Ctx) -> None:
    body = {"load_balancer_id": ctx.a["lb"], "protocol": "TCP", "protocol_port": 81}
    hidden(ctx, "POST", "/v1/listeners", body)
    hidden(ctx, "POST", "/v1/listeners", {**body, "protocol_port": 80})  # A's taken port
    own = {"load_balancer_id": ctx.b["lb"], "protocol": "TCP", "protocol_port": 82}
    hidden(ctx, "POST", "/v1/listeners", {**own, "default_pool_id": ctx.a["pool"]})


@probe("POST", "/v1/pools")
def _create_pool(ctx: Ctx) -> None:
    body = {"protocol": "TCP", "lb_algorithm": "ROUND_ROBIN"}
    hidden(ctx, "POST", "/v1/pools", {**body, "load_balancer_id": ctx.a["lb"]})
    hidden(ctx, "POST", "/v1/pools", {**body, "listener_id": ctx.a["listener"]})


@probe("POST", "/v1/health-monitors")
def _create_monitor(ctx: Ctx) -> None:
    body = {"type": "TCP", "delay": 5, "timeout": 3, "max_retries": 2}
    hidden(ctx, "POST", "/v1/health-monitors", {**body, "pool_id": ctx.a["pool"]})


@probe("POST", "/v1/pools/{pool_id}/members")
def _create_member(ctx: Ctx) -> None:
    body = {"address": "10.0.1.20", "protocol_port": 80}
    hidden(ctx, "POST", f"/v1/pools/{ctx.a['pool']}/members", body)
    # A's member address on A's pool: 404, not a 409 confirming it
    dup = {"address": "10.0.1.10", "protocol_port": 8080}
    hidden(ctx, "POST", f"/v1/pools/{ctx.a['pool']}/members", dup)
    # B's pool, A's subnet (the "member on another tenant's subnet")
    own = {**body, "subnet_id": ctx.a["subnet"]}
    hidden(ctx, "POST", f"/v1/pools/{ctx.b['pool']}/members", own)


@probe("GET", "/v1/pools/{pool_id}/members")
def _list_members(ctx: Ctx) -> None:
    hidden(ctx, "GET", f"/v1/pools/{ctx.a['pool']}/members")
    own = ctx.as_b("GET", f"/v1/pools/{ctx.b['pool']}/members").json()["items"]
    assert [m["id"] for m in own] == [ctx.b["member"]]


def _one_member(method: str, body: Any = None) -> Probe:
    def check(ctx: Ctx) -> None:
        a, b = ctx.a, ctx.b
        path = "/v1/pools/{}/members/{}"
        for pool, member in ((a, a), (b, a), (a, b)):
            hidden(ctx, method, path.format(pool["pool"], member["member"]), body)

    return check


probe("GET", "/v1/pools/{pool_id}/members/{member_id}")(_one_member("GET"))
probe("PATCH", "/v1/pools/{pool_id}/members/{member_id}")(_one_member("PATCH", {"weight": 0}))
probe("DELETE", "/v1/pools/{pool_id}/members/{member_id}")(_one_member("DELETE"))


def _extra_list_checks(ctx: Ctx) -> None:
    """Filters whose answer must be exactly B's own item (B has the same shapes as A)."""
    for path, params, own in [
        ("/v1/routers", {"external_network_id": ctx.ext}, "router"),
        ("/v1/floating-ips", {"external_network_id": ctx.ext}, "fip"),
        ("/v1/ports", {"ip_address": "10.0.1.10"}, "port"),
        ("/v1/subnets", {"cidr": "10.0.1.0/24"}, "subnet"),
    ]:
        items = ctx.c.get(path, params=params, headers=ctx.B.headers).json()["items"]
        assert [i["id"] for i in items] == [ctx.b[own]], (path, params, items)


@probe("POST", "/v1/vpcs")
def _create_vpc(ctx: Ctx) -> None:
    # The key both used while building: each replays its own first response.
    body = {"cidr": "10.0.0.0/16", "name": SHARED_NAME, "tags": ["t"]}
    r = ctx.as_b("POST", "/v1/vpcs", body, **{"Idempotency-Key": IDEMPOTENCY_KEY})
    assert r.status_code == 201 and r.headers.get("idempotent-replayed") == "true", r.text
    assert r.json()["id"] == ctx.b["vpc"] and r.json()["tenant_id"] == ctx.B.id
    # A key only A used, with A's exact body: B gets a new VPC of its own, not A's replay
    # (nor a 422 "key used with another body", which would reveal A's request).
    r = ctx.as_b("POST", "/v1/vpcs", A_ONLY_BODY, **{"Idempotency-Key": A_ONLY_KEY})
    assert r.status_code == 201, r.text
    assert "idempotent-replayed" not in r.headers
    assert r.json()["id"] not in ctx.a_ids() and r.json()["tenant_id"] == ctx.B.id
    assert r.json()["default_security_group_id"] not in ctx.a_ids()


@probe("POST", "/v1/subnets")
def _create_subnet(ctx: Ctx) -> None:
    hidden(ctx, "POST", "/v1/subnets", {"vpc_id": ctx.a["vpc"], "cidr": "10.0.3.0/24"})
    # overlapping A's subnet: still 404, a 422 would reveal A's layout
    hidden(ctx, "POST", "/v1/subnets", {"vpc_id": ctx.a["vpc"], "cidr": "10.0.1.0/24"})


@probe("POST", "/v1/ports")
def _create_port(ctx: Ctx) -> None:
    a, b = ctx.a, ctx.b
    hidden(ctx, "POST", "/v1/ports", {"subnet_id": a["subnet"]})
    hidden(ctx, "POST", "/v1/ports", {"subnet_id": a["spare_subnet"]})
    # A's taken address on A's subnet: 404, not the 409 that would confirm it is taken
    hidden(ctx, "POST", "/v1/ports", {"subnet_id": a["subnet"], "ip_address": "10.0.1.10"})
    for groups in ([a["sg"]], [b["sg"], a["sg"]], [a["default_sg"]]):
        hidden(
            ctx, "POST", "/v1/ports", {"subnet_id": b["spare_subnet"], "security_group_ids": groups}
        )
    # the same fixed IP in B's own subnet is B's business
    r = ctx.as_b("POST", "/v1/ports", {"subnet_id": b["spare_subnet"], "ip_address": "10.0.2.10"})
    assert r.status_code == 201, r.text


@probe("POST", "/v1/routers")
def _create_router(ctx: Ctx) -> None:
    hidden(ctx, "POST", "/v1/routers", {"vpc_id": ctx.a["vpc"]})
    hidden(ctx, "POST", "/v1/routers", {"vpc_id": ctx.a["vpc"], "external_network_id": ctx.ext})


@probe("POST", "/v1/security-groups")
def _create_group(ctx: Ctx) -> None:
    hidden(ctx, "POST", "/v1/security-groups", {"vpc_id": ctx.a["vpc"]})


@probe("POST", "/v1/security-group-rules")
def _create_rule(ctx: Ctx) -> None:
    a, b = ctx.a, ctx.b
    for gid in (a["sg"], a["default_sg"]):
        hidden(
            ctx,
            "POST",
            "/v1/security-group-rules",
            {"security_group_id": gid, "direction": "ingress", "protocol": "any"},
        )
    for remote in (a["sg"], a["default_sg"]):
        hidden(
            ctx,
            "POST",
            "/v1/security-group-rules",
            {
                "security_group_id": b["sg"],
                "direction": "ingress",
                "protocol": "tcp",
                "remote_group_id": remote,
            },
        )


@probe("POST", "/v1/network-acls")
def _create_acl(ctx: Ctx) -> None:
    hidden(ctx, "POST", "/v1/network-acls", {"vpc_id": ctx.a["vpc"]})


@probe("POST", "/v1/network-acl-entries")
def _create_acl_entry(ctx: Ctx) -> None:
    body = {"rule_number": 7, "direction": "egress", "action": "deny", "protocol": "any"}
    body["cidr"] = "10.0.0.0/8"
    hidden(ctx, "POST", "/v1/network-acl-entries", {"network_acl_id": ctx.a["acl"], **body})


@probe("POST", "/v1/floating-ips")
def _create_fip(ctx: Ctx) -> None:
    hidden(
        ctx, "POST", "/v1/floating-ips", {"external_network_id": ctx.ext, "port_id": ctx.a["port"]}
    )
    hidden(
        ctx,
        "POST",
        "/v1/floating-ips",
        {"external_network_id": ctx.ext, "port_id": ctx.a["iface_port"]},
    )


@probe("POST", "/v1/routers/{router_id}/interfaces")
def _add_interface(ctx: Ctx) -> None:
    a, b = ctx.a, ctx.b
    path = "/v1/routers/{}/interfaces"
    hidden(ctx, "POST", path.format(a["router"]), {"subnet_id": a["spare_subnet"]})
    hidden(ctx, "POST", path.format(a["router"]), {"subnet_id": b["spare_subnet"]})
    hidden(ctx, "POST", path.format(b["router"]), {"subnet_id": a["spare_subnet"]})
    hidden(ctx, "POST", path.format(b["router"]), {"subnet_id": a["subnet"]})


@probe("GET", "/v1/routers/{router_id}/interfaces")
def _list_interfaces(ctx: Ctx) -> None:
    hidden(ctx, "GET", f"/v1/routers/{ctx.a['router']}/interfaces")
    own = ctx.as_b("GET", f"/v1/routers/{ctx.b['router']}/interfaces").json()
    assert [i["subnet_id"] for i in own] == [ctx.b["subnet"]]


def _one_interface(method: str) -> Probe:
    def check(ctx: Ctx) -> None:
        a, b = ctx.a, ctx.b
        path = "/v1/routers/{}/interfaces/{}"
        hidden(ctx, method, path.format(a["router"], a["subnet"]))
        hidden(ctx, method, path.format(b["router"], a["subnet"]))
        hidden(ctx, method, path.format(a["router"], b["subnet"]))

    return check


probe("GET", "/v1/routers/{router_id}/interfaces/{subnet_id}")(_one_interface("GET"))
probe("DELETE", "/v1/routers/{router_id}/interfaces/{subnet_id}")(_one_interface("DELETE"))


def _b_attaches_own_things_to_a(ctx: Ctx) -> None:
    """PATCHes of B's own resources that point at A's: 404, B's resources unchanged."""
    a, b = ctx.a, ctx.b
    hidden(ctx, "PATCH", f"/v1/ports/{b['port']}", {"security_group_ids": [a["sg"]]})
    hidden(ctx, "PATCH", f"/v1/ports/{b['port']}", {"security_group_ids": [b["sg"], a["sg"]]})
    hidden(ctx, "PATCH", f"/v1/floating-ips/{b['fip']}", {"port_id": a["port"]})
    hidden(ctx, "PATCH", f"/v1/subnets/{b['subnet']}", {"network_acl_id": a["acl"]})
    hidden(ctx, "PATCH", f"/v1/listeners/{b['listener']}", {"default_pool_id": a["pool"]})


# External networks: shared and readable by every tenant; only the admin writes them.
@probe("GET", "/v1/external-networks")
def _list_ext(ctx: Ctx) -> None:
    lists_none(ctx, "/v1/external-networks", must_have=ctx.ext)


@probe("GET", "/v1/external-networks/{external_network_id}")
def _get_ext(ctx: Ctx) -> None:
    mine = ctx.as_b("GET", f"/v1/external-networks/{ctx.ext}")
    assert mine.status_code == 200
    assert mine.json() == ctx.c.get(f"/v1/external-networks/{ctx.ext}", headers=ADMIN).json()


# Address scopes: readable by every tenant (to pick a routed CIDR); only the admin writes them.
@probe("GET", "/v1/address-scopes")
@probe("GET", "/v1/address-scopes/{address_scope_id}")
def _read_scope(ctx: Ctx) -> None:
    scope = h.create(ctx.c, "/v1/address-scopes", ADMIN, cidr="100.64.0.0/16", name="routed")
    listed = ctx.as_b("GET", "/v1/address-scopes").json()["items"]
    assert [x["id"] for x in listed] == [scope["id"]]
    assert ctx.as_b("GET", f"/v1/address-scopes/{scope['id']}").json() == scope
    assert ctx.c.delete(f"/v1/address-scopes/{scope['id']}", headers=ADMIN).status_code == 204


def admin_only(method: str, path: str, body: Any = None) -> None:
    @probe(method, path)
    def _refused(ctx: Ctx) -> None:
        ids = {"tenant_id": ctx.A.id, "host_id": ctx.host, "external_network_id": ctx.ext}
        ids.update(ADMIN_IDS)
        for target in (ids, {**ids, "tenant_id": ctx.B.id}, {k: str(uuid.uuid4()) for k in ids}):
            refused(ctx, method, path.format(**target), body, 403)


for _method, _path in sorted(EXPECTED_ADMIN_ONLY):
    admin_only(_method, _path, {"name": "evil"} if _method in ("POST", "PATCH") else None)


def run(ctx: Ctx, key: tuple[str, str]) -> None:
    PROBES[key](ctx)
    if key == ("GET", "/v1/ports"):
        _extra_list_checks(ctx)
    if key in (
        ("PATCH", "/v1/ports/{port_id}"),
        ("PATCH", "/v1/floating-ips/{floating_ip_id}"),
        ("PATCH", "/v1/listeners/{listener_id}"),
    ):
        _b_attaches_own_things_to_a(ctx)


# -- the tests ---------------------------------------------------------------------------


def test_matrix_covers_every_v1_route(app: Any) -> None:
    routes = route_keys(app)
    assert len(routes) >= 50, routes  # the route discovery itself works
    assert routes - set(PROBES) == set(), "routes without an isolation probe"
    assert set(PROBES) - routes == set(), "probes for routes that no longer exist"


@pytest.mark.parametrize("key", sorted(PROBES), ids=lambda k: f"{k[0]} {k[1]}")
def test_tenant_b_cannot_touch_tenant_a(ctx: Ctx, key: tuple[str, str]) -> None:
    a_before = view(ctx, ctx.A, ctx.a, lists=True)
    b_before = view(ctx, ctx.B, ctx.b, lists=False)
    run(ctx, key)
    assert view(ctx, ctx.A, ctx.a, lists=True) == a_before, "A's resources changed"
    assert view(ctx, ctx.B, ctx.b, lists=False) == b_before, "B's resources changed"


def test_whole_matrix_leaves_a_unchanged(ctx: Ctx) -> None:
    """All probes in a row on one world, then A is exactly as it was."""
    before = view(ctx, ctx.A, ctx.a, lists=True)
    for key in sorted(PROBES):
        run(ctx, key)
    assert view(ctx, ctx.A, ctx.a, lists=True) == before
    # and A can still do everything with its own resources
    r = ctx.c.patch(f"/v1/vpcs/{ctx.a['vpc']}", json={"name": "still-mine"}, headers=ctx.A.headers)
    assert r.status_code == 200 and r.json()["revision"] == 2


def test_admin_only_routes_refuse_tenants(app: Any, ctx: Ctx) -> None:
    derived = {
        (m, r.path)
        for r in v1_routes(app)
        if "require_admin" in dependency_names(r.dependant)
        for m in r.methods
    }
    assert derived == EXPECTED_ADMIN_ONLY
    ids = {"tenant_id": ctx.A.id, "host_id": ctx.host, "external_network_id": ctx.ext}
    ids.update(ADMIN_IDS)
    for method, path in sorted(derived):
        for who in (ctx.A, ctx.B):
            r = ctx.c.request(
                method,
                path.format(**ids),
                json={} if method != "GET" else None,
                headers=who.headers,
            )
            assert h.problem(r, 403)["type"].endswith("/forbidden"), (method, path)
    # B cannot mint a token for A: the one thing that would undo all isolation
    assert ctx.as_b("POST", f"/v1/tenants/{ctx.A.id}/tokens").status_code == 403


BAD_AUTH: list[Callable[[Ctx], dict[str, str]]] = [
    lambda ctx: {},
    lambda ctx: {"Authorization": ""},
    lambda ctx: {"Authorization": "Bearer"},
    lambda ctx: {"Authorization": "Bearer "},
    lambda ctx: {"Authorization": "Bearer not-a-token"},
    lambda ctx: {"Authorization": f"Basic {ctx.A.token}"},
    lambda ctx: {"Authorization": ctx.A.token},
    lambda ctx: {"Authorization": f"Bearer {ctx.A.token}x"},
    lambda ctx: {"Authorization": f"Bearer {ctx.A.token[:-1]}"},
    lambda ctx: {"Authorization": "Bearer not-a-token", "Idempotency-Key": "k"},
]


def fill(path: str, ctx: Ctx) -> str:
    ids = {
        "tenant_id": ctx.A.id,
        "host_id": ctx.host,
        "external_network_id": ctx.ext,
        "vpc_id": ctx.a["vpc"],
        "subnet_id": ctx.a["subnet"],
        "port_id": ctx.a["port"],
        "router_id": ctx.a["router"],
        "security_group_id": ctx.a["sg"],
        "rule_id": ctx.a["rule"],
        "network_acl_id": ctx.a["acl"],
        "entry_id": ctx.a["acl_entry"],
        "floating_ip_id": ctx.a["fip"],
        "load_balancer_id": ctx.a["lb"],
        "listener_id": ctx.a["listener"],
        "pool_id": ctx.a["pool"],
        "member_id": ctx.a["member"],
        "health_monitor_id": ctx.a["monitor"],
        **ADMIN_IDS,
    }

    def sub(m: re.Match[str]) -> str:
        assert m.group(1) in ids, f"no id for path parameter {m.group(1)!r}"
        return ids[m.group(1)]

    return re.sub(r"\{(\w+)\}", sub, path)


def db_rows(db_url: str) -> dict[str, list[str]]:
    """Every row of every table: the witness that refused calls changed nothing."""
    from models import Base
    from models.db import engine_for

    with engine_for(db_url).connect() as conn:
        return {
            t.name: sorted(repr(tuple(row)) for row in conn.execute(sa.select(t)))
            for t in Base.metadata.sorted_tables
        }


def test_every_route_needs_a_token(app: Any, ctx: Ctx, db_url: str) -> None:
    before = db_rows(db_url)
    failures = []
    for method, path in sorted(route_keys(app)):
        for i, auth in enumerate(BAD_AUTH):
            body = {"name": "x"} if method in ("POST", "PATCH") else None
            r = ctx.c.request(method, fill(path, ctx), json=body, headers=auth(ctx))
            try:
                problem = h.problem(r, 401)
                assert problem["type"].endswith("/unauthorized"), problem
                assert r.headers.get("www-authenticate", "").lower().startswith("bearer")
            except AssertionError as exc:
                failures.append(f"{method} {path} auth#{i}: {exc}")
    assert not failures, "\n".join(failures[:20])
    assert db_rows(db_url) == before


def test_deleted_tenants_token_stops_working(
    client: TestClient, make_tenant: Callable[..., Tenant]
) -> None:
    c = make_tenant("short-lived")
    assert client.get("/v1/vpcs", headers=c.headers).status_code == 200
    assert client.delete(f"/v1/tenants/{c.id}", headers=ADMIN).status_code == 204
    h.problem(client.get("/v1/vpcs", headers=c.headers), 401)


def test_admin_sees_both_tenants_but_cannot_create_for_them(ctx: Ctx) -> None:
    """The admin reads across tenants (so the 404s above are not missing rows)."""
    for key in ("vpc", "subnet", "port", "router", "sg", "rule", "fip"):
        for ids in (ctx.a, ctx.b):
            assert ctx.c.get(BY_ID[key].format(ids[key]), headers=ADMIN).status_code == 200
    r = ctx.c.post("/v1/vpcs", json={"cidr": "10.0.0.0/16"}, headers=ADMIN)
    h.problem(r, 403)


def test_a_workload_netns_on_a_host_belongs_to_one_tenant(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    a, b = make_tenant("netns-a"), make_tenant("netns-b")
    sa_ = h.subnet(client, a, h.vpc(client, a)["id"])
    sb_ = h.subnet(client, b, h.vpc(client, b)["id"])
    h.host(client, "h1", vtep_ip="192.0.2.21")
    h.host(client, "h2", vtep_ip="192.0.2.22")
    h.port(client, a, sa_["id"], host="h1", netns="web")
    h.port(client, a, sa_["id"], host="h1", netns="web", interface_name="eth1")  # multi-homed
    r = client.post(
        "/v1/ports",
        json={"subnet_id": sb_["id"], "host": "h1", "netns": "web", "interface_name": "eth2"},
        headers=b.headers,
    )
    body = h.problem(r, 409)
    assert body["errors"][0]["field"] == "body.netns" and a.id not in r.text
    r = client.post(
        "/v1/ports", json={"subnet_id": sa_["id"], "host": "h1", "netns": "web"}, headers=a.headers
    )
    assert h.problem(r, 409)["errors"][0]["field"] == "body.interface_name"
    other = h.port(client, b, sb_["id"], host="h2", netns="web")  # another host: fine
    r = client.patch(f"/v1/ports/{other['id']}", json={"host": "h1"}, headers=b.headers)
    h.problem(r, 409)
    assert client.get(f"/v1/ports/{other['id']}", headers=b.headers).json()["host"] == "h2"
