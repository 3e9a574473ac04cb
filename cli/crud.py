"""The list/show/create/update/delete commands of every resource, generated from one table.

`cli.resources.RESOURCES` has a row per resource; `resource_app` turns a row into a typer
sub-app, so the resources cannot drift apart in behaviour. This module deliberately avoids
`from __future__ import annotations`: typer reads the annotations of the generated command
functions, and those refer to closure variables.
"""

import inspect
import json
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from cli.client import DEFAULT_URL, Api, Output, wait_realised
from cli.options import (
    FilterOpt,
    IdemOpt,
    IfMatchOpt,
    LimitOpt,
    OutputOpt,
    PageSizeOpt,
    QuietOpt,
    SetOpt,
    WaitOpt,
    WaitTimeoutOpt,
    etag,
    idempotency,
    keyword,
    parse_pairs,
    plain,
)
from cli.output import cell, print_ids, print_table, wide_columns
from cli.resources import Resource


def api(ctx: typer.Context) -> Api:
    """The API client of the invocation (made by the root callback)."""
    obj = ctx.find_object(Api)
    if obj is None:  # only when a sub-app is invoked without the root callback
        obj = Api(DEFAULT_URL, None, Output.table, 30.0)
        ctx.obj = obj
        ctx.call_on_close(obj.close)
    return obj


# --------------------------------------------------------------------------- output


def emit(
    ctx: typer.Context, data: Any, output: Output | None, columns: tuple[str, ...] = ()
) -> None:
    """Print a resource (field/value table), a list (one row each), or the raw JSON."""
    output = output or api(ctx).output
    if output is Output.json:
        typer.echo(json.dumps(data, indent=2))
        return
    if isinstance(data, list):
        if output is Output.wide:
            columns = wide_columns(data, columns)
        table = Table(*columns, show_lines=False)
        for item in data:
            table.add_row(*(Text(cell(item.get(c))) for c in columns))
    else:
        table = Table("field", "value", show_header=True)
        for key, value in (data or {}).items():
            table.add_row(Text(key), Text(cell(value)))
    print_table(table)


def done(message: str) -> None:
    typer.echo(message)


# --------------------------------------------------------------------------- generated commands


def _list_command(spec: Resource) -> Callable[..., None]:
    def list_(
        ctx: typer.Context,
        filter_: FilterOpt = None,
        limit: LimitOpt = None,
        page_size: PageSizeOpt = 100,
        output: OutputOpt = None,
        quiet: QuietOpt = False,
    ) -> None:
        filters = parse_pairs(filter_, "--filter", as_json=False)
        unknown = sorted(set(filters) - set(spec.filters))
        if unknown:
            raise typer.BadParameter(
                f"cannot filter {spec.singular}s by {', '.join(unknown)}; "
                f"filters: {', '.join(spec.filters)}",
                param_hint="--filter",
            )
        items = api(ctx).pages(spec.path, filters, limit, page_size)
        if quiet:
            print_ids(items)
        else:
            emit(ctx, items, output, spec.columns)

    list_.__doc__ = (
        f"List {spec.singular}s, following every page.\n\n"
        f"Filters (--filter KEY=VALUE): {', '.join(spec.filters)}."
    )
    return list_


def _with_id(spec: Resource, func: Callable[..., None]) -> Callable[..., None]:
    """Give the `ident` argument of a generated command its resource's name (VPC_ID, ...)."""
    arg = typer.Argument(
        metavar=spec.metavar, help=f"Id of the {spec.singular}.", show_default=False
    )
    sig = inspect.signature(func)
    params = [
        p.replace(annotation=Annotated[str, arg]) if p.name == "ident" else p
        for p in sig.parameters.values()
    ]
    func.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return func


def _show_command(spec: Resource) -> Callable[..., None]:
    def show(ctx: typer.Context, ident: str, output: OutputOpt = None) -> None:
        emit(ctx, api(ctx).request("GET", f"{spec.path}/{ident}"), output)

    show.__doc__ = f"Show one {spec.singular}."
    return _with_id(spec, show)


def _create_command(spec: Resource) -> Callable[..., None]:
    def create(ctx: typer.Context, **kw: Any) -> None:
        body: dict[str, Any] = {}
        for opt in spec.create:
            value = kw[opt.param]
            if value is None or (opt.many and not value):
                continue
            body[opt.field] = [plain(v) for v in value] if opt.many else plain(value)
        body.update(parse_pairs(kw["set_"], "--set"))
        data = api(ctx).request(
            "POST",
            spec.path,
            body=body,
            headers=idempotency(kw["idempotency_key"]),
            flags=spec.flags,
        )
        if kw.get("wait"):
            data = wait_realised(api(ctx), f"{spec.path}/{data['id']}", kw["wait_timeout"])
        if kw["quiet"]:
            print_ids(data)
        else:
            emit(ctx, data, kw["output"])

    ctx_param = inspect.Parameter(
        "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
    )
    create.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            ctx_param,
            *(o.parameter() for o in spec.create),
            keyword("set_", SetOpt),
            keyword("idempotency_key", IdemOpt),
            keyword("output", OutputOpt),
            keyword("quiet", QuietOpt, False),
            *(
                (keyword("wait", WaitOpt, False), keyword("wait_timeout", WaitTimeoutOpt, 60.0))
                if spec.realised
                else ()
            ),
        ]
    )
    example = f", e.g. {spec.example}" if spec.example else ""
    create.__doc__ = (
        f"Create {spec.a}.\n\n"
        f"Any field without an option of its own goes through --set KEY=VALUE{example}. "
        "--set wins over an option for the same field."
    )
    return create


def _update_command(spec: Resource) -> Callable[..., None]:
    def update(
        ctx: typer.Context,
        ident: str,
        set_: SetOpt = None,
        if_match: IfMatchOpt = None,
        idempotency_key: IdemOpt = None,
        output: OutputOpt = None,
    ) -> None:
        changes = parse_pairs(set_, "--set")
        if not changes:
            raise typer.BadParameter("nothing to change: give --set KEY=VALUE", param_hint="--set")
        data = api(ctx).request(
            "PATCH",
            f"{spec.path}/{ident}",
            body=changes,
            headers={**etag(if_match), **idempotency(idempotency_key)},
        )
        emit(ctx, data, output)

    update.__doc__ = f"Change fields of {spec.a} (PATCH: the fields not given stay as they are)."
    return _with_id(spec, update)


def _delete_command(spec: Resource) -> Callable[..., None]:
    def delete(ctx: typer.Context, ident: str, if_match: IfMatchOpt = None) -> None:
        api(ctx).request("DELETE", f"{spec.path}/{ident}", headers=etag(if_match))
        done(f"deleted {spec.singular} {ident}")

    delete.__doc__ = f"Delete {spec.a} (409 names what still uses it)."
    return _with_id(spec, delete)


def resource_app(spec: Resource) -> typer.Typer:
    sub = typer.Typer(help=spec.help, no_args_is_help=True)
    sub.command("list")(_list_command(spec))
    sub.command("show")(_show_command(spec))
    sub.command("create")(_create_command(spec))
    sub.command("update")(_update_command(spec))
    sub.command("delete")(_delete_command(spec))
    return sub
