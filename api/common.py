"""Shared REST machinery: base schemas, page tokens, ETag/If-Match, scoped lookups."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from fastapi import Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError
from sqlalchemy.orm import Session

from api.deps import Principal
from api.errors import BadRequest, Invalid, NotFound, PreconditionFailed
from models.base import Base
from models.query import get_scoped

M = TypeVar("M", bound=Base)

Name = Annotated[str, Field(max_length=255)]
Description = Annotated[str, Field(max_length=1024)]
Tag = Annotated[str, Field(min_length=1, max_length=128)]
Tags = Annotated[list[Tag], Field(max_length=50)]


class Input(BaseModel):
    """Request bodies: unknown (and read-only) fields are rejected, and so are wrong JSON
    types (strict: "80" is not a port, "yes" is not a boolean) rather than coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Patch(Input):
    """PATCH bodies: merge semantics; immutable fields are named and rejected with 422."""

    immutable: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _immutable(cls, data: Any) -> Any:
        if isinstance(data, dict):
            bad = sorted(k for k in data if k in cls.immutable)
            if bad:
                raise PydanticCustomError(
                    "immutable",
                    "cannot be changed after creation: {fields}",
                    {"fields": ", ".join(bad)},
                )
            nulls = sorted(k for k, v in data.items() if v is None and k in cls.non_nullable())
            if nulls:
                raise PydanticCustomError(
                    "not_nullable", "may not be null: {fields}", {"fields": ", ".join(nulls)}
                )
        return data

    @classmethod
    def non_nullable(cls) -> set[str]:
        return {
            n for n, f in cls.model_fields.items() if f.json_schema_extra == {"nullable": False}
        }

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


def NotNull(**kw: Any) -> Any:
    """A PATCH field that may be omitted but not set to null."""
    return Field(default=None, json_schema_extra={"nullable": False}, **kw)


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    created_at: datetime
    updated_at: datetime
    revision: int


class TenantOutput(Output):
    tenant_id: str


Status = Literal["pending", "active", "error"]


class RealisedOutput(TenantOutput):
    status: Status
    status_detail: str | None = None


# -- pages -------------------------------------------------------------------------------

Limit = Annotated[int, Query(ge=1, le=1000, description="Page size (default 100, max 1000)")]
PageToken = Annotated[
    str | None, Query(description="Opaque token from the previous page's `next_page_token`")
]


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
        return datetime.fromisoformat(created), str(ident)
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError) as exc:
        raise BadRequest("page_token is not a token this API issued") from exc


# -- ETags -------------------------------------------------------------------------------


def etag(revision: int) -> str:
    return f'"{revision}"'


def set_etag(response: Response, obj: Any) -> None:
    response.headers["ETag"] = etag(obj.revision)


def check_if_match(request: Request, obj: Any) -> None:
    header = request.headers.get("if-match")
    if header is None:
        return
    tags = [t.strip() for t in header.split(",")]
    if "*" in tags or etag(obj.revision) in tags:
        return
    raise PreconditionFailed(
        f"If-Match {header} does not match the current ETag {etag(obj.revision)}"
    )


def created(request: Request, response: Response, path: str, obj: Any) -> None:
    response.headers["Location"] = str(request.base_url).rstrip("/") + path
    set_etag(response, obj)


# -- lookups -----------------------------------------------------------------------------


def owned(session: Session, model: type[M], ident: str, who: Principal, kind: str) -> M:
    """The row if the caller may see it; another tenant's id is 404, never 403."""
    obj = get_scoped(session, model, ident, who.tenant_id)
    if obj is None:
        raise NotFound(kind, ident)
    return obj


def apply_changes(obj: Any, changes: dict[str, Any]) -> bool:
    """Merge PATCH fields; touch the row (bump revision) only if something changed."""
    changed = False
    for name, value in changes.items():
        if getattr(obj, name) != value:
            setattr(obj, name, value)
            changed = True
    if changed:
        obj.touch()
    return changed


# -- query strings -----------------------------------------------------------------------

_QUERY_NAMES: dict[int, frozenset[str]] = {}


def _query_names(dependant: Any) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def reject_unknown_query(request: Request) -> None:
    """A misspelt or unsupported filter is an error, not a silently unfiltered list.

    (`/v1/ports?vpc_id=...` would otherwise return every port.)
    """
    if not request.query_params:
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = _QUERY_NAMES.get(id(route))
    if known is None:
        known = _QUERY_NAMES[id(route)] = frozenset(_query_names(dependant))
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        errors = [
            {
                "field": f"query.{name}",
                "message": "unknown query parameter"
                + (
                    f"; this list filters by {', '.join(sorted(known - {'limit', 'page_token'}))}"
                    if known - {"limit", "page_token"}
                    else ""
                ),
            }
            for name in unknown
        ]
        raise Invalid(errors[0]["field"], errors[0]["message"]).with_errors(errors)
