"""GETs answered before routing (api.rest.reads): the same answers, for less.

Every kind's list and GET by id is asked by its owner, another tenant, the admin, no token
and an unknown token, for its id, an unknown one and bad ones, with good and bad query
strings: the fast path and the declared route (the table emptied, so the router answers)
give byte-identical status, headers and body. A GET with a cached token costs one thread
hand-off and one SQL statement.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.rest.reads import FastReads
from tests.api import helpers as h
from tests.api.test_route_contract import world
from tests.api.test_tokens import Clock, _tokens, other_worker  # noqa: F401 (a fixture)
from tests.conftest import ADMIN, Tenant

# Every GET-by-id route of the API; a new one must be answered here or exempted by name.
KINDS = {
    "address-scopes": "address_scope_id",
    "external-networks": "external_network_id",
    "floating-ips": "floating_ip_id",
    "health-monitors": "health_monitor_id",
    "hosts": "host_id",
    "listeners": "listener_id",
    "load-balancers": "load_balancer_id",
    "network-acl-entries": "entry_id",
    "network-acls": "network_acl_id",
    "physical-networks": "physical_network_id",
    "pools": "pool_id",
    "ports": "port_id",
    "routers": "router_id",
    "security-group-rules": "rule_id",
    "security-groups": "security_group_id",
    "subnets": "subnet_id",
    "tenants": "tenant_id",
    "vpcs": "vpc_id",
}


def fast_reads(c: TestClient) -> FastReads:
    """The app's FastReads layer, in its middleware stack (built as a first request would)."""
    app: Any = c.app
    if app.middleware_stack is None:
        app.middleware_stack = app.build_middleware_stack()
    layer = app.middleware_stack
    while not isinstance(layer, FastReads):
        layer = layer.app
    return layer


class RouterCalls:
    """Counts the requests that reach the router behind the fast path."""

    def __init__(self, fast: FastReads) -> None:
        self.inner, self.count = fast.app, 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.count += 1
        await self.inner(scope, receive, send)


