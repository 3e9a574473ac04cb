"""The shape of a vpcctl resource row (`Resource`) and of its typed `create` options (`Opt`)."""

import inspect
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

import typer


@dataclass(frozen=True)
class Opt:
    """A typed `create` option: the API field it fills and how it is spelled on the command line."""

    field: str
    help: str
    flags: tuple[str, ...] = ()
    type: type = str
    many: bool = False  # repeatable; the values are sent as a list
    choices: tuple[str, ...] = ()

    @property
    def param(self) -> str:
        return "opt_" + self.field

    @property
    def flag(self) -> str:
        return self.flags[0] if self.flags else "--" + self.field.replace("_", "-")

    def parameter(self) -> inspect.Parameter:
        flags = self.flags or (self.flag,)
        if self.type is bool:
            flags = (f"{flags[0]}/--no-{flags[0][2:]}", *flags[1:])
        # typer takes choices from an Enum (it vendors its own click, so no click.Choice)
        kind: Any = StrEnum(self.field, {c: c for c in self.choices}) if self.choices else self.type
        base: Any = list[kind] if self.many else kind
        extra: dict[str, Any] = {"show_default": False}
        annotation = Annotated[base | None, typer.Option(*flags, help=self.help, **extra)]
        return inspect.Parameter(
            self.param, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
        )


@dataclass(frozen=True)
class Resource:
    name: str  # the sub-command, e.g. "security-groups"
    path: str
    singular: str
    help: str
    columns: tuple[str, ...]
    filters: tuple[str, ...]
    create: tuple[Opt, ...]
    example: str = ""  # a `create --set` example for a field that has no option of its own
    realised: bool = False  # hosts realise it: it has a status, and create can --wait

    @property
    def a(self) -> str:
        """The singular with its article, for help texts."""
        return ("an " if self.singular[0] in "aeiou" else "a ") + self.singular

    @property
    def metavar(self) -> str:
        return self.singular.upper().replace(" ", "_") + "_ID"

    @property
    def flags(self) -> dict[str, str]:
        """The `create` flag of each field that has one (for naming fields in errors)."""
        return {o.field: o.flag for o in self.create}


def ref(field: str, what: str) -> Opt:
    return Opt(field, f"Id of the {what}.")


NAME = Opt("name", "Name.")
DESCRIPTION = Opt("description", "Free-text description.")
TAGS = Opt("tags", "A tag; repeat for several.", ("--tag",), many=True)
