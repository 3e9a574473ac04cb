"""The rules of DESIGN §3 that every endpoint must keep, checked over `app.routes`.

Like the isolation matrix, each test walks the app's routes rather than a list written by
hand, so a new endpoint is checked the day it is added (or named in an explicit exemption):
every PATCH/DELETE of a resource with an ETag refuses a stale `If-Match` with 412 and changes
nothing; every POST/PATCH replays its first response for a repeated `Idempotency-Key`; every
path answers 405 to a method it lacks with an `Allow` naming all the methods it has.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api import helpers as h
from tests.api.helpers import v1_routes
from tests.conftest import ADMIN, Tenant

Ids = dict[str, str]

# PATCH/DELETE routes whose GET answers no ETag: quotas and a router interface have no
# revision of their own, so there is nothing for If-Match to match.
NO_ETAG = {
    ("PATCH", "/v1/tenants/{tenant_id}/quotas"),
    ("DELETE", "/v1/routers/{router_id}/interfaces/{subnet_id}"),
}


def world(c: TestClient, t: Tenant) -> Ids:
    """One of everything, with the ids each path parameter names."""
    host = h.host(c, "net-1", roles=["network", "compute"])
    ext = h.external_network(c)
    vpc = h.vpc(c, t)
    subnet = h.subnet(c, t, vpc["id"])
    spare = h.subnet(c, t, vpc["id"], "10.0.2.0/24")
    sg = h.group(c, t, vpc["id"])
    rule = h.rule(c, t, sg["id"])
    port = h.port(c, t, subnet["id"])
    router = h.router(c, t, vpc["id"], external_network_id=ext["id"])
    h.attach(c, t, router["id"], subnet["id"])
    fip = h.floating_ip(c, t, ext["id"], port_id=port["id"])
    acl = h.create(c, "/v1/network-acls", t, vpc_id=vpc["id"])
    entry = h.create(
        c, "/v1/network-acl-entries", t, network_acl_id=acl["id"], rule_number=100,
        direction="ingress", action="allow", protocol="any", cidr="0.0.0.0/0",
    )  # fmt: skip
    lb = h.load_balancer(c, t, subnet["id"])
    lst = h.listener(c, t, lb["id"])
    pool = h.pool(c, t, listener_id=lst["id"])
    member = h.member(c, t, pool["id"], "10.0.1.50")
    monitor = h.monitor(c, t, pool["id"])
    spare_pool = h.pool(c, t, load_balancer_id=lb["id"])
    physnet = h.create(c, "/v1/physical-networks", ADMIN, name="provider")
    scope = h.create(c, "/v1/address-scopes", ADMIN, cidr="100.64.0.0/16", name="routed")
    return {
        "physical_network_id": physnet["id"],
        "address_scope_id": scope["id"],
        "network_acl_id": acl["id"],
        "entry_id": entry["id"],
        "tenant_id": t.id,
        "host_id": host["id"],
        "external_network_id": ext["id"],
        "vpc_id": vpc["id"],
        "subnet_id": subnet["id"],
        "spare_subnet_id": spare["id"],
        "security_group_id": sg["id"],
        "rule_id": rule["id"],
        "port_id": port["id"],
        "router_id": router["id"],
        "floating_ip_id": fip["id"],
        "load_balancer_id": lb["id"],
        "listener_id": lst["id"],
        "pool_id": pool["id"],
        "spare_pool_id": spare_pool["id"],
        "member_id": member["id"],
        "health_monitor_id": monitor["id"],
    }


def fill(path: str, ids: Ids) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], path)


def write_routes(app: Any, methods: set[str]) -> list[tuple[str, str]]:
    return sorted((m, r.path) for r in v1_routes(app) for m in r.methods if m in methods)


# -- If-Match ----------------------------------------------------------------------------


def test_every_write_of_a_resource_with_an_etag_honours_if_match(
    app: Any, client: TestClient, tenant: Tenant
) -> None:
    ids = world(client, tenant)
    routes = write_routes(app, {"PATCH", "DELETE"})
    assert len(routes) >= 20, routes  # the walk found the routes
    without_etag, failures = set(), []
    for method, path in routes:
        url = fill(path, ids)
        before = client.get(url, headers=ADMIN)
        assert before.status_code == 200, (path, before.text)
        if "etag" not in before.headers:
            without_etag.add((method, path))
            continue
        stale = '"{}"'.format(int(before.headers["etag"].strip('"')) + 7)
        body = {} if method == "PATCH" else None
        r = client.request(method, url, json=body, headers={**ADMIN, "If-Match": stale})
        after = client.get(url, headers=ADMIN)
        if r.status_code != 412:
            failures.append(f"{method} {path}: {r.status_code} to a stale If-Match")
        elif (after.headers["etag"], after.json()) != (before.headers["etag"], before.json()):
            failures.append(f"{method} {path}: changed the resource and answered 412")
        else:
            h.problem(r, 412)
    assert not failures, "\n".join(failures)
    assert without_etag == NO_ETAG, "PATCH/DELETE on a resource without an ETag"


# -- Idempotency-Key ---------------------------------------------------------------------

Body = Callable[[Ids], Any]
ADMIN_CALLS: dict[tuple[str, str], Body] = {
    ("POST", "/v1/tenants"): lambda ids: {"name": "idem"},
    ("PATCH", "/v1/tenants/{tenant_id}"): lambda ids: {"description": "idem"},
    ("POST", "/v1/tenants/{tenant_id}/tokens"): lambda ids: None,
    ("PATCH", "/v1/tenants/{tenant_id}/quotas"): lambda ids: {"vpcs": 7},
    ("POST", "/v1/hosts"): lambda ids: {"name": "idem-1", "vtep_ip": "192.0.2.99"},
    ("PATCH", "/v1/hosts/{host_id}"): lambda ids: {"vtep_ip": "192.0.2.98"},
    ("POST", "/v1/external-networks"): lambda ids: {
        "cidr": "198.51.100.0/24",
        "gateway_ip": "198.51.100.1",
    },
    ("PATCH", "/v1/external-networks/{external_network_id}"): lambda ids: {"name": "idem"},
    ("POST", "/v1/physical-networks"): lambda ids: {"name": "idem"},
    ("PATCH", "/v1/physical-networks/{physical_network_id}"): lambda ids: {"shared": True},
    ("POST", "/v1/address-scopes"): lambda ids: {"cidr": "100.65.0.0/16"},
    ("PATCH", "/v1/address-scopes/{address_scope_id}"): lambda ids: {"name": "idem"},
}
TENANT_CALLS: dict[tuple[str, str], Body] = {
    ("POST", "/v1/vpcs"): lambda ids: {"cidr": "10.9.0.0/16"},
    ("PATCH", "/v1/vpcs/{vpc_id}"): lambda ids: {"name": "idem"},
    ("POST", "/v1/subnets"): lambda ids: {"vpc_id": ids["vpc_id"], "cidr": "10.0.9.0/24"},
    ("PATCH", "/v1/subnets/{subnet_id}"): lambda ids: {"name": "idem"},
    ("POST", "/v1/ports"): lambda ids: {"subnet_id": ids["subnet_id"]},
    ("PATCH", "/v1/ports/{port_id}"): lambda ids: {"name": "idem"},
    ("POST", "/v1/routers"): lambda ids: {"vpc_id": ids["vpc_id"]},
    ("PATCH", "/v1/routers/{router_id}"): lambda ids: {"name": "idem"},
    ("POST", "/v1/routers/{router_id}/interfaces"): lambda ids: {
        "subnet_id": ids["spare_subnet_id"]
    },
    ("POST", "/v1/security-groups"): lambda ids: {"vpc_id": ids["vpc_id"]},
    ("PATCH", "/v1/security-groups/{security_group_id}"): lambda ids: {"name": "idem"},
    ("POST", "/v1/security-group-rules"): lambda ids: {
        "security_group_id": ids["security_group_id"],
        "direction": "egress",
        "protocol": "any",
    },
    ("PATCH", "/v1/security-group-rules/{rule_id}"): lambda ids: {"description": "idem"},
    ("POST", "/v1/network-acls"): lambda ids: {"vpc_id": ids["vpc_id"]},
    ("PATCH", "/v1/network-acls/{network_acl_id}"): lambda ids: {"name": "idem"},
    ("POST", "/v1/network-acl-entries"): lambda ids: {
        "network_acl_id": ids["network_acl_id"],
        "rule_number": 200,
        "direction": "egress",
        "action": "deny",
        "protocol": "tcp",
        "port_min": 25,
        "cidr": "10.0.0.0/8",
    },
    ("PATCH", "/v1/network-acl-entries/{entry_id}"): lambda ids: {"action": "deny"},
    ("POST", "/v1/floating-ips"): lambda ids: {"external_network_id": ids["external_network_id"]},
    ("PATCH", "/v1/floating-ips/{floating_ip_id}"): lambda ids: {"description": "idem"},
    ("POST", "/v1/load-balancers"): lambda ids: {"vip_subnet_id": ids["subnet_id"]},
    ("PATCH", "/v1/load-balancers/{load_balancer_id}"): lambda ids: {"name": "idem"},
    ("POST", "/v1/listeners"): lambda ids: {
        "load_balancer_id": ids["load_balancer_id"],
        "protocol": "TCP",
        "protocol_port": 8443,
    },
    ("PATCH", "/v1/listeners/{listener_id}"): lambda ids: {"name": "idem"},
    ("POST", "/v1/pools"): lambda ids: {
        "load_balancer_id": ids["load_balancer_id"],
        "protocol": "UDP",
        "lb_algorithm": "SOURCE_IP",
    },
    ("PATCH", "/v1/pools/{pool_id}"): lambda ids: {"lb_algorithm": "LEAST_CONNECTIONS"},
    ("POST", "/v1/pools/{pool_id}/members"): lambda ids: {
        "address": "10.0.1.99",
        "protocol_port": 80,
    },
    ("PATCH", "/v1/pools/{pool_id}/members/{member_id}"): lambda ids: {"weight": 7},
    ("POST", "/v1/health-monitors"): lambda ids: {
        "pool_id": ids["spare_pool_id"],
        "type": "HTTP",
        "delay": 3,
        "timeout": 2,
        "max_retries": 2,
    },
    ("PATCH", "/v1/health-monitors/{health_monitor_id}"): lambda ids: {"max_retries_down": 5},
}


def test_every_post_and_patch_replays_an_idempotency_key(
    app: Any, client: TestClient, tenant: Tenant
) -> None:
    routes = write_routes(app, {"POST", "PATCH"})
    assert set(routes) == set(ADMIN_CALLS) | set(TENANT_CALLS), "a POST/PATCH without a body"
    ids = world(client, tenant)
    failures = []
    for method, path in routes:
        who = ADMIN if (method, path) in ADMIN_CALLS else tenant.headers
        body = {**ADMIN_CALLS, **TENANT_CALLS}[method, path](ids)
        headers = {**who, "Idempotency-Key": f"{method} {path}"}
        first = client.request(method, fill(path, ids), json=body, headers=headers)
        again = client.request(method, fill(path, ids), json=body, headers=headers)
        if first.status_code >= 300:
            failures.append(f"{method} {path}: {first.status_code} {first.text}")
        elif again.headers.get("idempotent-replayed") != "true":
            failures.append(f"{method} {path}: ran again ({again.status_code})")
        elif (again.status_code, again.json()) != (first.status_code, first.json()):
            failures.append(f"{method} {path}: the replay differs from the first response")
        elif again.headers.get("etag") != first.headers.get("etag"):
            failures.append(f"{method} {path}: the replay lost the ETag")
    assert not failures, "\n".join(failures)


# -- 405 Allow ---------------------------------------------------------------------------

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def methods_by_path(app: Any) -> dict[str, set[str]]:
    """Every path of the app (not only /v1) with the methods of all its routes."""
    try:
        from fastapi.routing import iter_route_contexts

        routes: Any = iter_route_contexts(app.routes)
    except ImportError:  # older FastAPI: a flat list
        routes = app.routes
    paths: dict[str, set[str]] = {}
    for route in routes:
        if route.path and route.methods:
            paths.setdefault(route.path, set()).update(route.methods)
    return paths


@pytest.mark.parametrize("auth", [False, True], ids=["anonymous", "tenant"])
def test_every_path_answers_405_with_all_its_methods(
    app: Any, client: TestClient, tenant: Tenant, auth: bool
) -> None:
    """Routing answers before auth: a missing method is a 405 problem naming the others."""
    paths = methods_by_path(app)
    assert "/v1/vpcs" in paths and "/healthz" in paths  # the walk found the routes
    failures = []
    for path, allowed in sorted(paths.items()):
        url = re.sub(r"\{\w+\}", lambda _: str(uuid.uuid4()), path)
        for method in METHODS:
            if method in allowed:
                continue
            r = client.request(method, url, headers=tenant.headers if auth else {})
            if r.status_code != 405:
                failures.append(f"{method} {path}: {r.status_code}")
                continue
            h.problem(r, 405)
            if set(r.headers.get("allow", "").split(", ")) != allowed:
                failures.append(f"{method} {path}: Allow {r.headers.get('allow')!r}")
    assert not failures, "\n".join(failures)
