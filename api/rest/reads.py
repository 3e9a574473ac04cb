"""GETs of /v1/<collection> and /v1/<collection>/<id> answered before routing (issue 14).

FastAPI solving a GET's dependency chain (router-level checks, `Lookup` or `Pages`, session,
principal) was a third of its CPU, scanning the included routers another tenth, and
anyio's thread-pool call most of the rest. `FastReads`, a middleware right inside
DbAdmission, answers a GET of a declared list or by-id route whose dependencies are all
known here (KNOWN) with the same endpoint, with the same checks in the same order, query
parameters validated by FastAPI's own function, its transaction in one call on the app's
threads, serialised as FastAPI serialises it, with the same ETag. Any other request
(another method or path, dependency overrides) goes on unchanged to the idempotency and
retry layers and the router, which then gives its 404, 405 or 307. A fast GET passes none
of those layers, which only passed it on (with FastAPI's own, a tenth of its CPU). Errors
raised here reach the app's problem handlers as a route's would, through an
ExceptionMiddleware of the same handlers.

The routes stay declared: they define the OpenAPI document and serve everything else.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fastapi.dependencies.utils import request_params_to_args
from fastapi.exceptions import RequestValidationError, ResponseValidationError
from fastapi.routing import APIRoute
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

from api.deps import get_principal, require_admin, require_tenant
from api.rest.methods import iter_route_contexts
from api.rest.pages import Page, Pages, pages
from api.rest.preconditions import Lookup, etag, lookup
from api.rest.query import reject_unknown_query, reject_unstorable_parameters
from api.rest.schemas import Output
from api.rest.transaction import get_session, open_session, transact

PREFIX = "/v1/"
REQUEST_CHECKS = frozenset({reject_unstorable_parameters, reject_unknown_query})  # may 422
WHO_CHECKS = frozenset({require_admin, require_tenant})  # take the principal, may 403
# The dependencies a reader may have, each built here; a route with any other is no reader.
KNOWN = frozenset({lookup, pages, get_session, get_principal, *REQUEST_CHECKS, *WHO_CHECKS})
WHO = frozenset({lookup, get_principal, *WHO_CHECKS})  # those that need the caller


@dataclass(frozen=True)
class Reader:
    """A declared GET route and how to call its endpoint directly."""

    route: APIRoute  # the declared route: scope["route"] for metrics and query checks
    endpoint: Callable[..., Any]  # the sync function the route was declared with
    dependant: Any  # the route's dependencies as included (router-level checks first)

    async def answer(self, request: Request, threads: ThreadPoolExecutor) -> Response:
        values: dict[str, Any] = dict(request.path_params)
        deps = self.dependant.dependencies
        for dep in deps:
            if dep.call in REQUEST_CHECKS:
                await dep.call(request)
        principal = await get_principal(request)
        for dep in deps:
            if dep.call in WHO_CHECKS:
                values[dep.name] = await dep.call(principal)
        query, errors = self.query(request)
        if errors:
            raise RequestValidationError(errors)
        values |= query["endpoint"]
        session = open_session(request)  # connects in the thread; `transact` closes it
        for dep in deps:
            if dep.call is lookup:
                values[dep.name] = Lookup(request, session, principal)
            elif dep.call is pages:
                values[dep.name] = Pages(session, **query["pages"])
            elif dep.call is get_session:
                values[dep.name] = session
            elif dep.call is get_principal:
                values[dep.name] = principal
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(threads, transact, self.endpoint, values, session)
        return self.render(result)

    def query(self, request: Request) -> tuple[dict[str, dict[str, Any]], list[Any]]:
        """Query parameters, validated as FastAPI does: `Pages`' first, then the route's."""
        found: dict[str, dict[str, Any]] = {}
        errors: list[Any] = []
        owners = [d for d in self.dependant.dependencies if d.call is pages]
        for owner, dependant in [("pages", d) for d in owners] + [("endpoint", self.dependant)]:
            values, wrong = request_params_to_args(dependant.query_params, request.query_params)
            found[owner], errors = values, errors + wrong
        return found, errors

    def render(self, result: Any) -> Response:
        """As FastAPI answers the route: validated by its response model, dumped as JSON."""
        field = self.route.response_field
        assert field is not None  # readers() takes only routes with a response model
        value, errors = field.validate(result, {}, loc=("response",))
        if errors:  # a bug, answered 500 as the declared route would
            raise ResponseValidationError(errors=errors, body=result)
        response = Response(
            field.serialize_json(value, by_alias=True), media_type="application/json"
        )
        if isinstance(value, Output):  # api.rest.preconditions.ResourceRoute does the same
            response.headers["ETag"] = etag(value.revision)
        return response


def readers(routes: list[Any]) -> dict[str, Reader]:
    """The GET routes answerable here, by path template, among every declared route."""
    contexts = list(iter_route_contexts(routes))
    paths = [c.path_format or "" for c in contexts]
    found: dict[str, Reader] = {}
    for context, path in zip(contexts, paths, strict=True):
        reader = _reader(context, path)
        if reader is not None and not any(p != path and _overlaps(p, path) for p in paths):
            found[_template(path)] = reader
    return found


def _template(path: str) -> str:
    """/v1/vpcs -> "vpcs"; /v1/vpcs/{vpc_id} -> "vpcs/{}": how a request path is looked up."""
    collection, slash, rest = path[len(PREFIX) :].partition("/")
    return collection + ("/{}" if slash and rest else "")


def _overlaps(other: str, path: str) -> bool:
    """Another template that may match the same requests: the router alone decides those."""
    a, b = other.split("/"), path.split("/")
    return len(a) == len(b) and all(x == y or "{" in x + y for x, y in zip(a, b, strict=True))


def _reader(context: Any, path: str) -> Reader | None:
    route = context.original_route
    parts = path.split("/")
    if not (
        isinstance(route, APIRoute)
        and route.methods == {"GET"}
        and path.startswith(PREFIX)
        and len(parts) in (3, 4)
        and "{" not in parts[2]
        and (len(parts) == 3 or (parts[3].startswith("{") and parts[3].endswith("}")))
    ):
        return None
    model = route.response_model
    dependant = context.dependant  # with the router-level checks of its inclusion
    if (
        not (isinstance(model, type) and issubclass(model, Output | Page))
        or route.response_field is None
        or dependant.call is None
        or dependant.header_params
        or dependant.cookie_params
        or dependant.body_params
        or any(d.call not in KNOWN for d in dependant.dependencies)
        or any(d.query_params for d in dependant.dependencies if d.call is not pages)
        or not any(d.call in WHO for d in dependant.dependencies)  # every reader has a caller
    ):
        return None
    endpoint = inspect.unwrap(dependant.call)  # api.rest.transaction.in_one_call wraps it
    if inspect.iscoroutinefunction(endpoint):
        return None
    return Reader(route, endpoint, dependant)


class FastReads:
    """Answers the readers' GETs, passes every other request on.

    Its threads are the app's (`app.state.threads`), called directly: anyio's thread-pool
    call (run_in_threadpool) cost more CPU than the query it ran. DbAdmission admits no
    more requests than there are threads.
    """

    def __init__(
        self, app: ASGIApp, table: dict[str, Reader], threads: ThreadPoolExecutor, owner: Any
    ) -> None:
        self.app = app
        self.table = table
        self.threads = threads
        # The app's handlers, as FastAPI gives them to its ExceptionMiddleware (the 500
        # handler is ServerErrorMiddleware's, outside): an error here is answered as there.
        handlers = {k: v for k, v in owner.exception_handlers.items() if k not in (500, Exception)}
        self.errors = ExceptionMiddleware(_raise_caught, handlers=handlers, debug=owner.debug)

    def reader(self, scope: Scope) -> tuple[Reader, dict[str, str]] | None:
        if scope["type"] != "http" or scope["method"] != "GET":
            return None
        path = get_route_path(scope)
        if not path.startswith(PREFIX) or scope["app"].dependency_overrides:
            return None
        collection, slash, ident = path[len(PREFIX) :].partition("/")
        if "/" in ident or (slash and not ident):
            return None
        reader = self.table.get(collection + ("/{}" if slash else ""))
        if reader is None:
            return None
        params = [p.name for p in reader.dependant.path_params]
        return reader, dict(zip(params, [ident] if ident else [], strict=True))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.reader(scope)
        if found is None:
            await self.app(scope, receive, send)
            return
        reader, path_params = found
        scope["route"], scope["endpoint"] = reader.route, reader.route.endpoint
        scope["path_params"] = path_params
        try:
            response = await reader.answer(Request(scope, receive), self.threads)
        except Exception as exc:  # nothing was sent yet: the app's handler answers
            scope[CAUGHT_SCOPE_KEY] = exc
            await self.errors(scope, receive, send)
            return
        await response(scope, receive, send)


CAUGHT_SCOPE_KEY = "vpcd.fast_read_error"


async def _raise_caught(scope: Scope, receive: Receive, send: Send) -> None:
    """The app behind FastReads' ExceptionMiddleware: raises the reader's error again."""
    raise scope.pop(CAUGHT_SCOPE_KEY)


def install(app: Any, threads: ThreadPoolExecutor) -> None:
    """Answer the app's GET routes in a middleware; call once every route is declared,
    before adding DbAdmission (it must admit these GETs) and after the idempotency and
    retry layers (which such a GET skips)."""
    app.add_middleware(FastReads, table=readers(app.routes), threads=threads, owner=app)
