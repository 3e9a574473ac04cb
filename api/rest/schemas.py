"""Base request and response schemas every resource shares."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ModelWrapValidatorHandler, model_validator
from pydantic_core import PydanticCustomError

from api.errors import Invalid

Name = Annotated[str, Field(max_length=255)]
Description = Annotated[str, Field(max_length=1024)]
Tag = Annotated[str, Field(min_length=1, max_length=128)]
Tags = Annotated[list[Tag], Field(max_length=50)]


# -- text that no database takes ---------------------------------------------------------

UNSTORABLE = "contains a NUL character or a lone surrogate, which cannot be stored"


def unstorable(text: str) -> bool:
    """NUL (Postgres refuses it in text and JSON) or a lone surrogate (not encodable UTF-8)."""
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def unstorable_paths(value: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Where in a JSON value (keys included) a string holds text no database takes."""
    if isinstance(value, str):
        return [path] if unstorable(value) else []
    found: list[tuple[str | int, ...]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and unstorable(key):
                found.append((*path, key))
            found += unstorable_paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += unstorable_paths(item, (*path, i))
    return found


class Input(BaseModel):
    """Request bodies: unknown (and read-only) fields are rejected, and so are wrong JSON
    types (strict: "80" is not a port, "yes" is not a boolean) rather than coerced.

    No string anywhere in a body (nested models and list items included) may hold a NUL
    or a lone surrogate: each such field is named in a 422 before any field is validated.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any) -> Any:
        bad = unstorable_paths(data)
        if bad:
            raise PydanticCustomError(
                "unstorable_text",
                UNSTORABLE,
                {"fields": [".".join(str(p) for p in path) for path in bad]},
            )
        return data


class Patch(Input):
    """PATCH bodies: merge semantics.

    An immutable field may be sent with its current value (declarative clients send the
    whole resource on every apply); a different value is a 422 naming it, raised by
    `changes(current)`. Fields declared with `NotNull()` may be omitted but not be null.
    """

    immutable: ClassVar[frozenset[str]] = frozenset()
    _given_immutable: dict[str, Any]

    @model_validator(mode="wrap")
    @classmethod
    def _split_immutable(cls, data: Any, handler: ModelWrapValidatorHandler[Patch]) -> Patch:
        given: dict[str, Any] = {}
        if isinstance(data, dict):
            given = {k: v for k, v in data.items() if k in cls.immutable}
            data = {k: v for k, v in data.items() if k not in cls.immutable}
            nulls = sorted(k for k, v in data.items() if v is None and k in cls.non_nullable())
            if nulls:
                raise PydanticCustomError(
                    "not_nullable", "may not be null: {fields}", {"fields": ", ".join(nulls)}
                )
        model = handler(data)
        model._given_immutable = given
        return model

    @classmethod
    def non_nullable(cls) -> set[str]:
        return {n for n, f in cls.model_fields.items() if f.json_schema_extra is _not_null}

    def changes(self, current: object) -> dict[str, Any]:
        """The fields to merge into `current`; 422 if an immutable field would change."""
        given = getattr(self, "_given_immutable", {})
        changed = sorted(k for k, v in given.items() if getattr(current, k) != v)
        if changed:
            message = "cannot be changed after creation"
            raise Invalid(f"body.{changed[0]}", message).with_errors(
                [{"field": f"body.{k}", "message": message} for k in changed]
            )
        return self.model_dump(exclude_unset=True)


def _not_null(schema: dict[str, Any]) -> None:
    """JSON schema of a NotNull field: its non-null branch only, without `default: null`.

    OpenAPI 3.1 has no `nullable`; a field that refuses null must not list it.
    """
    schema.pop("default", None)
    branches = schema.get("anyOf")
    if isinstance(branches, list):
        kept = [b for b in branches if b != {"type": "null"}]
        if len(kept) == 1:
            del schema["anyOf"]
            schema.update(kept[0])
        else:
            schema["anyOf"] = kept


def NotNull(**kw: Any) -> Any:
    """A PATCH field that may be omitted but not set to null."""
    return Field(default=None, json_schema_extra=_not_null, **kw)


class Output(BaseModel):
    """A resource as answered: its `revision` is the strong ETag (see preconditions)."""

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


# -- shapes more than one resource has ---------------------------------------------------

PortNumber = Annotated[int, Field(ge=1, le=65535)]


def check_port_range(protocol: str, port_min: int | None, port_max: int | None) -> None:
    """A rule's ports: only with tcp or udp, and never the low one above the high one."""
    if (port_min is not None or port_max is not None) and protocol not in ("tcp", "udp"):
        field = "port_min" if port_min is not None else "port_max"
        raise Invalid(f"body.{field}", f"ports apply only to tcp and udp, not {protocol}")
    if port_min is not None and port_max is not None and port_min > port_max:
        raise Invalid("body.port_min", f"port_min {port_min} > port_max {port_max}")


class VpcChildCreate(Input):
    """The body of a named, tagged resource that lives in one VPC (a group, an ACL)."""

    vpc_id: str
    name: Name = ""
    description: Description = ""
    tags: Tags = []


class VpcChildUpdate(Patch):
    """Its PATCH body: everything but the VPC can change."""

    immutable = frozenset({"vpc_id"})
    name: Name | None = NotNull()
    description: Description | None = NotNull()
    tags: Tags | None = NotNull()


class VpcChildOutput(RealisedOutput):
    vpc_id: str
    name: str
    description: str
    tags: list[str]
