"""Hostile input never gives a 500, and declarative clients' habits are honoured (issue 14).

Each test here reproduces a finding of a fuzzing run (schemathesis) or of a parallel
client: NUL characters anywhere, non-UTF-8 header bytes, huge quotas, an Idempotency-Key
on an unknown route, unchanged immutable fields, ports bound to hosts nobody registered.
"""

from __future__ import annotations

import base64
import json
import os
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.rest.schemas import Patch
from tests.api import helpers as h
from tests.api.test_validation import db_rows
from tests.conftest import ADMIN, Tenant

NUL = "\x00"


def fields(body: dict[str, Any]) -> list[str]:
    return [e["field"] for e in body.get("errors") or []]


# -- NUL (and lone surrogates) in any text ------------------------------------------------


@pytest.fixture
def vpc(client: TestClient, tenant: Tenant) -> dict[str, Any]:
    return h.vpc(client, tenant, name="main", tags=["keep"])


BODY_CASES = [
    pytest.param("POST", "/v1/vpcs", {"cidr": "10.9.0.0/16", "name": "a\x00"}, "body.name"),
    pytest.param("POST", "/v1/vpcs", {"cidr": "10.9.0.0/16\x00"}, "body.cidr"),
    pytest.param(
        "POST", "/v1/vpcs", {"cidr": "10.9.0.0/16", "tags": ["ok", "b\x00"]}, "body.tags.1"
    ),
    pytest.param(
        "POST", "/v1/vpcs", {"cidr": "10.9.0.0/16", "description": "\x00"}, "body.description"
    ),
    pytest.param("POST", "/v1/routers", {"vpc_id": "O\x00P"}, "body.vpc_id"),
    pytest.param("POST", "/v1/security-groups", {"vpc_id": ".\x00"}, "body.vpc_id"),
    pytest.param(
        "POST",
        "/v1/subnets",
        {
            "vpc_id": "$vpc",
            "cidr": "10.0.3.0/24",
            "host_routes": [{"destination": "10.8.0.0/16\x00", "nexthop": "10.0.3.1"}],
        },
        "body.host_routes.0.destination",
    ),
    pytest.param("PATCH", "/v1/vpcs/$vpc", {"name": "x\x00y"}, "body.name"),
    pytest.param("PATCH", "/v1/vpcs/$vpc", {"tags": ["\x00"]}, "body.tags.0"),
    pytest.param("PATCH", "/v1/vpcs/$vpc", {"cidr": "\x00"}, "body.cidr"),
]


@pytest.mark.parametrize("method,path,body,field", BODY_CASES)
def test_nul_in_a_body_string_is_a_422_naming_the_field(
    client: TestClient,
    tenant: Tenant,
    vpc: dict[str, Any],
    db_url: str,
    method: str,
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    path = path.replace("$vpc", vpc["id"])
    body = json.loads(json.dumps(body).replace('"$vpc"', json.dumps(vpc["id"])))
    before = db_rows(db_url)
    problem = h.problem(client.request(method, path, json=body, headers=tenant.headers), 422)
    assert field in fields(problem), problem
    assert db_rows(db_url) == before


def test_a_lone_surrogate_is_a_422_too(client: TestClient, tenant: Tenant) -> None:
    """JSON may spell an unpaired UTF-16 half ("\\ud800"); no UTF-8 database takes it."""
    raw = b'{"cidr": "10.9.0.0/16", "name": "\\ud82a", "tags": ["\\udc69x"]}'
    r = client.post(
        "/v1/vpcs", content=raw, headers={**tenant.headers, "content-type": "application/json"}
    )
    assert sorted(fields(h.problem(r, 422))) == ["body.name", "body.tags.0"]


def test_nul_in_a_key_of_the_body_is_a_422(client: TestClient, tenant: Tenant) -> None:
    r = client.post("/v1/vpcs", json={"cidr": "10.9.0.0/16", "na\x00me": 1}, headers=tenant.headers)
    h.problem(r, 422)


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/v1/vpcs/%00"),
        ("GET", "/v1/vpcs/ab%00cd"),
        ("PATCH", "/v1/vpcs/%00"),
        ("DELETE", "/v1/vpcs/%00"),
        ("GET", "/v1/routers/%00/interfaces"),
        ("GET", "/v1/tenants/%00/quotas"),
    ],
)
def test_nul_in_a_path_id_is_a_422_naming_it(
    client: TestClient, tenant: Tenant, method: str, path: str
) -> None:
    who = ADMIN if "/tenants/" in path else tenant.headers
    body = {"name": "x"} if method == "PATCH" else None
    problem = h.problem(client.request(method, path, json=body, headers=who), 422)
    assert fields(problem)[0].startswith("path."), problem
    assert fields(problem)[0].endswith("_id"), problem


