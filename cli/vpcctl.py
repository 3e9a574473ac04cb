"""`vpcctl`: the command-line client of the vpcd REST API (DESIGN §6).

The list/show/create/update/delete commands of every resource are generated (`cli.crud`)
from one table, `cli.resources.RESOURCES`; the few actions that are not CRUD (tenant tokens
and quotas, router interfaces, floating IP association) are written out below. Options and
their parsing live in `cli.options`, HTTP and problem documents in `cli.client`, tables in
`cli.output`. This module deliberately avoids `from __future__ import annotations`: typer
reads the annotations of the command functions.
"""

from typing import Annotated

import typer

from cli.client import DEFAULT_URL, Api, Output
from cli.crud import api, done, emit, resource_app
from cli.options import IdemOpt, IfMatchOpt, OutputOpt, SetOpt, etag, idempotency, parse_pairs
from cli.resources import RESOURCES
from cli.stack.commands import register as register_stack_commands

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
