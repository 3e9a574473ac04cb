"""vpcctl's tables: whole cells (ids are never cut), `-o wide`, and `-q` ids."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list) and all(isinstance(v, str | int) for v in value):
        return ", ".join(str(v) for v in value)
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def print_table(table: Table) -> None:
    """Print a table at its natural width: cells are never cut or wrapped, ids stay whole.

    A table wider than the terminal is printed wider than the terminal (which then wraps
    the lines) rather than squeezed: a cut id is of no use to the next command.
    """
    console = Console(width=1_000_000, highlight=False)
    needed = Measurement.get(console, console.options, table).maximum
    Console(width=max(needed, terminal_width() or 0), highlight=False).print(table)


def terminal_width() -> int | None:
    """The terminal's width when stdout is one; None when it is piped."""
    return Console().width if sys.stdout.isatty() else None


def wide_columns(items: list[Any], columns: tuple[str, ...]) -> tuple[str, ...]:
    """The list's columns followed by every other field the items have, in their order."""
    extra: dict[str, None] = {}
    for item in items:
        extra.update(dict.fromkeys(k for k in item if k not in columns))
    return (*columns, *extra)


def print_ids(data: Any) -> None:
    """-q: the id of each item (or of the one resource), one per line."""
    for item in data if isinstance(data, list) else [data]:
        typer.echo(item["id"])