@pytest.mark.parametrize(
    "path,param",
    [
        ("/v1/vpcs", "name"),
        ("/v1/vpcs", "tag"),
        ("/v1/vpcs", "cidr"),
        ("/v1/subnets", "vpc_id"),
        ("/v1/ports", "host"),
        ("/v1/security-group-rules", "security_group_id"),
        ("/v1/external-networks", "tag"),
    ],
)
def test_nul_in_a_list_filter_is_a_422_naming_it(
    client: TestClient, tenant: Tenant, vpc: dict[str, Any], path: str, param: str
) -> None:
    for who in (tenant.headers, ADMIN):
        r = client.get(path, params={param: "a\x00b"}, headers=who)
        assert fields(h.problem(r, 422)) == [f"query.{param}"], r.text
    assert client.get("/v1/hosts", params={"name": NUL}, headers=ADMIN).status_code == 422


def test_a_page_token_hiding_a_nul_is_a_400(client: TestClient, tenant: Tenant) -> None:
    raw = json.dumps(["2026-01-01T00:00:00+00:00", "x\x00"]).encode()
    token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    r = client.get("/v1/vpcs", params={"page_token": token}, headers=tenant.headers)
    h.problem(r, 400)


# -- tags ---------------------------------------------------------------------------------

ODD_TAGS = ['a"b', "back\\slash", "%", "_", "ünï-cødé ✓", "\x01ctl", '["x"]', "stack:prod"]


def test_tag_filters_work_for_tenants_and_the_admin(client: TestClient, make_tenant: Any) -> None:
    a, b = make_tenant(), make_tenant()
    made = {tag: h.vpc(client, a, tags=[tag, "common"])["id"] for tag in ODD_TAGS}
    theirs = h.vpc(client, b, tags=["common"])["id"]
    for tag, ident in made.items():
        for who in (a.headers, ADMIN):
            r = client.get("/v1/vpcs", params={"tag": tag}, headers=who)
            assert r.status_code == 200, r.text
            assert [v["id"] for v in r.json()["items"]] == [ident], tag
    r = client.get("/v1/vpcs", params={"tag": "common", "limit": 1000}, headers=ADMIN)
    assert {v["id"] for v in r.json()["items"]} == {*made.values(), theirs}
    r = client.get("/v1/vpcs", params={"tag": "common", "limit": 1000}, headers=b.headers)
    assert [v["id"] for v in r.json()["items"]] == [theirs]
    assert client.get("/v1/vpcs", params={"tag": "nope"}, headers=ADMIN).json()["items"] == []


def test_tags_are_jsonb_on_postgres(db_url: str) -> None:
    from models import Base

    if not db_url.startswith("postgresql"):
        pytest.skip("a Postgres column type")
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        inspector = sa.inspect(engine)
        tagged = [t for t in Base.metadata.sorted_tables if "tags" in t.c]
        assert len(tagged) >= 12  # every tagged resource, network ACLs included
        lb_tables = {"load_balancers", "listeners", "pools", "members", "health_monitors"}
        assert lb_tables <= {t.name for t in tagged}
        for table in tagged:
            kind = {c["name"]: c["type"] for c in inspector.get_columns(table.name)}["tags"]
            assert type(kind).__name__ == "JSONB", (table.name, kind)
    finally:
        engine.dispose()


@pytest.fixture
def scratch_pg() -> Iterator[str]:
    base = os.environ.get("VPCD_TEST_DATABASE_URL", "sqlite://")
    if base.startswith("sqlite"):
        pytest.skip("json -> jsonb is a Postgres migration")
    from models.db import scratch_database

    with scratch_database(base, "vpcd_tags") as url:
        yield url


