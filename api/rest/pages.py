"""Lists (DESIGN §3): `?limit=` and an opaque `page_token`, answered as a `Page`.

A resource's list route declares its equality filters as query parameters and hands them,
with the `Pages` dependency (which owns `limit` and `page_token`), to `Pages.of`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar, get_args

import sqlalchemy as sa
from fastapi import Depends, Query
from pydantic import BaseModel

from api.deps import Principal, SessionDep
from api.errors import BadRequest
from api.rest.schemas import unstorable
from models.base import Base
from models.query import list_page

T = TypeVar("T", bound=BaseModel)
M = TypeVar("M", bound=Base)
P = TypeVar("P", bound="Page[Any]")

Limit = Annotated[int, Query(ge=1, le=1000, description="Page size (default 100, max 1000)")]
PageToken = Annotated[
    str | None, Query(description="Opaque token from the previous page's `next_page_token`")
]


class Page(BaseModel, Generic[T]):
    """One page of a list. Subclass it per resource (`class VpcList(Page[VpcOut])`) so the
    OpenAPI document names each list schema after its resource."""

    items: list[T]
    next_page_token: str | None = None


def encode_token(cursor: tuple[datetime, str] | None) -> str | None:
    if cursor is None:
        return None
    raw = json.dumps([cursor[0].isoformat(), cursor[1]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str | None) -> tuple[datetime, str] | None:
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created, ident = json.loads(raw)
        cursor = datetime.fromisoformat(created), str(ident)
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError) as exc:
        raise BadRequest("page_token is not a token this API issued") from exc
    if unstorable(cursor[1]):  # a NUL would reach Postgres in the keyset comparison
        raise BadRequest("page_token is not a token this API issued")
    return cursor


class Pages:
    """The list helper: the caller's page of a model's rows, rendered into a `Page`."""

    def __init__(
        self, session: SessionDep, limit: Limit = 100, page_token: PageToken = None
    ) -> None:
        self.session = session
        self.limit = limit
        self.page_token = page_token

    def of(
        self,
        page_type: type[P],
        model: type[M],
        who: Principal,
        filters: dict[str, Any],
        *,
        render: Callable[[M], Any] | None = None,
        where: tuple[sa.ColumnElement[bool], ...] = (),
    ) -> P:
        """`filters` are equalities by column (`tag` matches one of the tags); None is no
        filter. Tenants see their own rows, the admin everyone's. `render` defaults to the
        page's item schema read from the row."""
        if render is None:
            render = _item_schema(page_type).model_validate
        rows, cursor = list_page(
            self.session,
            model,
            who.tenant_id,
            filters,
            where,
            self.limit,
            decode_token(self.page_token),
        )
        return page_type(items=[render(r) for r in rows], next_page_token=encode_token(cursor))


def _item_schema(page_type: type[Page[Any]]) -> type[BaseModel]:
    (item,) = get_args(page_type.model_fields["items"].annotation)
    return item


async def pages(session: SessionDep, limit: Limit = 100, page_token: PageToken = None) -> Pages:
    return Pages(session, limit, page_token)  # async: no thread-pool call to build it


PagesDep = Annotated[Pages, Depends(pages)]
