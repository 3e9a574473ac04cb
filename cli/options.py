"""What vpcctl's commands take: parsing of KEY=VALUE pairs and headers, and the shared options.

The generated CRUD commands (`cli.crud`) and the hand-written actions (`cli.vpcctl`) declare
their options with these `Annotated` types, so a flag is spelled and explained once.
"""

import inspect
import json
from enum import StrEnum
from typing import Annotated, Any

import typer

from cli.client import MAX_PAGE, Output

# --------------------------------------------------------------------------- input


def parse_value(raw: str) -> Any:
    """A --set value: JSON when it parses as JSON, else the plain string."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_pairs(pairs: list[str] | None, option: str, as_json: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {pair!r}", param_hint=option)
        out[key] = parse_value(raw) if as_json else raw
    return out


def etag(value: str | None) -> dict[str, str]:
    """An If-Match header from a revision number (3) or an ETag as the API sent it ("3")."""
    if value is None:
        return {}
    value = value.strip()
    if value != "*" and not value.startswith(('"', "W/")):
        value = f'"{value}"'
    return {"If-Match": value}


def plain(value: Any) -> Any:
    """An option's value as JSON wants it (choices arrive as enum members)."""
    return value.value if isinstance(value, StrEnum) else value


def idempotency(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key} if key else {}


# --------------------------------------------------------------------------- shared options

OutputOpt = Annotated[
    Output | None,
    typer.Option(
        "--output",
        "-o",
        help="table, wide (every field) or json (default: the global --output).",
        case_sensitive=False,
        show_default=False,
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        show_default=False,
        help="A field to send; repeatable. Values that parse as JSON are sent as JSON "
        "(numbers, true, null, lists, objects), anything else as a string.",
    ),
]
IfMatchOpt = Annotated[
    str | None,
    typer.Option(
        "--if-match",
        metavar="REVISION",
        help="Only if the resource is still at this revision (or ETag); else 412.",
    ),
]
IdemOpt = Annotated[
    str | None,
    typer.Option(
        "--idempotency-key",
        metavar="KEY",
        help="Retry-safe: a repeat with the same key replays the first answer.",
    ),
]
FilterOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--filter",
        "-f",
        metavar="KEY=VALUE",
        show_default=False,
        help="Equality filter; repeatable.",
    ),
]
LimitOpt = Annotated[
    int | None,
    typer.Option(
        "--limit",
        min=1,
        show_default=False,
        help="Stop after this many items (default: every page).",
    ),
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print only ids, one per line.", show_default=False)
]
WaitOpt = Annotated[
    bool,
    typer.Option(
        "--wait",
        help="Wait until the hosts have realised it (status active); fail on error.",
        show_default=False,
    ),
]
WaitTimeoutOpt = Annotated[
    float, typer.Option("--wait-timeout", metavar="SECONDS", help="How long --wait waits.")
]
PageSizeOpt = Annotated[
    int, typer.Option("--page-size", min=1, max=MAX_PAGE, help="Items fetched per request.")
]


def keyword(name: str, annotation: Any, default: Any = None) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )
