"""The app factory: routers, problem handlers, idempotency, metrics, health."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa
from fastapi import FastAPI, Response
from fastapi.routing import APIRoute
from fastapi.responses import JSONResponse

from api import errors, metrics
from api.services.idempotency import IdempotencyMiddleware
from api.settings import Settings, get_settings
from models import ApiToken
from models.db import engine_for, session_factory
from models.tenant import admin_token_exists, hash_token

log = logging.getLogger("vpcd.api")


def operation_id(route: APIRoute) -> str:
    """operationId = the route function's name: create_vpc, list_subnets, ..."""
    return route.name


def ensure_admin_token(settings: Settings) -> str | None:
    """Store VPCD_ADMIN_TOKEN's hash, or mint one at first start and print it once."""
    with session_factory(engine_for(settings.database_url)).begin() as session:
        if settings.vpcd_admin_token:
            digest = hash_token(settings.vpcd_admin_token)
            if session.scalar(sa.select(ApiToken.id).where(ApiToken.token_hash == digest)) is None:
                session.add(ApiToken(token_hash=digest, tenant_id=None))
            return None
        if admin_token_exists(session):
            return None
        token = "vpcd_admin_" + secrets.token_urlsafe(32)
        session.add(ApiToken(token_hash=hash_token(token), tenant_id=None))
    print(f"vpcd: generated admin token (shown once): {token}", flush=True)
    return token


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
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = session_factory(engine)
    errors.install(app)

    from api import (
        external_networks,
        floating_ips,
        hosts,
        ports,
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
        external_networks,
        floating_ips,
    ):
        app.include_router(module.router)

    @app.get("/healthz", tags=["health"], include_in_schema=True)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "DB unreachable"}})
    def readyz() -> Response:
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as exc:
            return JSONResponse({"status": "unavailable", "detail": str(exc)[:200]}, 503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    problem_only_openapi(app)
    app.add_middleware(IdempotencyMiddleware, sessionmaker=app.state.sessionmaker, settings=settings)
    app.add_middleware(metrics.MetricsMiddleware)
    return app


def problem_only_openapi(app: FastAPI) -> None:
    """Every error in the document is a Problem: replace FastAPI's default 422 schema."""
    original = app.openapi

    def openapi() -> dict[str, object]:
        if app.openapi_schema:
            return app.openapi_schema
        spec = original()
        content = {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        }
        for item in spec.get("paths", {}).values():
            for op in item.values():
                resp = op.get("responses", {}).get("422")
                if resp is not None:
                    resp["content"] = content
                    resp["description"] = "Invalid input; `errors` names each field"
        schemas = spec.get("components", {}).get("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