def test_migration_converts_stored_tags_and_drops_nul(scratch_pg: str) -> None:
    """Rows written before 0005 (a NUL in a json tag included) survive and filter by tag."""
    from migrations.runner import downgrade, upgrade
    from models import Vpc
    from models.query import has_tag

    upgrade(scratch_pg, "0004")
    engine = sa.create_engine(scratch_pg, poolclass=sa.pool.NullPool)
    tid = str(uuid.uuid4())
    rows = {
        "clean": ["web", "stack:a"],
        "nul": ["bad\u0000tag", "\u0000", "web"],
    }
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO tenants (id, name, description, created_at, updated_at, revision)"
                    " VALUES (:id, 'old', '', now(), now(), 1)"
                ),
                {"id": tid},
            )
            for name in rows:
                conn.execute(
                    sa.text(
                        "INSERT INTO vpcs (id, tenant_id, name, description, cidr, tags,"
                        " created_at, updated_at, revision) VALUES (:id, :tid, :name, '',"
                        " '10.0.0.0/16', CAST(:tags AS json), now(), now(), 1)"
                    ),
                    {"id": name, "tid": tid, "name": name, "tags": json.dumps(rows[name])},
                )
        upgrade(scratch_pg)
        with sa.orm.Session(engine) as session:
            got = {v.id: v.tags for v in session.scalars(sa.select(Vpc))}
            assert got == {"clean": ["web", "stack:a"], "nul": ["badtag", "web"]}
            web = session.scalars(sa.select(Vpc.id).where(has_tag(session, Vpc.tags, "web")))
            assert sorted(web) == ["clean", "nul"]
        downgrade(scratch_pg, "0004")
        upgrade(scratch_pg)
    finally:
        engine.dispose()


# -- header bytes ---------------------------------------------------------------------------


