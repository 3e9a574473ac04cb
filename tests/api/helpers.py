"""Small builders for API tests: each asserts the create succeeded and returns the body."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.conftest import ADMIN, Tenant


def create(c: TestClient, path: str, who: Tenant | dict[str, str], **body: Any) -> dict[str, Any]:
    headers = who.headers if isinstance(who, Tenant) else who
    r = c.post(path, json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def vpc(c: TestClient, t: Tenant, cidr: str = "10.0.0.0/16", **kw: Any) -> dict[str, Any]:
    return create(c, "/v1/vpcs", t, cidr=cidr, **kw)


def subnet(
    c: TestClient, t: Tenant, vpc_id: str, cidr: str = "10.0.1.0/24", **kw: Any
) -> dict[str, Any]:
    return create(c, "/v1/subnets", t, vpc_id=vpc_id, cidr=cidr, **kw)


def port(c: TestClient, t: Tenant, subnet_id: str, **kw: Any) -> dict[str, Any]:
    return create(c, "/v1/ports", t, subnet_id=subnet_id, **kw)


def group(c: TestClient, t: Tenant, vpc_id: str, **kw: Any) -> dict[str, Any]:
    return create(c, "/v1/security-groups", t, vpc_id=vpc_id, **kw)


def rule(c: TestClient, t: Tenant, group_id: str, **kw: Any) -> dict[str, Any]:
    kw.setdefault("direction", "ingress")
    kw.setdefault("protocol", "tcp")
    return create(c, "/v1/security-group-rules", t, security_group_id=group_id, **kw)


def router(c: TestClient, t: Tenant, vpc_id: str, **kw: Any) -> dict[str, Any]:
    return create(c, "/v1/routers", t, vpc_id=vpc_id, **kw)


def external_network(
    c: TestClient, cidr: str = "203.0.113.0/24", gateway_ip: str = "203.0.113.1", **kw: Any
) -> dict[str, Any]:
    return create(c, "/v1/external-networks", ADMIN, cidr=cidr, gateway_ip=gateway_ip, **kw)


def floating_ip(c: TestClient, t: Tenant, external_network_id: str, **kw: Any) -> dict[str, Any]:
    return create(c, "/v1/floating-ips", t, external_network_id=external_network_id, **kw)


def host(
    c: TestClient, name: str = "host-1", vtep_ip: str = "192.0.2.11", **kw: Any
) -> dict[str, Any]:
    return create(c, "/v1/hosts", ADMIN, name=name, vtep_ip=vtep_ip, **kw)


def attach(c: TestClient, t: Tenant, router_id: str, subnet_id: str) -> dict[str, Any]:
    return create(c, f"/v1/routers/{router_id}/interfaces", t, subnet_id=subnet_id)


def load_balancer(c: TestClient, t: Tenant, subnet_id: str, **kw: Any) -> dict[str, Any]:
    return create(c, "/v1/load-balancers", t, vip_subnet_id=subnet_id, **kw)


def listener(
    c: TestClient, t: Tenant, lb_id: str, protocol: str = "TCP", port: int = 80, **kw: Any
) -> dict[str, Any]:
    body = {"load_balancer_id": lb_id, "protocol": protocol, "protocol_port": port, **kw}
    return create(c, "/v1/listeners", t, **body)


def pool(c: TestClient, t: Tenant, protocol: str = "TCP", **kw: Any) -> dict[str, Any]:
    kw.setdefault("lb_algorithm", "ROUND_ROBIN")
    return create(c, "/v1/pools", t, protocol=protocol, **kw)


def member(
    c: TestClient, t: Tenant, pool_id: str, address: str, port: int = 8080, **kw: Any
) -> dict[str, Any]:
    return create(c, f"/v1/pools/{pool_id}/members", t, address=address, protocol_port=port, **kw)


def monitor(c: TestClient, t: Tenant, pool_id: str, **kw: Any) -> dict[str, Any]:
    body = {"type": "TCP", "delay": 5, "timeout": 3, "max_retries": 2, **kw}
    return create(c, "/v1/health-monitors", t, pool_id=pool_id, **body)


def problem(r: Any, status: int) -> dict[str, Any]:
    """Assert an RFC 9457 problem with this status and return it."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    for key in ("type", "title", "status", "detail"):
        assert key in body, body
    assert body["status"] == status
    return body  # type: ignore[no-any-return]


def v1_routes(app: Any) -> Iterator[Any]:
    """Every /v1 operation of the app, whatever FastAPI's route nesting."""
    try:
        from fastapi.routing import iter_route_contexts

        routes: Any = iter_route_contexts(app.routes)
    except ImportError:  # older FastAPI: a flat list of APIRoute
        routes = app.routes
    for route in routes:
        if (route.path or "").startswith("/v1/") and getattr(route, "dependant", None):
            yield route


def dependency_names(dependant: Any) -> set[str]:
    names: set[str] = set()
    for sub in dependant.dependencies:
        names.add(getattr(sub.call, "__name__", ""))
        names |= dependency_names(sub)
    return names


@contextmanager
def recorded_statements(engine: Any) -> Iterator[list[str]]:
    """The text of every statement `engine` runs meanwhile (len() counts them)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


@contextmanager
def rolled_back_session(c: TestClient) -> Iterator[Any]:
    """A session on the test app's database whose work is rolled back at the end."""
    from models.db import engine_for, session_factory

    maker = session_factory(engine_for(c.app.state.settings.database_url))  # type: ignore[attr-defined]
    with maker() as session, session.begin():
        yield session
        session.rollback()
