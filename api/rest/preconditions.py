"""Strong ETags and If-Match (DESIGN §3), given to a resource by declaration.

- `ResourceRoute` (the route class of every resource router) sets `ETag` from the answered
  resource's `revision` on GET, POST and PATCH, and `Location` on a 201, so no route sets
  either by hand.
- `Lookup` (a request dependency) loads the rows a route names. `Lookup.target` loads the one
  its path names and, on PATCH and DELETE, refuses it with 412 unless `If-Match` matches.
  It runs in the route body, after FastAPI validated the request, so a bad body is a 422
  whatever the target.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from api.deps import Principal, PrincipalDep, SessionDep
from api.errors import NotFound, PreconditionFailed
from api.rest.schemas import Output
from api.rest.transaction import DEFER_SCOPE_KEY, SESSION_SCOPE_KEY, finish, in_one_call
from api.services.idempotency import CLAIM_SCOPE_KEY, record_in_transaction
from models.base import Base
from models.query import get_scoped

M = TypeVar("M", bound=Base)
WRITES = frozenset({"PATCH", "DELETE"})


def etag(revision: int) -> str:
    return f'"{revision}"'


def check_if_match(header: str | None, revision: int) -> None:
    """RFC 9110 strong comparison: `*`, or one listed tag equal to the current ETag."""
    if header is None:
        return
    tags = [t.strip() for t in header.split(",")]
    if "*" in tags or etag(revision) in tags:
        return
    raise PreconditionFailed(f"If-Match {header} does not match the current ETag {etag(revision)}")


def kind_of(model: type[Base]) -> str:
    """The resource's name in problems: its table's singular (vpcs -> vpc)."""
    return str(model.__tablename__).removesuffix("s")


class Lookup:
    """The rows a request may see: another tenant's id is 404, never 403."""

    def __init__(self, request: Request, session: SessionDep, who: PrincipalDep) -> None:
        self.session = session
        self.who: Principal = who
        self._method = request.method
        # Only PATCH and DELETE read If-Match: a GET parses no headers for it.
        self._if_match = request.headers.get("if-match") if self._method in WRITES else None

    def get(self, model: type[M], ident: str) -> M:
        obj = get_scoped(self.session, model, ident, self.who.tenant_id)
        if obj is None:
            raise NotFound(kind_of(model), ident)
        return obj

    def target(self, model: type[M], ident: str) -> M:
        """The resource the path names; a PATCH or DELETE must match its If-Match."""
        obj = self.get(model, ident)
        if self._method in WRITES:
            check_if_match(self._if_match, obj.revision)  # type: ignore[attr-defined]
        return obj


async def lookup(request: Request, session: SessionDep, who: PrincipalDep) -> Lookup:
    return Lookup(request, session, who)  # async: no thread-pool call to build it


LookupDep = Annotated[Lookup, Depends(lookup)]

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class ResourceRoute(APIRoute):
    """A route answering a resource (an `Output`): ETag from its revision, Location on 201.

    A sync route runs with its transaction in one thread-pool call (api.rest.transaction).
    The answer to a request with an Idempotency-Key is stored in the request's own
    transaction, before its commit: a change is never committed without the answer a
    retry replays, even when the process dies right after the commit.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, in_one_call(endpoint), **kwargs)

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        model = self.response_model
        resource = isinstance(model, type) and issubclass(model, Output)
        location = self.status_code == 201 and "POST" in (self.methods or ())

        async def answer(request: Request) -> Response:
            if CLAIM_SCOPE_KEY in request.scope:  # the commit waits for the answer
                request.scope[DEFER_SCOPE_KEY] = True
            try:
                response = await handler(request)
            except BaseException:
                held = request.scope.pop(SESSION_SCOPE_KEY, None)
                if held is not None:  # failed after its route returned: nothing commits
                    await run_in_threadpool(finish, held, False)
                raise
            if resource and 200 <= response.status_code < 300 and response.body:
                body = json.loads(bytes(response.body))
                response.headers["ETag"] = etag(body["revision"])
                if location:
                    base = str(request.base_url).rstrip("/")
                    path = self.path_format.format(**request.path_params)  # nested collections
                    response.headers["Location"] = f"{base}{path}/{body['id']}"
            session = request.scope.pop(SESSION_SCOPE_KEY, None)
            if session is not None:  # only keyed requests: no thread hop for the others
                await run_in_threadpool(_commit_with_answer, session, request.scope, response)
            return response

        return answer


def _commit_with_answer(session: Any, scope: Any, response: Response) -> None:
    try:
        record_in_transaction(session, scope, response)
    except BaseException:
        finish(session, ok=False)
        raise
    finish(session, ok=True)
