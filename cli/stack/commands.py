"""`vpcctl plan`, `apply` and `destroy -f stack.yaml`.

Exit codes as `terraform plan -detailed-exitcode`: plan says 0 for no changes and 2 for
changes; every command says 1 for an error (a mistake in the file, with its line, is found
before any API call).
This module avoids `from __future__ import annotations`: typer reads the annotations.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from cli.client import MAX_PAGE, Api
from cli.stack import live as live_state
from cli.stack.execute import ApplyFailed, Executor, describe, wait_active
from cli.stack.kinds import KINDS, key_tag, owner_tag
from cli.stack.parse import Stack, StackErrors, parse
from cli.stack.plan import Plan, Step, diff

FileOpt = Annotated[
    Path,
    typer.Option(
        "--file",
        "-f",
        metavar="STACK.yaml",
        help="The stack file.",
        exists=False,
        show_default=False,
    ),
]
NoWaitOpt = Annotated[
    bool,
    typer.Option(
        "--no-wait", help="Return once the API took the changes; do not wait for `active`."
    ),
]
TimeoutOpt = Annotated[
    float, typer.Option("--wait-timeout", metavar="SECONDS", help="How long to wait for active.")
]


def load(path: Path) -> Stack:
    """The stack file, checked; every mistake printed with its line, then exit 1."""
    try:
        text = path.read_text()
    except OSError as exc:
        typer.echo(f"error: cannot read {path}: {exc.strerror}", err=True)
        raise typer.Exit(1) from exc
    try:
        return parse(text)
    except StackErrors as exc:
        for error in exc.errors:
            typer.echo(error.render(str(path)), err=True)
        raise typer.Exit(1) from exc


def make_plan(api: Api, stack: Stack, path: Path) -> Plan:
    needs = any(w.kind in ("routers", "floating_ips") for w in stack.wants.values())
    try:
        return diff(stack, live_state.read(api, stack.name, needs_externals=needs))
    except StackErrors as exc:
        for error in exc.errors:
            typer.echo(error.render(str(path)), err=True)
        raise typer.Exit(1) from exc


def _value(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return repr(v) if isinstance(v, str) else str(v)


def render(plan: Plan, verb: str = "") -> list[str]:
    """The plan for people: one block per resource, field by field."""
    count = {a: sum(s.action == a for s in plan.steps) for a in ("create", "update", "delete")}
    lines = [
        f"stack {plan.stack}: {count['create']} to create, {count['update']} to update, "
        f"{count['delete']} to delete, {len(plan.unchanged)} unchanged"
    ]
    for step in plan.steps:
        mark = {"create": "+", "update": "~", "delete": "-"}[step.action]
        at = f"  (line {step.line})" if step.line else ""
        ident = f"  {step.id}" if step.id and step.action == "delete" else ""
        lines.append(f"{mark} {step.address}{at}{ident}")
        for c in step.changes:
            shown = (
                _value(c.new) if step.action == "create" else f"{_value(c.old)} -> {_value(c.new)}"
            )
            lines.append(f"    {c.field}: {shown}")
        coll = next(k.collection for k in KINDS if k.name == step.kind)
        if coll is not None and step.action != "delete":
            lines += [f"    {coll.key}: + {describe(i.values, plan.names)}" for i in step.add]
            lines += [f"    {coll.key}: - {describe(c, plan.names)}" for c in step.remove]
    if plan.unchanged:
        lines.append("no change: " + ", ".join(plan.unchanged))
    if not plan.steps:
        lines.append(f"nothing to {verb or 'change'}: the live state matches the file")
    return lines


def realised_of(api: Api, stack: str) -> list[tuple[str, dict[str, Any]]]:
    """The stack's resources that hosts are asked to realise, by address."""
    out = []
    for kind in KINDS:
        if not kind.realised:
            continue
        for r in api.pages(kind.path, {"tag": owner_tag(stack)}, None, MAX_PAGE):
            if kind.placed and r.get(kind.placed) is None:
                continue  # no host is asked to realise it: it stays pending by design
            keys = [t[len(key_tag("")) :] for t in r.get("tags") or [] if t.startswith(key_tag(""))]
            out.append((f"{kind.name}/{keys[0] if keys else r['id']}", r))
    return out


def execute(api: Api, plan: Plan, wait: bool, timeout: float) -> None:
    try:
        Executor(api, plan, typer.echo).run()
        if wait:
            console = Console(stderr=True)
            wait_active(api, plan.stack, timeout, console, lambda: realised_of(api, plan.stack))
    except ApplyFailed as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


def register(app: typer.Typer, api_of: Callable[[typer.Context], Api]) -> None:
    """Add plan, apply and destroy to vpcctl."""

    @app.command("plan")
    def plan_(ctx: typer.Context, file: FileOpt) -> None:
        """Show what apply would change: create, update (field by field, drift included),
        delete. Exit 0: no changes; 2: changes; 1: error."""
        stack = load(file)
        plan = make_plan(api_of(ctx), stack, file)
        for line in render(plan):
            typer.echo(line)
        raise typer.Exit(2 if plan.changed else 0)

    @app.command("apply")
    def apply_(
        ctx: typer.Context,
        file: FileOpt,
        no_wait: NoWaitOpt = False,
        wait_timeout: TimeoutOpt = 300.0,
    ) -> None:
        """Make the live state match the stack file, in dependency order, then wait until
        every resource is active (stops on the first error, with its detail)."""
        api = api_of(ctx)
        stack = load(file)
        plan = make_plan(api, stack, file)
        for line in render(plan):
            typer.echo(line)
        execute(api, plan, wait=not no_wait, timeout=wait_timeout)
        if plan.changed:
            typer.echo(f"stack {stack.name}: applied")

    @app.command("destroy")
    def destroy_(ctx: typer.Context, file: FileOpt) -> None:
        """Delete everything that carries the stack's tag, in reverse dependency order."""
        api = api_of(ctx)
        stack = load(file)
        plan = make_plan(api, Stack(stack.name, {}), file)
        for line in render(plan, "destroy"):
            typer.echo(line)
        execute(api, plan, wait=False, timeout=0)
        if plan.changed:
            typer.echo(f"stack {stack.name}: destroyed")


__all__ = ["Step", "register"]
