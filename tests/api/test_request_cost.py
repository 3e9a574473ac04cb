"""What a request passes through: layers, thread hand-offs, commits (issue 14, no timings).

- A fast GET (api.rest.reads) is answered right inside DbAdmission: none of the layers
  that only pass a GET on (idempotency, retry, FastAPI's exception and exit-stack layers,
  the router) is on its way.
- A create makes one thread hand-off, on the app's own threads, and no anyio call; no
  dependency of it is a generator (FastAPI enters nothing in an exit stack for it).
- A GET on Postgres's autocommit engine ends its session without a commit (nor a
  rollback, which would expire what it loaded).
- No request asks OpenTelemetry whether it was configured (vpcd exports Prometheus).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import anyio.to_thread
import opentelemetry.trace
import pytest
import sqlalchemy as sa
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import Router

from api.app import create_app
from api.deps import DbAdmission, SessionDep
from api.errors import Conflict
from api.rest.preconditions import ResourceRoute
from api.rest.reads import FastReads
from api.services.idempotency import IdempotencyMiddleware
from api.settings import Settings
from api.transient import RetryTransient
from models.tenant import Tenant as TenantRow
from tests.api import helpers as h
from tests.conftest import Tenant


def layers(app: Any) -> list[Any]:
    """The app's middleware stack from the outside in, down to the router."""
    if app.middleware_stack is None:
        app.middleware_stack = app.build_middleware_stack()
    found, layer = [], app.middleware_stack
    while layer is not None and not isinstance(layer, Router):
        found.append(layer)
        layer = getattr(layer, "app", None)
    return found


def test_a_fast_get_passes_no_layer_that_only_passes_it_on(app: FastAPI) -> None:
    stack = layers(app)
    kinds = [type(layer) for layer in stack]
    fast = kinds.index(FastReads)
    assert kinds[fast - 1] is DbAdmission  # admitted (it holds a connection) ...
    outside = set(kinds[:fast])  # ... and nothing of the writes' path before it
    assert not outside & {IdempotencyMiddleware, RetryTransient, ExceptionMiddleware}, kinds


class Calls:
    def __init__(self) -> None:
        self.anyio = self.threads = self.commits = self.rollbacks = self.otel = 0
        self.exit_stack = 0


@pytest.fixture
def calls(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> Iterator[Calls]:
    seen = Calls()
    real_anyio, real_submit = anyio.to_thread.run_sync, app.state.threads.submit
    real_commit, real_provider = Session.commit, opentelemetry.trace.get_tracer_provider
    real_rollback, real_enter = Session.rollback, AsyncExitStack.enter_async_context

    async def anyio_call(*args: Any, **kwargs: Any) -> Any:
        seen.anyio += 1
        return await real_anyio(*args, **kwargs)

    def submit(*args: Any, **kwargs: Any) -> Any:
        seen.threads += 1
        return real_submit(*args, **kwargs)

    def commit(self: Session) -> None:
        seen.commits += 1
        real_commit(self)

    def rollback(self: Session) -> None:
        seen.rollbacks += 1
        real_rollback(self)

    async def enter(self: AsyncExitStack, cm: Any) -> Any:
        seen.exit_stack += 1
        return await real_enter(self, cm)

    def provider(*args: Any, **kwargs: Any) -> Any:
        seen.otel += 1
        return real_provider(*args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", anyio_call)
    monkeypatch.setattr(app.state.threads, "submit", submit)
    monkeypatch.setattr(Session, "commit", commit)
    monkeypatch.setattr(Session, "rollback", rollback)
    monkeypatch.setattr(AsyncExitStack, "enter_async_context", enter)
    monkeypatch.setattr(opentelemetry.trace, "get_tracer_provider", provider)
    yield seen


def test_a_create_makes_one_hand_off_on_the_apps_threads(
    client: TestClient, tenant: Tenant, calls: Calls
) -> None:
    subnet = h.subnet(client, tenant, h.vpc(client, tenant)["id"])
    h.port(client, tenant, subnet["id"])  # warm: the token is verified and cached
    calls.__init__()  # type: ignore[misc]
    h.port(client, tenant, subnet["id"])
    assert (calls.anyio, calls.threads, calls.commits, calls.rollbacks) == (0, 1, 1, 0)
    assert calls.exit_stack == 0


def test_a_get_on_the_autocommit_engine_neither_commits_nor_rolls_back(
    app: FastAPI, client: TestClient, tenant: Tenant, calls: Calls
) -> None:
    url = f"/v1/vpcs/{h.vpc(client, tenant)['id']}"
    assert client.get(url, headers=tenant.headers).status_code == 200
    calls.__init__()  # type: ignore[misc]
    for path in (url, "/v1/vpcs"):
        assert client.get(path, headers=tenant.headers).status_code == 200
    expected = 0 if app.state.engine.dialect.name == "postgresql" else 2  # SQLite: BEGIN
    assert (calls.threads, calls.commits, calls.rollbacks) == (2, expected, 0)


def test_no_request_asks_opentelemetry(client: TestClient, tenant: Tenant, calls: Calls) -> None:
    vpc = h.vpc(client, tenant)
    assert client.get(f"/v1/vpcs/{vpc['id']}", headers=tenant.headers).status_code == 200
    assert client.get("/healthz").status_code == 200
    assert calls.otel == 0


def test_an_async_route_ends_its_session_as_a_sync_route_does(db_url: str) -> None:
    """No generator dependency ends the session: an async route's call does (commits its
    change; rolls back on error)."""
    app = create_app(Settings(database_url=db_url, redis_url=None))
    router = APIRouter(route_class=ResourceRoute)

    @router.post("/async-made/{name}", status_code=201)
    async def make(name: str, session: SessionDep) -> dict[str, str]:
        session.add(TenantRow(name=name))
        if name.startswith("refused"):
            session.flush()
            raise Conflict("refused after writing")
        return {"name": name}

    app.include_router(router)
    with TestClient(app) as c:
        assert c.post("/async-made/async-kept").status_code == 201
        assert c.post("/async-made/refused-one").status_code == 409
    with app.state.sessionmaker() as session:
        names = set(session.scalars(sa.select(TenantRow.name)))
    assert "async-kept" in names and "refused-one" not in names
