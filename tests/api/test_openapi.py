"""The OpenAPI document: committed and current, clean for generated clients, and usable by one.

A generated client is what many users (and Terraform-style tools) will hold, so the last test
generates one with openapi-python-client from the committed file and drives a real server.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pkgutil
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.routing import APIRoute

from api.app import create_app
from api.deps import require_admin, require_tenant
from api.settings import Settings
from cli import procs
from openapi.export import DOCUMENT, EXPORT_COMMAND, render
from tests.conftest import ADMIN_TOKEN, wipe

ROOT = Path(__file__).resolve().parents[2]
PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
VERBS = ("create", "list", "get", "update", "delete", "add", "remove")
METHODS = ("get", "put", "post", "patch", "delete", "head", "options", "trace")


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return json.loads(DOCUMENT.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


# -- (a) committed == generated ------------------------------------------------------------


def test_committed_document_is_current() -> None:
    committed = DOCUMENT.read_text(encoding="utf-8") if DOCUMENT.exists() else ""
    assert committed == render(), (
        f"{DOCUMENT.relative_to(ROOT)} differs from the app's OpenAPI document: "
        f"run `{EXPORT_COMMAND}` from the repository root and commit the result"
    )


def test_building_the_document_needs_no_database() -> None:
    """create_app only makes a lazy engine; the document builds with Postgres unreachable."""
    url = "postgresql+psycopg://nobody@127.0.0.1:1/nothing"
    doc = create_app(Settings(database_url=url)).openapi()
    assert doc == json.loads(render())


def test_readiness_failure_is_the_declared_problem() -> None:
    """/readyz declares a 503 Problem; with the database down that is what it sends."""
    from fastapi.testclient import TestClient

    app = create_app(Settings(database_url="postgresql+psycopg://nobody@127.0.0.1:1/nothing"))
    r = TestClient(app).get("/readyz")  # no lifespan: it would need the database
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == 503 and "database unreachable" in r.json()["detail"]
    assert "503" in app.openapi()["paths"]["/readyz"]["get"]["responses"]


def test_served_document_is_the_committed_one(client: Any, spec: dict[str, Any]) -> None:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    assert r.json() == spec


# -- (b) clean operationIds, declared errors, named schemas ---------------------------------


def test_openapi_version(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1")


def test_operation_ids_are_clean_verbs_and_unique(spec: dict[str, Any]) -> None:
    ids = [op.get("operationId") for _, _, op in operations(spec)]
    assert all(ids), [(p, m) for p, m, op in operations(spec) if not op.get("operationId")]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    bad = [i for i in ids if not re.fullmatch(r"[a-z]+(_[a-z0-9]+)+", i)]
    assert not bad, f"operationIds not snake_case verb_noun: {bad}"
    bad = [i for i in ids if i.split("_", 1)[0] not in VERBS]
    assert not bad, f"operationIds not starting with one of {VERBS}: {bad}"


def test_crud_operation_ids_follow_the_resource(spec: dict[str, Any]) -> None:
    """/v1/vpcs: create_vpc, list_vpcs; /v1/vpcs/{id}: get_vpc, update_vpc, delete_vpc."""
    expected: dict[tuple[str, str], str] = {}
    for path, method, _ in operations(spec):
        m = re.fullmatch(r"/v1/([a-z-]+)(/\{[a-z_]+\})?", path)
        if not m:
            continue
        plural = m.group(1).replace("-", "_")
        singular = plural[:-3] + "y" if plural.endswith("ies") else plural.removesuffix("s")
        verb = {"post": "create", "get": "get", "patch": "update", "delete": "delete"}[method]
        if m.group(2) is None:
            expected[path, method] = f"list_{plural}" if method == "get" else f"{verb}_{singular}"
        else:
            expected[path, method] = f"{verb}_{singular}"
    assert ("/v1/vpcs", "post") in expected
    assert ("/v1/floating-ips/{floating_ip_id}", "delete") in expected
    wrong = {
        f"{m.upper()} {p}": (spec["paths"][p][m]["operationId"], want)
        for (p, m), want in expected.items()
        if spec["paths"][p][m]["operationId"] != want
    }
    assert not wrong, f"operationId (actual, expected): {wrong}"
    ids = {op["operationId"] for _, _, op in operations(spec)}
    for name in ("add_router_interface", "remove_router_interface", "create_tenant_token"):
        assert name in ids


def test_every_error_is_a_declared_problem(spec: dict[str, Any]) -> None:
    problems = []
    for path, method, op in operations(spec):
        where = f"{method.upper()} {path}"
        responses = op["responses"]
        for status, resp in responses.items():
            if int(status) >= 400 and resp.get("content") != PROBLEM_CONTENT:
                problems.append(f"{where} {status}: content is {resp.get('content')}")
        if path.startswith("/v1/") and "401" not in responses:
            problems.append(f"{where}: no 401")
        if (op.get("parameters") or op.get("requestBody")) and "422" not in responses:
            problems.append(f"{where}: takes input but declares no 422")
        if path.startswith("/v1/") and "{" in path and "404" not in responses:
            problems.append(f"{where}: has an id in the path but declares no 404")
        names = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
        if "page_token" in names and "400" not in responses:
            problems.append(f"{where}: takes page_token but declares no 400")
    assert not problems, "\n".join(problems)


def test_problem_schema_is_rfc9457(spec: dict[str, Any]) -> None:
    problem = spec["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert {"errors", "blocking_resources", "instance"} <= set(problem["properties"])
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert "ValidationError" not in spec["components"]["schemas"]


def test_headers_of_the_contract_are_parameters(spec: dict[str, Any]) -> None:
    """Idempotency-Key on every /v1 POST/PATCH, If-Match wherever 412 can come back."""
    missing = []
    for path, method, op in operations(spec):
        headers = {p["name"] for p in op.get("parameters", []) if p["in"] == "header"}
        responses = op["responses"]
        if path.startswith("/v1/") and method in ("post", "patch"):
            if "Idempotency-Key" not in headers:
                missing.append(f"{method.upper()} {path}: Idempotency-Key")
            missing += [
                f"{method.upper()} {path}: {s} (Idempotency-Key)"
                for s in ("400", "409", "422")
                if s not in responses
            ]
        if "412" in responses and "If-Match" not in headers:
            missing.append(f"{method.upper()} {path}: If-Match")
        if path.startswith("/v1/") and op.get("security") != [{"bearer": []}]:
            missing.append(f"{method.upper()} {path}: security bearer")
    assert not missing, "\n".join(missing)
    scheme = spec["components"]["securitySchemes"]["bearer"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"


def test_statuses_match_what_routes_can_raise() -> None:
    """Statuses the route's code can produce are declared: 403 for admin-only and tenant-only
    routes (from their dependencies), 412 for writes that load their target (If-Match)."""
    doc = create_app(Settings(database_url="sqlite://")).openapi()
    missing = []
    checked = {"403": 0, "412": 0}
    for route in _api_routes():
        calls = set()
        stack = [route.dependant]
        while stack:
            dep = stack.pop()
            calls.add(dep.call)
            stack.extend(dep.dependencies)
        for method in route.methods:
            op = doc["paths"][route.path_format][method.lower()]
            if calls & {require_admin, require_tenant}:
                checked["403"] += 1
                if "403" not in op["responses"]:
                    missing.append(f"{method} {route.path}: 403 (admin/tenant only)")
            # Lookup.target checks If-Match on PATCH and DELETE
            writes = method in ("PATCH", "DELETE")
            if writes and "lookup.target(" in inspect.getsource(route.endpoint):
                checked["412"] += 1
                if "412" not in op["responses"]:
                    missing.append(f"{method} {route.path}: 412 (If-Match)")
    assert not missing, "\n".join(missing)
    assert checked["403"] >= 10 and checked["412"] >= 10, checked  # the walk found the routes


def _api_routes() -> Iterator[APIRoute]:
    """Every route of every `api` module's APIRouter (the app wraps included routers)."""
    import api

    for info in pkgutil.iter_modules(api.__path__):
        router = getattr(importlib.import_module(f"api.{info.name}"), "router", None)
        if isinstance(router, APIRouter):
            yield from (r for r in router.routes if isinstance(r, APIRoute) and r.include_in_schema)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _inline_objects(node: Any, where: str) -> Iterator[str]:
    """Paths of object schemas with properties that are not components of their own."""
    if isinstance(node, dict):
        if "properties" in node and isinstance(node["properties"], dict):
            yield where
        for key, value in node.items():
            yield from _inline_objects(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _inline_objects(value, f"{where}[{i}]")


def test_every_schema_is_named(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    ugly = [n for n in schemas if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", n)]
    assert not ugly, f"autogenerated or ill-formed schema names: {ugly}"
    dangling = {r for r in _refs(spec) if r.removeprefix("#/components/schemas/") not in schemas}
    assert not dangling, dangling
    inline = []
    for path, method, op in operations(spec):
        bodies = [("requestBody", op.get("requestBody", {}))]
        bodies += [(f"responses.{s}", r) for s, r in op["responses"].items()]
        for name, body in bodies:
            for media, content in body.get("content", {}).items():
                schema = content.get("schema", {})
                schema = schema.get("items", schema) if schema.get("type") == "array" else schema
                if "$ref" not in schema:
                    inline.append(f"{method.upper()} {path} {name} {media}: {schema}")
    assert not inline, "bodies without a named schema:\n" + "\n".join(inline)
    for name, schema in schemas.items():
        nested = [w for w in _inline_objects(schema.get("properties", {}), name)]
        assert not nested, f"inline object schemas inside {name}: {nested}"


# -- (c) a generated client against a running server ---------------------------------------


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[str]:
    """uvicorn in a subprocess on the test database; its process group stopped, data wiped."""
    port = procs.free_port()
    env = os.environ | {"DATABASE_URL": db_url, "VPCD_ADMIN_TOKEN": ADMIN_TOKEN, "REDIS_URL": ""}
    log = tmp_path / "uvicorn.log"
    proc = procs.spawn(procs.uvicorn_argv("api.app:create_app", port), env, log, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        procs.wait_http_ok(f"{base}/readyz", proc, log, timeout=30)
        yield base
    finally:
        procs.stop_group(proc)
        wipe(db_url)


@pytest.fixture
def generated_client(tmp_path: Path) -> Iterator[Any]:
    """The package openapi-python-client makes from the committed document, imported."""
    config = tmp_path / "generator.json"
    config.write_text(json.dumps({"post_hooks": []}))
    out = tmp_path / "vpcd_client"
    cmd = [sys.executable, "-m", "openapi_python_client", "generate", "--path", str(DOCUMENT)]
    cmd += ["--output-path", str(out), "--meta", "none", "--config", str(config)]
    cmd += ["--fail-on-warning"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("vpcd_client")
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "vpcd_client" or m.startswith("vpcd_client.")]:
            del sys.modules[name]


def test_generated_client_drives_a_running_server(server: str, generated_client: Any) -> None:
    gc = generated_client
    models = importlib.import_module("vpcd_client.models")
    ops = {
        name: importlib.import_module(f"vpcd_client.api.{tag}.{name}")
        for tag, names in {
            "tenants": ("create_tenant", "create_tenant_token"),
            "vpcs": ("create_vpc", "get_vpc", "list_vpcs", "update_vpc", "delete_vpc"),
            "subnets": ("create_subnet", "get_subnet", "list_subnets", "delete_subnet"),
        }.items()
        for name in names
    }

    # Errors arrive typed as Problem: an unknown token is a 401.
    stranger = gc.AuthenticatedClient(base_url=server, token="not-a-token")
    r = ops["list_vpcs"].sync_detailed(client=stranger)
    assert r.status_code == 401
    assert isinstance(r.parsed, models.Problem) and r.parsed.status == 401

    admin = gc.AuthenticatedClient(base_url=server, token=ADMIN_TOKEN)
    t = ops["create_tenant"].sync(client=admin, body=models.TenantCreate(name="generated"))
    assert isinstance(t, models.TenantOut), t
    token = ops["create_tenant_token"].sync(tenant_id=t.id, client=admin)
    assert isinstance(token, models.TokenOut), token
    user = gc.AuthenticatedClient(base_url=server, token=token.token)

    # create (with an Idempotency-Key: the retry replays the same VPC)
    body = models.VpcCreate(cidr="10.40.0.0/16", name="gen", tags=["client"])
    r = ops["create_vpc"].sync_detailed(client=user, body=body, idempotency_key="gen-vpc-1")
    assert r.status_code == 201, r.content
    vpc = r.parsed
    assert isinstance(vpc, models.VpcOut)
    assert (vpc.cidr, vpc.name, vpc.tags) == ("10.40.0.0/16", "gen", ["client"])
    assert vpc.tenant_id == t.id
    assert r.headers["location"].endswith(f"/v1/vpcs/{vpc.id}")
    assert r.headers["etag"] == '"1"'
    again = ops["create_vpc"].sync_detailed(client=user, body=body, idempotency_key="gen-vpc-1")
    assert again.status_code == 201 and again.parsed.id == vpc.id

    # read and list
    got = ops["get_vpc"].sync(vpc_id=vpc.id, client=user)
    assert isinstance(got, models.VpcOut) and got.to_dict() == vpc.to_dict()
    page = ops["list_vpcs"].sync(client=user, name="gen")
    assert isinstance(page, models.VpcList)
    assert [v.id for v in page.items] == [vpc.id]

    # If-Match travels as a header parameter: a stale ETag is a 412 problem
    r = ops["update_vpc"].sync_detailed(
        vpc_id=vpc.id, client=user, body=models.VpcUpdate(name="renamed"), if_match='"99"'
    )
    assert r.status_code == 412 and isinstance(r.parsed, models.Problem)

    # a subnet in it
    sub = ops["create_subnet"].sync(
        client=user, body=models.SubnetCreate(vpc_id=vpc.id, cidr="10.40.1.0/24", name="s1")
    )
    assert isinstance(sub, models.SubnetOut), sub
    assert (sub.vpc_id, sub.cidr, sub.gateway_ip) == (vpc.id, "10.40.1.0/24", "10.40.1.1")
    assert isinstance(sub.vni, int) and 0 < sub.vni < 2**24
    got_sub = ops["get_subnet"].sync(subnet_id=sub.id, client=user)
    assert isinstance(got_sub, models.SubnetOut) and got_sub.to_dict() == sub.to_dict()
    listed = ops["list_subnets"].sync(client=user, vpc_id=vpc.id)
    assert isinstance(listed, models.SubnetList) and [s.id for s in listed.items] == [sub.id]

    # validation errors come back as a Problem naming the field
    r = ops["create_subnet"].sync_detailed(
        client=user, body=models.SubnetCreate(vpc_id=vpc.id, cidr="10.99.0.0/24")
    )
    assert r.status_code == 422 and isinstance(r.parsed, models.Problem)
    assert r.parsed.errors and any("cidr" in e.field for e in r.parsed.errors)

    # the VPC is in use while the subnet lives: 409 naming it
    r = ops["delete_vpc"].sync_detailed(vpc_id=vpc.id, client=user)
    assert r.status_code == 409 and isinstance(r.parsed, models.Problem)
    assert [(b.type_, b.id) for b in r.parsed.blocking_resources] == [("subnet", sub.id)]

    # delete both; they are gone
    assert ops["delete_subnet"].sync_detailed(subnet_id=sub.id, client=user).status_code == 204
    r = ops["get_subnet"].sync_detailed(subnet_id=sub.id, client=user)
    assert r.status_code == 404 and isinstance(r.parsed, models.Problem)
    assert ops["delete_vpc"].sync_detailed(vpc_id=vpc.id, client=user).status_code == 204
    r = ops["get_vpc"].sync_detailed(vpc_id=vpc.id, client=user)
    assert r.status_code == 404 and isinstance(r.parsed, models.Problem)
    empty = ops["list_vpcs"].sync(client=user)
    assert isinstance(empty, models.VpcList) and empty.items == []
