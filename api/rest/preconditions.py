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

from api.deps import Principal, PrincipalDep, SessionDep
from api.errors import NotFound, PreconditionFailed
from api.rest.schemas import Output
from api.rest.transaction import in_one_call
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
        self._if_match = request.headers.get("if-match")

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
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, in_one_call(endpoint), **kwargs)

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        model = self.response_model
        if not (isinstance(model, type) and issubclass(model, Output)):
            return handler
        location = self.status_code == 201 and "POST" in (self.methods or ())

        async def answer(request: Request) -> Response:
            response = await handler(request)
            if 200 <= response.status_code < 300 and response.body:
                body = json.loads(bytes(response.body))
                response.headers["ETag"] = etag(body["revision"])
                if location:
                    base = str(request.base_url).rstrip("/")
                    path = self.path_format.format(**request.path_params)  # nested collections
                    response.headers["Location"] = f"{base}{path}/{body['id']}"
            return response

        return answer
