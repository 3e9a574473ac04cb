"""GET /v1/<collection>/<id> answered without routing or dependency solving (issue 14).

FastAPI solving a GET's dependency chain (router-level checks, `Lookup`, session, principal)
was a third of its CPU, and scanning the included routers another tenth. `FastReads` wraps
the app's router: a GET of a declared `/v1/<collection>/{id}` route whose dependencies are
only the id, `Lookup`, the session, the principal and its admin/tenant checks is answered
here by the same endpoint, with the same checks in the same order, its transaction in one
thread-pool call (api.rest.transaction), serialised as FastAPI does, with the same ETag.
Anything else (another method, a query string, an id no database takes, dependency
overrides, an undeclared path) goes to the router unchanged, which then gives its 404,
405 or 422. Errors raised here reach the app's problem handlers as a route's would.

The routes stay declared: they still serve HEAD and define the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fastapi.exceptions import ResponseValidationError
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

from api.deps import get_principal, require_admin, require_tenant
from api.rest.methods import iter_route_contexts
from api.rest.preconditions import Lookup, etag, lookup
from api.rest.schemas import Output, unstorable
from api.rest.transaction import get_session, open_session, transact

PREFIX = "/v1/"
CHECKS = frozenset({require_admin, require_tenant})  # each takes the principal, may raise 403
# The dependencies a reader may have, each built here; a route with any other is no reader.
KNOWN = frozenset({lookup, get_session, get_principal, *CHECKS})


@dataclass(frozen=True)
class Reader:
    """A declared GET-by-id route and how to call its endpoint directly."""

    route: APIRoute
    endpoint: Callable[..., Any]  # the sync function the route was declared with
    id_param: str
    arguments: tuple[tuple[str, Callable[..., Any]], ...]  # (parameter, dependency) in order

    async def answer(
        self, scope: Scope, receive: Receive, ident: str, threads: ThreadPoolExecutor
    ) -> Response:
        request = Request(scope, receive)
        principal = await get_principal(request)
        values: dict[str, Any] = {self.id_param: ident}
        for name, dependency in self.arguments:
            if dependency in CHECKS:
                values[name] = await dependency(principal)
        session = open_session(request)  # connects in the thread; `transact` closes it
        for name, dependency in self.arguments:
            if dependency is lookup:
                values[name] = Lookup(request, session, principal)
            elif dependency is get_session:
                values[name] = session
            elif dependency is get_principal:
                values[name] = principal
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(threads, transact, self.endpoint, values, session)
        return self.render(result)

    def render(self, result: Any) -> Response:
        """As FastAPI answers the route: validated by its response model, dumped as JSON."""
        field = self.route.response_field
        assert field is not None  # readers() takes only routes with a response model
        value, errors = field.validate(result, {}, loc=("response",))
        if errors:  # a bug, answered 500 as the declared route would
            raise ResponseValidationError(errors=errors, body=result)
        body = field.serialize_json(value, by_alias=True)
        response = Response(body, media_type="application/json")
        response.headers["ETag"] = etag(value.revision)
        return response


def readers(routes: list[Any]) -> dict[str, Reader]:
    """The GET-by-id routes answerable here, by collection, among every declared route."""
    contexts = list(iter_route_contexts(routes))
    paths = [c.path_format or "" for c in contexts]
    found: dict[str, Reader] = {}
    for context, path in zip(contexts, paths, strict=True):
        route = context.original_route
        reader = _reader(route, path) if isinstance(route, APIRoute) else None
        collection = path[len(PREFIX) :].partition("/")[0]
        shadowed = any(p != path and _overlaps(p, collection) for p in paths)
        if reader is not None and not shadowed:
            found.setdefault(collection, reader)
    return found


def _overlaps(path: str, collection: str) -> bool:
    """Another template that may match /v1/<collection>/<x>: the router alone decides those."""
    parts = path.split("/")
    return len(parts) == 4 and parts[1] == "v1" and (parts[2] == collection or "{" in parts[2])


def _reader(route: APIRoute, path: str) -> Reader | None:
    parts = path.split("/")
    dependant = route.dependant
    if (
        route.methods != {"GET"}
        or len(parts) != 4
        or not path.startswith(PREFIX)
        or "{" in parts[2]
        or not (parts[3].startswith("{") and parts[3].endswith("}"))
        or route.response_field is None
        or not (isinstance(route.response_model, type) and issubclass(route.response_model, Output))
        or route.dependencies
        or dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.body_params
        or [p.name for p in dependant.path_params] != [parts[3][1:-1]]
    ):
        return None
    arguments = tuple((d.name or "", d.call) for d in dependant.dependencies if d.call)
    if len(arguments) != len(dependant.dependencies) or any(c not in KNOWN for _, c in arguments):
        return None
    if dependant.call is None:
        return None
    endpoint = inspect.unwrap(dependant.call)  # api.rest.transaction.in_one_call wraps it
    if inspect.iscoroutinefunction(endpoint):
        return None
    return Reader(route, endpoint, parts[3][1:-1], arguments)


class FastReads:
    """Wraps the app's router: answers the readers' GETs, passes every other request on.

    Its threads are its own: anyio's thread-pool call (run_in_threadpool) cost more CPU than
    the query it ran. DbAdmission admits no more requests than there are threads.
    """

    def __init__(self, app: ASGIApp, table: dict[str, Reader], threads: int) -> None:
        self.app = app
        self.table = table
        self.threads = ThreadPoolExecutor(threads, thread_name_prefix="vpcd-read")

    def reader(self, scope: Scope) -> tuple[Reader, str] | None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("query_string"):
            return None
        path = get_route_path(scope)
        if not path.startswith(PREFIX) or scope["app"].dependency_overrides:
            return None
        collection, _, ident = path[len(PREFIX) :].partition("/")
        reader = self.table.get(collection)
        if reader is None or not ident or "/" in ident or unstorable(ident):
            return None
        return reader, ident

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.reader(scope)
        if found is None:
            await self.app(scope, receive, send)
            return
        reader, ident = found
        scope["route"], scope["endpoint"] = reader.route, reader.route.endpoint
        scope["path_params"] = {reader.id_param: ident}
        response = await reader.answer(scope, receive, ident, self.threads)
        await response(scope, receive, send)


def install(app: Any, threads: int) -> None:
    """Answer the app's GET-by-id routes here; call once every route is declared."""
    table = readers(app.routes)
    app.router.middleware_stack = FastReads(app.router.middleware_stack, table, threads)