def asgi(app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> Any:
    """One request straight through the ASGI app, header bytes exactly as given.

    (httpx and the TestClient re-encode header values as UTF-8: they cannot send `caf\\xe9`.)
    """
    import asyncio

    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
        "state": {},
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(content) if content else None


@pytest.mark.parametrize("with_key", [False, True])
def test_a_non_utf8_header_byte_never_gives_a_500(
    client: TestClient, app: Any, tenant: Tenant, with_key: bool
) -> None:
    headers: list[tuple[bytes, bytes]] = [
        (b"authorization", f"Bearer {tenant.token}".encode()),
        (b"x-trace", b"caf\xe9"),
        (b"user-agent", b"\xfe\xff"),
    ]
    key = [(b"idempotency-key", b"k\xe9y")] if with_key else []
    status, vpc = asgi(app, "POST", "/v1/vpcs", headers + key, b'{"cidr": "10.0.0.0/16"}')
    assert status == 201, vpc
    if with_key:  # the key, read as ISO-8859-1 like every header byte, still replays
        status, again = asgi(app, "POST", "/v1/vpcs", headers + key, b'{"cidr": "10.0.0.0/16"}')
        assert status == 201 and again["id"] == vpc["id"]
    path = f"/v1/vpcs/{vpc['id']}"
    status, patched = asgi(app, "PATCH", path, headers, b'{"name": "n"}')
    assert status == 200 and patched["name"] == "n", patched


def test_a_non_utf8_authorization_is_a_401(client: TestClient, app: Any) -> None:
    for key in ([], [(b"idempotency-key", b"k")]):
        headers = [(b"authorization", b"Bearer \xe9\xff"), *key]
        status, body = asgi(app, "POST", "/v1/vpcs", headers, b'{"cidr": "10.0.0.0/16"}')
        assert status == 401 and body["status"] == 401, body


# -- quotas --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [2**31, 2**31 - 1, 2**63, 10**30, 1_000_001])
def test_a_quota_above_the_maximum_is_a_422(client: TestClient, tenant: Tenant, value: int) -> None:
    url = f"/v1/tenants/{tenant.id}/quotas"
    before = client.get(url, headers=ADMIN).json()
    r = client.patch(url, json={"ports": value}, headers=ADMIN)
    assert fields(h.problem(r, 422)) == ["body.ports"]
    assert client.get(url, headers=ADMIN).json() == before


def test_quota_maximum_is_accepted_and_declared(
    client: TestClient, tenant: Tenant, app: Any
) -> None:
    r = client.patch(f"/v1/tenants/{tenant.id}/quotas", json={"ports": 1_000_000}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["ports"] == 1_000_000
    props = app.openapi()["components"]["schemas"]["QuotaSet"]["properties"]
    for name, prop in props.items():
        limits = [b for b in prop["anyOf"] if b.get("type") == "integer"]
        assert limits and limits[0]["maximum"] <= 2**31 - 1, name


# -- Idempotency-Key and routing -----------------------------------------------------------


def test_a_used_key_on_an_unknown_path_or_method_is_404_or_405(
    client: TestClient, tenant: Tenant
) -> None:
    who = {**tenant.headers, "Idempotency-Key": "used-key"}
    vpc = client.post("/v1/vpcs", json={"cidr": "10.0.0.0/16"}, headers=who)
    assert vpc.status_code == 201
    h.problem(client.post("/v1/nothing-here", json={"cidr": "10.0.0.0/16"}, headers=who), 404)
    h.problem(client.patch("/v1/nothing/here", json={}, headers=who), 404)
    for _ in range(2):  # and again: nothing was stored under the key for it
        r = client.post(f"/v1/vpcs/{vpc.json()['id']}", json={}, headers=who)
        h.problem(r, 405)
        assert r.headers["allow"] == "DELETE, GET, PATCH"
        r = client.patch("/v1/vpcs", json={}, headers=who)
        h.problem(r, 405)
        assert r.headers["allow"] == "GET, POST"
    again = client.post("/v1/vpcs", json={"cidr": "10.0.0.0/16"}, headers=who)
    assert again.json()["id"] == vpc.json()["id"]


def test_a_405_names_every_method_of_the_path(client: TestClient, tenant: Tenant) -> None:
    for method, path, allow in (
        ("PUT", "/v1/vpcs/x", "DELETE, GET, PATCH"),
        ("OPTIONS", "/v1/routers/x/interfaces", "GET, POST"),
        ("PATCH", "/v1/tenants/x/tokens", "POST"),
        ("DELETE", "/v1/tenants/x/quotas", "GET, PATCH"),
    ):
        r = client.request(method, path, headers=tenant.headers)
        h.problem(r, 405)
        assert r.headers["allow"] == allow, (method, path)


def test_a_replayed_answer_keeps_its_headers(
    client: TestClient, tenant: Tenant, db_url: str
) -> None:
    """A stored 405 is replayed with its Allow (RFC 9110: a 405 MUST name the methods)."""
    from starlette.responses import PlainTextResponse

    from api.services.idempotency import IdempotencyMiddleware
    from api.settings import Settings
    from models.db import engine_for, session_factory

    async def refuse(scope: Any, receive: Any, send: Any) -> None:
        response = PlainTextResponse("no", status_code=405, headers={"Allow": "GET, POST"})
        await response(scope, receive, send)

    middleware = IdempotencyMiddleware(
        refuse, sessionmaker=session_factory(engine_for(db_url)), settings=Settings()
    )
    bare = TestClient(middleware)  # no lifespan: the bare app speaks HTTP only
    who = {**tenant.headers, "Idempotency-Key": "stored-405"}
    first = bare.post("/anything", json={}, headers=who)
    again = bare.post("/anything", json={}, headers=who)
    assert first.status_code == again.status_code == 405, (first.headers, again.headers)
    assert again.headers["idempotent-replayed"] == "true", again.headers
    assert again.headers["allow"] == first.headers["allow"] == "GET, POST"


def test_idempotency_key_lengths_are_declared(app: Any) -> None:
    spec = app.openapi()
    seen = 0
    for item in spec["paths"].values():
        for op in item.values():
            for p in op.get("parameters", []):
                if p["name"] == "Idempotency-Key":
                    seen += 1
                    assert p["schema"]["minLength"] == 1 and p["schema"]["maxLength"] == 255
    assert seen >= 20


def test_an_empty_key_is_a_400(client: TestClient, tenant: Tenant) -> None:
    r = client.post(
        "/v1/vpcs", json={"cidr": "10.0.0.0/16"}, headers={**tenant.headers, "Idempotency-Key": ""}
    )
    h.problem(r, 400)


# -- the OpenAPI document tells the truth ----------------------------------------------------

IPV4_FIELDS = {
    ("SubnetCreate", "gateway_ip"),
    ("PortCreate", "ip_address"),
    ("HostCreate", "vtep_ip"),
    ("HostUpdate", "vtep_ip"),
    ("ExternalNetworkCreate", "gateway_ip"),
    ("Pool", "start"),
    ("Pool", "end"),
    ("HostRoute", "nexthop"),
}
CIDR_FIELDS = {
    ("VpcCreate", "cidr"),
    ("SubnetCreate", "cidr"),
    ("ExternalNetworkCreate", "cidr"),
    ("SecurityGroupRuleCreate", "remote_cidr"),
    ("HostRoute", "destination"),
}
NAME_FIELDS = {
    ("PortCreate", "host"): ("compute-1", "Host1"),
    ("PortCreate", "netns"): ("ns_1.a-b", "a;b"),
    ("PortCreate", "interface_name"): ("eth0", "e" * 16),
    ("PortUpdate", "host"): ("h1", "-h"),
    ("HostCreate", "name"): ("host-1", "Bad Name"),
    ("PortCreate", "mac_address"): ("fa:16:3e:00:00:01", "fa163e000001"),
}


def _string_schema(prop: dict[str, Any]) -> dict[str, Any]:
    branches = [b for b in prop.get("anyOf", [prop]) if b.get("type") == "string"]
    assert len(branches) == 1, prop
    return branches[0]


def _full(pattern: str, value: str) -> bool:
    """As a JSON Schema validator (ECMA-262) reads the pattern: `$` ends the input."""
    return re.search(pattern.replace("$", r"\Z"), value) is not None


def test_addresses_networks_and_names_declare_their_syntax(app: Any) -> None:
    schemas = app.openapi()["components"]["schemas"]
    for model, name in IPV4_FIELDS:
        s = _string_schema(schemas[model]["properties"][name])
        assert s["format"] == "ipv4", (model, name)
        assert _full(s["pattern"], "10.0.0.1") and not _full(s["pattern"], "10.0.0.256")
    for model, name in CIDR_FIELDS:
        s = _string_schema(schemas[model]["properties"][name])
        assert _full(s["pattern"], "10.0.0.0/24"), (model, name)
        for bad in ("10.0.0.0", "10.0.0.0/33", "10.0.0.0/024", "fd00::/48", "10.0.0.0/24\n"):
            assert not _full(s["pattern"], bad), (model, name, bad)
    vpc = _string_schema(schemas["VpcCreate"]["properties"]["cidr"])["pattern"]
    assert not _full(vpc, "10.0.0.0/29") and not _full(vpc, "10.0.0.0/7")
    for (model, name), (good, bad) in NAME_FIELDS.items():
        s = _string_schema(schemas[model]["properties"][name])
        assert _full(s["pattern"], good) and not _full(s["pattern"], bad), (model, name)


def _patch_models() -> Iterator[type[Patch]]:
    stack: list[type[Patch]] = list(Patch.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        yield cls


def test_patch_fields_that_refuse_null_do_not_offer_it(app: Any) -> None:
    spec = app.openapi()
    assert '"nullable"' not in json.dumps(spec)  # not an OpenAPI 3.1 keyword
    schemas = spec["components"]["schemas"]
    checked = 0
    for model in _patch_models():
        if model.__name__ not in schemas:
            continue
        props = schemas[model.__name__]["properties"]
        for name in model.non_nullable():
            checked += 1
            assert {"type": "null"} not in props[name].get("anyOf", []), (model.__name__, name)
            assert props[name].get("type") != "null" and "default" not in props[name]
    assert checked >= 20
    port = schemas["PortUpdate"]["properties"]
    assert {"type": "null"} in port["host"]["anyOf"]  # null unbinds: it is offered


def test_every_write_declares_the_conflict_a_concurrent_change_can_cause(app: Any) -> None:
    missing = [
        f"{method.upper()} {path}"
        for path, item in app.openapi()["paths"].items()
        for method, op in item.items()
        if path.startswith("/v1/")
        and method in ("post", "patch", "delete")
        and "409" not in op["responses"]
    ]
    assert not missing, missing


# -- declarative clients: unchanged immutables; registered hosts ----------------------------


def test_an_unchanged_immutable_field_is_accepted(client: TestClient, tenant: Tenant) -> None:
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    p = h.port(client, tenant, s["id"], mac_address="FA:16:3e:00:00:01")
    g = h.group(client, tenant, v["id"])
    rule = h.rule(client, tenant, g["id"], port_min=22, port_max=22)
    r = h.router(client, tenant, v["id"])
    e = h.external_network(client)
    f = h.floating_ip(client, tenant, e["id"])
    host = h.host(client)
    g = client.get(f"/v1/security-groups/{g['id']}", headers=tenant.headers).json()  # rule: +1
    t = tenant.headers
    cases: list[tuple[str, dict[str, str], dict[str, Any], list[str]]] = [
        (f"/v1/vpcs/{v['id']}", t, v, ["cidr"]),
        (f"/v1/subnets/{s['id']}", t, s, ["vpc_id", "cidr", "gateway_ip"]),
        (f"/v1/ports/{p['id']}", t, p, ["subnet_id", "ip_address", "mac_address"]),
        (f"/v1/routers/{r['id']}", t, r, ["vpc_id"]),
        (f"/v1/security-groups/{g['id']}", t, g, ["vpc_id"]),
        (
            f"/v1/security-group-rules/{rule['id']}",
            t,
            rule,
            [
                "security_group_id",
                "direction",
                "protocol",
                "port_min",
                "port_max",
                "remote_cidr",
                "remote_group_id",
            ],
        ),
        (f"/v1/floating-ips/{f['id']}", t, f, ["external_network_id"]),
        (f"/v1/external-networks/{e['id']}", ADMIN, e, ["cidr", "gateway_ip", "allocation_pools"]),
        (f"/v1/hosts/{host['id']}", ADMIN, host, ["name"]),
    ]
    for url, who, current, names in cases:
        same = {n: current[n] for n in names}
        r0 = client.patch(url, json=same, headers=who)
        assert r0.status_code == 200, (url, r0.text)
        assert r0.json()["revision"] == current["revision"], url  # nothing changed
        change = {"vtep_ip": "192.0.2.99"} if "/hosts/" in url else {"description": "new"}
        r1 = client.patch(url, json={**same, **change}, headers=who)
        assert r1.status_code == 200, (url, r1.text)
        assert r1.json()["revision"] == current["revision"] + 1, url
    # a changed one among unchanged ones is still named
    r2 = client.patch(
        f"/v1/subnets/{s['id']}",
        json={"vpc_id": v["id"], "cidr": "10.0.1.0/25", "name": "z"},
        headers=t,
    )
    assert fields(h.problem(r2, 422)) == ["body.cidr"]


def test_a_port_on_an_unregistered_host_is_a_422(
    client: TestClient, tenant: Tenant, db_url: str
) -> None:
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    before = db_rows(db_url)
    r = client.post(
        "/v1/ports",
        json={"subnet_id": s["id"], "host": "ghost", "netns": "w"},
        headers=tenant.headers,
    )
    problem = h.problem(r, 422)
    assert fields(problem) == ["body.host"] and "ghost" in problem["detail"]
    assert db_rows(db_url) == before

    p = h.port(client, tenant, s["id"])
    r = client.patch(f"/v1/ports/{p['id']}", json={"host": "ghost"}, headers=tenant.headers)
    assert fields(h.problem(r, 422)) == ["body.host"]

    h.host(client, name="ghost")
    bound = client.patch(f"/v1/ports/{p['id']}", json={"host": "ghost"}, headers=tenant.headers)
    assert bound.status_code == 200 and bound.json()["host"] == "ghost"
    assert h.port(client, tenant, s["id"], host="ghost", netns="w")["host"] == "ghost"
    unbound = client.patch(f"/v1/ports/{p['id']}", json={"host": None}, headers=tenant.headers)
    assert unbound.status_code == 200 and unbound.json()["host"] is None
