"""Base request and response schemas every resource shares."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

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
