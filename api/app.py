"""The app factory: routers, problem handlers, idempotency, metrics, health."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Response
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.telemetry import TelemetryConfig
from pydantic import BaseModel

from api import errors, metrics
from api.auth import TokenCache
from api.deps import DbAdmission
from api.rest import reads
from api.rest.query import reject_unknown_query, reject_unstorable_parameters
from api.services import quotas
from api.services.idempotency import MAX_KEY_LENGTH, IdempotencyMiddleware
from api.services.notify import Notifier
from api.settings import Settings, get_settings
from api.transient import RetryTransient
from models.db import engine_for, ping, pool_capacity, read_engine, session_factory
from models.tenant import add_token, admin_token_exists, keep_only_admin_token

log = logging.getLogger("vpcd.api")
NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
UI_DIR = Path(__file__).with_name("ui")  # the topology page: static files, no build step


def operation_id(route: APIRoute) -> str:
    """operationId = the route function's name: create_vpc, list_subnets, ..."""
    return route.name


def ensure_admin_token(settings: Settings) -> str | None:
    """Store VPCD_ADMIN_TOKEN's hash, or mint one at first start and print it once."""
    try:
        return _ensure_admin_token(settings)
    except sa.exc.IntegrityError:  # another API worker stored the same token first
        return None


def _ensure_admin_token(settings: Settings) -> str | None:
    with session_factory(engine_for(settings.database_url)).begin() as session:
        if settings.vpcd_admin_token:
            keep_only_admin_token(session, settings.vpcd_admin_token)
            return None
        if admin_token_exists(session):
            return None
        token = "vpcd_admin_" + secrets.token_urlsafe(32)
        add_token(session, token, None)
    print(f"vpcd: generated admin token (shown once): {token}", flush=True)
    return token


