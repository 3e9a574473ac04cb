"""Typed domain errors rendered as RFC 9457 problem documents.

Each error carries its status; routes declare the statuses they can return through
`responses=problems(...)` so the OpenAPI document lists every one.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import get_route_path

from api.rest.methods import MethodTable

PROBLEM_TYPE = "https://vpcd.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the offending field, e.g. `body.cidr`.")
    message: str


class BlockingResource(BaseModel):
    type: str
    id: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] | None = None
    blocking_resources: list[BlockingResource] | None = None


class ApiError(Exception):
    status: int = 500
    slug: str = "internal"
    title: str = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update({k: v for k, v in self.extra.items() if v is not None})
        return body


class BadRequest(ApiError):
    status, slug, title = 400, "bad-request", "Bad request"


class Unauthorized(ApiError):
    status, slug, title = 401, "unauthorized", "Authentication required"
    headers = {"WWW-Authenticate": 'Bearer realm="vpcd"'}  # RFC 9110 §11.6.1: a 401 MUST


class Forbidden(ApiError):
    status, slug, title = 403, "forbidden", "Forbidden"


class NotFound(ApiError):
    status, slug, title = 404, "not-found", "Not found"

    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(f"{kind} {ident} not found")


class Conflict(ApiError):
    status, slug, title = 409, "conflict", "Conflict"


class InUse(Conflict):
    slug, title = "in-use", "Resource in use"

    def __init__(self, detail: str, blocking: list[tuple[str, str]]) -> None:
        super().__init__(detail, blocking_resources=[{"type": t, "id": i} for t, i in blocking])


class Exhausted(Conflict):
    slug, title = "exhausted", "Address space exhausted"


class QuotaExceeded(Conflict):
    slug, title = "quota-exceeded", "Quota exceeded"


class PreconditionFailed(ApiError):
    status, slug, title = 412, "precondition-failed", "Precondition failed"


class Unavailable(ApiError):
    status, slug, title = 503, "unavailable", "Service unavailable"
    headers = {"Retry-After": "1"}  # RFC 9110 §10.2.3: when to try again (seconds)


# Postgres aborted the whole transaction to break a conflict between concurrent ones
# (serialization_failure, deadlock_detected): nothing of it was written, so running the
# request again is safe whatever its method (api/transient.py does, a few times).
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
RETRYABLE_SCOPE_KEY = "vpcd.retryable"
DatabaseUnavailable = (OperationalError, InterfaceError, PoolTimeout)


def is_retryable(exc: BaseException) -> bool:
    """Whether the database rolled the request's transaction back to resolve a conflict."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in RETRYABLE_SQLSTATES


def unavailable(exc: BaseException) -> Unavailable:
    """The 503 for a database error that is not the request's fault: unreachable, restarting,
    out of connections, or a transaction aborted by a conflict. Never its SQL or parameters."""
    if is_retryable(exc):
        return Unavailable("the request met a conflicting concurrent transaction; retry")
    if isinstance(exc, PoolTimeout):
        return Unavailable("no database connection was free in time; retry")
    return Unavailable("the database is unreachable or restarting; retry")


class Invalid(ApiError):
    status, slug, title = 422, "validation", "Invalid request"

    def __init__(self, field: str, message: str, detail: str | None = None) -> None:
        super().__init__(
            detail or f"{field}: {message}", errors=[{"field": field, "message": message}]
        )

    def with_errors(self, errors: list[dict[str, str]]) -> Invalid:
        self.extra["errors"] = errors
        self.detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        self.args = (self.detail,)
        return self


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


_STATUS_DOC = {
    400: "Malformed request (bad page token, header)",
    401: "Missing or unknown bearer token",
    403: "Admin-only operation",
    404: "Not found (or owned by another tenant)",
    409: "Conflict: in use, exhausted, quota, or idempotent request still running",
    412: "If-Match does not match the current ETag",
    422: "Invalid input; `errors` names each field",
    503: "Database unreachable or restarting, or a transient conflict: retry after `Retry-After`",
}