@pytest.fixture
def router_calls(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> RouterCalls:
    fast = fast_reads(client)
    calls = RouterCalls(fast)
    monkeypatch.setattr(fast, "app", calls)
    return calls


def callers(owner: Tenant, other: Tenant) -> dict[str, dict[str, str]]:
    return {
        "owner": owner.headers,
        "other tenant": other.headers,
        "admin": ADMIN,
        "no token": {},
        "unknown token": {"Authorization": "Bearer not-a-token"},
        "not bearer": {"Authorization": "Basic eDp5"},
    }


def answer(r: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    return r.status_code, sorted(r.headers.items()), r.content


# Query strings every list is asked with: filters, pages, and each way to get them wrong.
QUERIES = [
    "",
    "?limit=1",
    "?limit=0",
    "?limit=x&page_token=%00",
    "?page_token=garbage",
    "?bogus=1&limit=2",
    "?name=%00",
    "?name=web&tag=a/b",
]


def test_every_list_and_get_by_id_route_is_answered_on_the_fast_path(client: TestClient) -> None:
    table = fast_reads(client).table
    expected = {f"{k}/{{}}": f"/v1/{k}/{{{p}}}" for k, p in KINDS.items()}
    expected |= {k: f"/v1/{k}" for k in KINDS}
    assert {k: r.route.path for k, r in table.items()} == expected


def test_fast_and_declared_paths_answer_alike_for_every_kind_and_caller(
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    router_calls: RouterCalls,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owner, other = make_tenant("owner"), make_tenant("other")
    ids = world(client, owner)
    h.vpc(client, owner, "10.9.0.0/16", name='wé "b"\t\u2028✓', tags=["a/b", "ü"])
    urls = [f"/v1/{k}/{ids[p]}" for k, p in KINDS.items()]
    urls += [f"/v1/{k}/{bad}" for k in KINDS for bad in ("no-such-id", "%00", "x?y=1")]
    urls += [f"/v1/{k}{query}" for k in KINDS for query in QUERIES]
    urls += ["/v1/listeners?protocol=NOPE&protocol_port=x", "/v1/health-monitors?type=TCP"]
    vpcs = client.get("/v1/vpcs", headers=owner.headers).json()["items"]
    urls += [f"/v1/vpcs/{v['id']}" for v in vpcs]  # the odd name too
    asked = [(url, who, hd) for url in urls for who, hd in callers(owner, other).items()]

    router_calls.count = 0
    fast = {(url, who): answer(client.get(url, headers=hd)) for url, who, hd in asked}
    assert router_calls.count == 0  # each was answered before the router
    monkeypatch.setattr(fast_reads(client), "table", {})
    declared = {(url, who): answer(client.get(url, headers=hd)) for url, who, hd in asked}
    assert router_calls.count == len(asked)

    assert fast == declared
    statuses = {status for status, _, _ in fast.values()}
    assert statuses == {200, 400, 401, 403, 404, 422}, statuses  # every answer was compared
    for kind, param in KINDS.items():
        status, headers, _ = fast[(f"/v1/{kind}/{ids[param]}", "admin")]
        assert status == 200 and dict(headers)["etag"].strip('"').isdigit(), (kind, headers)


@pytest.mark.parametrize(
    ("method", "suffix", "status"),
    [
        ("HEAD", "", 405),
        ("GET", "/", 307),  # to the path without the slash
        ("GET", "/interfaces", 404),
        ("DELETE", "", 204),
    ],
)
def test_other_requests_go_to_the_router(
    client: TestClient,
    tenant: Tenant,
    router_calls: RouterCalls,
    method: str,
    suffix: str,
    status: int,
) -> None:
    vpc = h.vpc(client, tenant)
    router_calls.count = 0
    r = client.request(
        method, f"/v1/vpcs/{vpc['id']}{suffix}", headers=tenant.headers, follow_redirects=False
    )
    assert router_calls.count == 1, r.text
    assert r.status_code == status, r.text


def test_another_tenants_id_is_404_on_the_fast_path(
    client: TestClient, make_tenant: Callable[..., Tenant], router_calls: RouterCalls
) -> None:
    owner, other = make_tenant("owner"), make_tenant("other")
    vpc, host = h.vpc(client, owner), h.host(client)
    router_calls.count = 0
    assert client.get(f"/v1/vpcs/{vpc['id']}", headers=owner.headers).status_code == 200
    body = h.problem(client.get(f"/v1/vpcs/{vpc['id']}", headers=other.headers), 404)
    assert vpc["id"] in body["detail"]
    h.problem(client.get(f"/v1/hosts/{host['id']}", headers=owner.headers), 403)
    h.problem(client.get(f"/v1/vpcs/{vpc['id']}"), 401)
    assert router_calls.count == 0


class Counts:
    def __init__(self) -> None:
        self.statements = self.anyio_calls = self.read_threads = 0


@pytest.fixture
def counts(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[Counts]:
    import anyio.to_thread

    seen = Counts()
    engine: sa.Engine = client.app.state.engine  # type: ignore[attr-defined]

    def statement(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        if sql != "BEGIN IMMEDIATE":  # SQLite's reads run in a transaction (models.db)
            seen.statements += 1

    real_anyio, real_submit = anyio.to_thread.run_sync, fast_reads(client).threads.submit

    async def anyio_call(*args: Any, **kwargs: Any) -> Any:
        seen.anyio_calls += 1
        return await real_anyio(*args, **kwargs)

    def submit(*args: Any, **kwargs: Any) -> Any:
        seen.read_threads += 1
        return real_submit(*args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", anyio_call)
    monkeypatch.setattr(fast_reads(client).threads, "submit", submit)
    sa.event.listen(engine, "before_cursor_execute", statement)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", statement)


def test_a_get_or_list_costs_one_thread_hand_off_and_one_statement(
    client: TestClient, tenant: Tenant, counts: Counts
) -> None:
    vpc = h.vpc(client, tenant)
    url = f"/v1/vpcs/{vpc['id']}"
    assert client.get(url, headers=tenant.headers).status_code == 200  # the token is cached
    counts.__init__()  # type: ignore[misc]
    for path in (url, url, "/v1/vpcs", "/v1/vpcs?limit=5&name=x"):
        assert client.get(path, headers=tenant.headers).status_code == 200
    assert (counts.statements, counts.anyio_calls, counts.read_threads) == (4, 0, 4)


def test_a_revocation_elsewhere_refuses_a_fast_read_within_the_cache_lifetime(
    client: TestClient,
    other_worker: TestClient,  # noqa: F811 (the fixture imported above)
    tenant: Tenant,
) -> None:
    url = f"/v1/external-networks/{h.external_network(client)['id']}"  # shared: any tenant's
    clock = Clock()
    elsewhere = _tokens(other_worker)
    elsewhere.clock = clock
    assert other_worker.get(url, headers=tenant.headers).status_code == 200
    assert client.delete(f"/v1/tenants/{tenant.id}", headers=ADMIN).status_code == 204
    assert client.get(url, headers=tenant.headers).status_code == 401  # here: at once
    clock.now += elsewhere.ttl - 0.5
    assert other_worker.get(url, headers=tenant.headers).status_code == 200  # still cached
    clock.now += 1.0
    h.problem(other_worker.get(url, headers=tenant.headers), 401)


def test_fast_reads_are_counted_under_their_route_template(
    client: TestClient, tenant: Tenant, router_calls: RouterCalls
) -> None:
    vpc = h.vpc(client, tenant)
    line = 'vpcd_http_requests_total{method="GET",route="/v1/vpcs/{vpc_id}",status="404"}'

    def count() -> float:
        found = [x for x in client.get("/metrics").text.splitlines() if x.startswith(line)]
        return float(found[0].split()[-1]) if found else 0.0

    before = count()
    router_calls.count = 0
    h.problem(client.get(f"/v1/vpcs/{vpc['id']}x", headers=tenant.headers), 404)
    h.problem(client.get(f"/v1/vpcs/{vpc['id']}x", headers=tenant.headers), 404)
    assert router_calls.count == 0
    assert count() == before + 2
