"""`vpcctl`: the command-line client of the vpcd REST API (DESIGN §6).

The list/show/create/update/delete commands of every resource are generated from one table,
`cli.resources.RESOURCES`, so the resources cannot drift apart in behaviour; the few actions
that are not CRUD (tenant tokens and quotas, router interfaces, floating IP association) are
written out below. HTTP and problem documents live in `cli.client`, tables in `cli.output`.
This module deliberately avoids `from __future__ import annotations`: typer reads the
annotations of the generated command functions, and those refer to closure variables.
"""

import inspect
import json
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from cli.client import DEFAULT_URL, MAX_PAGE, Api, Output, wait_realised
from cli.output import cell, print_ids, print_table, wide_columns
from cli.resources import RESOURCES, Resource
from cli.stack.commands import register as register_stack_commands


def api(ctx: typer.Context) -> Api:
    obj = ctx.find_object(Api)
    if obj is None:  # only when a sub-app is invoked without the root callback
        obj = Api(DEFAULT_URL, None, Output.table, 30.0)
        ctx.obj = obj
        ctx.call_on_close(obj.close)
    return obj


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


def _keyword(name: str, annotation: Any, default: Any = None) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


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
            _keyword("set_", SetOpt),
            _keyword("idempotency_key", IdemOpt),
            _keyword("output", OutputOpt),
            _keyword("quiet", QuietOpt, False),
            *(
                (_keyword("wait", WaitOpt, False), _keyword("wait_timeout", WaitTimeoutOpt, 60.0))
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


# --------------------------------------------------------------------------- the application

app = typer.Typer(
    name="vpcctl",
    help="vpcctl: the client of the vpcd VPC control plane.",
    no_args_is_help=True,
)


@app.callback()
def _root(
    ctx: typer.Context,
    url: Annotated[str, typer.Option(envvar="VPCD_URL", help="The vpcd API.")] = DEFAULT_URL,
    token: Annotated[
        str | None,
        typer.Option(envvar="VPCD_TOKEN", show_default=False, help="Bearer token."),
    ] = None,
    output: Annotated[
        Output, typer.Option("--output", "-o", case_sensitive=False, help="Output format.")
    ] = Output.table,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for an answer.")] = 30.0,
) -> None:
    obj = Api(url, token, output, timeout)
    ctx.obj = obj
    ctx.call_on_close(obj.close)


SUBAPPS: dict[str, typer.Typer] = {}
for _spec in RESOURCES:
    SUBAPPS[_spec.name] = resource_app(_spec)
    app.add_typer(SUBAPPS[_spec.name], name=_spec.name)

TenantArg = Annotated[str, typer.Argument(metavar="TENANT_ID", show_default=False)]
RouterArg = Annotated[str, typer.Argument(metavar="ROUTER_ID", show_default=False)]
SubnetArg = Annotated[str, typer.Argument(metavar="SUBNET_ID", show_default=False)]
FipArg = Annotated[str, typer.Argument(metavar="FLOATING_IP_ID", show_default=False)]
PortArg = Annotated[str, typer.Argument(metavar="PORT_ID", show_default=False)]


@SUBAPPS["tenants"].command("token")
def tenant_token(
    ctx: typer.Context,
    tenant_id: TenantArg,
    output: OutputOpt = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the token.", show_default=False)
    ] = False,
) -> None:
    """Mint a bearer token for a tenant; it is shown only this once."""
    data = api(ctx).request("POST", f"/v1/tenants/{tenant_id}/tokens")
    if quiet:
        typer.echo(data["token"])
    else:
        emit(ctx, data, output)


@SUBAPPS["tenants"].command("quotas")
def tenant_quotas(
    ctx: typer.Context, tenant_id: TenantArg, set_: SetOpt = None, output: OutputOpt = None
) -> None:
    """Show a tenant's quotas, or change some with --set RESOURCE=LIMIT."""
    changes = parse_pairs(set_, "--set")
    path = f"/v1/tenants/{tenant_id}/quotas"
    data = (
        api(ctx).request("PATCH", path, body=changes) if changes else api(ctx).request("GET", path)
    )
    emit(ctx, data, output)


@SUBAPPS["routers"].command("add-interface")
def router_add_interface(
    ctx: typer.Context,
    router_id: RouterArg,
    subnet_id: SubnetArg,
    idempotency_key: IdemOpt = None,
    output: OutputOpt = None,
) -> None:
    """Attach a subnet to a router (the router takes the subnet's gateway address)."""
    data = api(ctx).request(
        "POST",
        f"/v1/routers/{router_id}/interfaces",
        body={"subnet_id": subnet_id},
        headers=idempotency(idempotency_key),
        flags={"subnet_id": "SUBNET_ID"},
    )
    emit(ctx, data, output)


@SUBAPPS["routers"].command("remove-interface")
def router_remove_interface(ctx: typer.Context, router_id: RouterArg, subnet_id: SubnetArg) -> None:
    """Detach a subnet from a router."""
    api(ctx).request("DELETE", f"/v1/routers/{router_id}/interfaces/{subnet_id}")
    done(f"removed the interface of router {router_id} on subnet {subnet_id}")


@SUBAPPS["routers"].command("interfaces")
def router_interfaces(ctx: typer.Context, router_id: RouterArg, output: OutputOpt = None) -> None:
    """List a router's interfaces."""
    data = api(ctx).request("GET", f"/v1/routers/{router_id}/interfaces")
    emit(ctx, data, output, ("subnet_id", "ip_address", "port_id"))


def _associate(
    ctx: typer.Context,
    fip: str,
    port: str | None,
    if_match: str | None,
    idempotency_key: str | None,
    output: Output | None,
) -> None:
    data = api(ctx).request(
        "PATCH",
        f"/v1/floating-ips/{fip}",
        body={"port_id": port},
        headers={**etag(if_match), **idempotency(idempotency_key)},
        flags={"port_id": "PORT_ID"},
    )
    emit(ctx, data, output)


@SUBAPPS["floating-ips"].command("associate")
def fip_associate(
    ctx: typer.Context,
    floating_ip_id: FipArg,
    port_id: PortArg,
    if_match: IfMatchOpt = None,
    idempotency_key: IdemOpt = None,
    output: OutputOpt = None,
) -> None:
    """Map a floating IP onto a port (its subnet needs a router with a gateway)."""
    _associate(ctx, floating_ip_id, port_id, if_match, idempotency_key, output)


@SUBAPPS["floating-ips"].command("disassociate")
def fip_disassociate(
    ctx: typer.Context,
    floating_ip_id: FipArg,
    if_match: IfMatchOpt = None,
    idempotency_key: IdemOpt = None,
    output: OutputOpt = None,
) -> None:
    """Unmap a floating IP from its port (the address stays allocated)."""
    _associate(ctx, floating_ip_id, None, if_match, idempotency_key, output)


register_stack_commands(app, api)


def main() -> None:
    app(prog_name="vpcctl")


if __name__ == "__main__":
    main()