def problem_response(status: int) -> dict[str, Any]:
    """The OpenAPI response object for a problem document with this status."""
    response: dict[str, Any] = {
        "description": _STATUS_DOC[status],
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if status == 503:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before trying again",
                "schema": {"type": "integer", "minimum": 0},
            }
        }
    return response


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries declaring problem documents for these statuses."""
    return {s: {"model": Problem, **problem_response(s)} for s in statuses}


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc)


def validation_problem(exc: RequestValidationError, instance: str) -> dict[str, Any]:
    errors = []
    for err in exc.errors():
        loc = err.get("loc", ())
        msg = str(err.get("msg", "invalid"))
        kind = err.get("type")
        if kind == "extra_forbidden":
            msg = "unknown or read-only field"
        if kind == "json_invalid":  # loc is ("body", byte offset): the offset is no field
            offset = loc[1] if len(loc) > 1 else "?"
            error = err.get("ctx", {}).get("error", msg)
            msg, loc = f"is not valid JSON ({error} at character {offset})", ("body",)
        if kind == "not_nullable":
            for name in str(err.get("ctx", {}).get("fields", "")).split(", "):
                errors.append({"field": _loc([*loc, name]), "message": "may not be null"})
            continue
        if kind == "unstorable_text":  # ctx names every offending string, nested or not
            for path in err.get("ctx", {}).get("fields", []):
                errors.append({"field": _loc([*loc, path] if path else loc), "message": msg})
            continue
        errors.append({"field": _loc(loc), "message": msg})
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
    return Invalid("body", "invalid", detail).problem(instance) | {"errors": errors}


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> ProblemResponse:
        headers = getattr(exc, "headers", None)
        return ProblemResponse(
            exc.problem(request.url.path), status_code=exc.status, headers=headers
        )

    @app.exception_handler(StaleDataError)
    async def _stale(request: Request, exc: StaleDataError) -> ProblemResponse:
        """Optimistic locking lost a race: another request changed the row first."""
        err: ApiError
        if request.headers.get("if-match"):
            err = PreconditionFailed("the resource changed after the ETag you sent; GET it again")
        else:
            err = Conflict("the resource was changed by a concurrent request; retry")
        return ProblemResponse(err.problem(request.url.path), status_code=err.status)

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> ProblemResponse:
        """A constraint caught a race the checks could not see (e.g. a parent deleted)."""
        err = Conflict("the request conflicts with a concurrent change; retry")
        return ProblemResponse(err.problem(request.url.path), status_code=err.status)

    async def _database(request: Request, exc: Exception) -> ProblemResponse:
        """The database failed, not the request: 503 with Retry-After, never 500."""
        if is_retryable(exc):  # the transaction was rolled back whole: safe to run again
            request.scope[RETRYABLE_SCOPE_KEY] = True
        err = unavailable(exc)
        return ProblemResponse(
            err.problem(request.url.path), status_code=err.status, headers=err.headers
        )

    for kind in DatabaseUnavailable:
        app.add_exception_handler(kind, _database)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> ProblemResponse:
        return ProblemResponse(validation_problem(exc, request.url.path), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> ProblemResponse:
        err = ApiError(str(exc.detail))
        err.status, err.slug, err.title = (
            exc.status_code,
            f"http-{exc.status_code}",
            str(exc.detail),
        )
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(headers or {}), **_allow(request)}
        return ProblemResponse(
            err.problem(request.url.path), status_code=exc.status_code, headers=headers
        )


def _allow(request: Request) -> dict[str, str]:
    """Every method of the path, from a table built once the app has all its routes."""
    state = request.app.state
    if getattr(state, "method_table", None) is None:
        state.method_table = MethodTable(request.app.routes)
    allow = state.method_table.allow(get_route_path(request.scope))
    return {"Allow": allow} if allow else {}