class Health(BaseModel):
    status: Literal["ok"]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = engine_for(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ensure_admin_token(settings)
        yield

    app = FastAPI(
        title="vpcd",
        version="1",
        description="VPC control plane: tenants declare isolated networks; hosts realise them.",
        generate_unique_id_function=operation_id,
        lifespan=lifespan,
        # No native OpenTelemetry: vpcd exports Prometheus metrics (api.metrics), and asking
        # OpenTelemetry on every request whether a provider was configured cost a twentieth
        # of a create (issue 14).
        telemetry=NO_TELEMETRY,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = session_factory(engine)
    # Quota claims are made binding right before each commit (api.services.quotas).
    quotas.install(app.state.sessionmaker, engine)
    app.state.read_sessionmaker = session_factory(read_engine(engine))
    app.state.reads_autocommit = read_engine(engine) is not engine  # Postgres: no BEGIN/COMMIT
    app.state.tokens = TokenCache(app.state.read_sessionmaker, settings.token_cache_seconds)
    app.state.notifier = Notifier(settings)
    # Each request's transaction runs in one call on these (api.rest.transaction, reads);
    # DbAdmission admits no more requests at once than there are threads.
    app.state.threads = ThreadPoolExecutor(pool_capacity(engine), thread_name_prefix="vpcd-db")
    errors.install(app)

    from api import (
        external_networks,
        floating_ips,
        health_monitors,
        hosts,
        listeners,
        load_balancers,
        network_acls,
        pools,
        ports,
        provider_networks,
        routers,
        security_groups,
        subnets,
        tenants,
        vpcs,
    )

    for module in (
        tenants,
        hosts,
        vpcs,
        subnets,
        ports,
        routers,
        security_groups,
        network_acls,
        external_networks,
        provider_networks,
        floating_ips,
        load_balancers,
        listeners,
        pools,
        health_monitors,
    ):
        app.include_router(
            module.router,
            dependencies=[Depends(reject_unstorable_parameters), Depends(reject_unknown_query)],
        )

    @app.get("/healthz", tags=["health"])
    async def get_health() -> Health:
        """The process is up (liveness)."""
        return Health(status="ok")

    @app.get("/readyz", tags=["health"], responses=errors.problems(503))
    def get_readiness() -> Health:
        """The database answers (readiness); otherwise a 503 problem document."""
        try:
            ping(engine)
        except sa.exc.SQLAlchemyError as exc:
            raise errors.Unavailable(
                f"database unreachable: {type(exc.__cause__ or exc).__name__}"
            ) from exc
        return Health(status="ok")

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/ui", include_in_schema=False)
    def topology_page() -> RedirectResponse:
        return RedirectResponse("ui/")  # relative: still right behind a path prefix

    app.mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui")

    problem_only_openapi(app)
    app.add_middleware(RetryTransient)  # inside idempotency: a replay is the final answer
    app.add_middleware(
        IdempotencyMiddleware,
        sessionmaker=app.state.sessionmaker,
        tokens=app.state.tokens,
        settings=settings,
    )
    reads.install(app, app.state.threads)  # GETs: no routing, no dependency solving
    app.add_middleware(DbAdmission, limit=pool_capacity(engine))
    app.add_middleware(metrics.MetricsMiddleware)
    return app


def problem_only_openapi(app: FastAPI) -> None:
    """Finish FastAPI's document so that generated clients see the whole contract (DESIGN §3).

    Every error response is a Problem under application/problem+json only (FastAPI's own 422
    schema goes); /v1 calls need a bearer token; POST/PATCH take `Idempotency-Key`, which can
    also answer 400, 409 and 422; every /v1 write can meet a concurrent change (409); calls
    that honour `If-Match` (those declaring 412) take it.
    """
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        spec = original()
        for path, item in spec.get("paths", {}).items():
            for method, op in item.items():
                _finish_operation(path, method, op)
        _link_created_resources(spec)
        components = spec.setdefault("components", {})
        schemas = components.get("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        components["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "A tenant token (POST /v1/tenants/{id}/tokens) or the admin token",
            }
        }
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def _finish_operation(path: str, method: str, op: dict[str, Any]) -> None:
    responses: dict[str, Any] = op.setdefault("responses", {})
    if path.startswith("/v1/"):
        op["security"] = [{"bearer": []}]
        if method in ("post", "patch"):
            _header(
                op,
                "Idempotency-Key",
                "Retry safely: the first response is replayed",
                {"minLength": 1, "maxLength": MAX_KEY_LENGTH},
            )
            for status in ("400", "409", "422"):
                responses.setdefault(status, {})
        if method in ("post", "patch", "delete"):  # a concurrent change can always conflict
            responses.setdefault("409", {})
        responses.setdefault("503", {})  # every /v1 call needs the database (Retry-After)
    if "412" in responses:
        _header(op, "If-Match", "Apply only if the resource's ETag still matches (else 412)")
    for status in list(responses):
        if int(status) >= 400:
            responses[status] = errors.problem_response(int(status))
    op["responses"] = dict(sorted(responses.items()))


def _link_created_resources(spec: dict[str, Any]) -> None:
    """OpenAPI links from each create to what it made: its GET, PATCH, DELETE and sub-paths.

    `POST /v1/vpcs` answers a VPC; `/v1/vpcs/{vpc_id}` takes its `id`. Clients and stateful
    fuzzers follow these links instead of guessing ids. A target's path parameter comes from
    the created body's field of that name, else (the first new one) from its `id`, else from
    the create's own path; a target needing anything else is not linked.
    """
    paths: dict[str, Any] = spec.get("paths", {})
    schemas = spec.get("components", {}).get("schemas", {})
    for path, item in paths.items():
        created = item.get("post", {}).get("responses", {}).get("201", {})
        ref = created.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
        if not ref:
            continue
        fields = schemas.get(ref.rsplit("/", 1)[-1], {}).get("properties", {})
        own = set(re.findall(r"\{(\w+)\}", path))
        links: dict[str, Any] = {}
        for target, target_item in paths.items():
            if not target.startswith(path + "/{"):
                continue
            first = re.match(r"\{(\w+)\}", target[len(path) + 1 :])
            params: dict[str, str] = {}
            for name in re.findall(r"\{(\w+)\}", target):
                if name in fields:
                    params[name] = f"$response.body#/{name}"
                elif first is not None and name == first.group(1) and "id" in fields:
                    params[name] = "$response.body#/id"
                elif name in own:
                    params[name] = f"$request.path.{name}"
            if len(params) != len(re.findall(r"\{(\w+)\}", target)):
                continue
            for method, op in sorted(target_item.items()):
                if method in ("get", "patch", "delete", "post") and "operationId" in op:
                    links[op["operationId"]] = {
                        "operationId": op["operationId"],
                        "parameters": params,
                    }
        if links:
            created["links"] = dict(sorted(links.items()))


def _header(
    op: dict[str, Any], name: str, description: str, limits: dict[str, int] | None = None
) -> None:
    params: list[dict[str, Any]] = op.setdefault("parameters", [])
    if not any(p.get("in") == "header" and p.get("name") == name for p in params):
        params.append(
            {
                "name": name,
                "in": "header",
                "required": False,
                "description": description,
                "schema": {"type": "string"} | (limits or {}),
            }
        )
