"""`vpcd`: the server-side commands (DESIGN §6)."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer

app = typer.Typer(help="vpcd: VPC control plane (server side).", no_args_is_help=True)


def _db_url() -> str:
    from models.db import DbSettings

    return DbSettings().database_url


@app.command()
def migrate() -> None:
    """Upgrade the schema on DATABASE_URL to the newest migration."""
    from migrations.runner import upgrade

    upgrade(_db_url())
    typer.echo("schema is at head")


@app.command()
def serve(
    bind: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    workers: Annotated[int, typer.Option(help="API worker processes.")] = 1,
) -> None:
    """Run the API on DATABASE_URL (a SQLite file by default), migrating it first."""
    import uvicorn

    from api.app import ensure_admin_token
    from api.settings import Settings
    from migrations.runner import upgrade

    url = _db_url()
    upgrade(url)
    os.environ.setdefault("DATABASE_URL", url)
    ensure_admin_token(Settings())  # before the workers start, so it is minted once
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=bind,
        port=port,
        workers=workers,
        log_level="info",
    )


@app.command("admin-token")
def admin_token(
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Revoke the admin token and mint a new one.")
    ] = False,
) -> None:
    """Recover or rotate the admin token of the database on DATABASE_URL.

    Tokens are stored hashed, so a lost one cannot be shown again: --rotate revokes it
    and prints a new one, once. With VPCD_ADMIN_TOKEN set, that value is the admin token.
    """
    from cli.admin import rotate_admin_token
    from models.db import engine_for, session_factory
    from models.tenant import admin_token_exists

    url = _db_url()
    if not rotate:
        with session_factory(engine_for(url))() as session:
            exists = admin_token_exists(session)
        state = "an admin token is set" if exists else "no admin token is set yet"
        typer.echo(f"{state} on {url}; it is stored hashed and cannot be shown again.")
        typer.echo("`vpcd admin-token --rotate` revokes it and prints a new one.")
        return
    try:
        rotate_admin_token(url)  # prints the new token, once, as the API's first start does
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo("the previous admin token no longer works")


@app.command()
def controller(
    concurrency: Annotated[int, typer.Option(help="Threads compiling host states.")] = 4,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve Prometheus metrics on this port (default: not served)."),
    ] = None,
    metrics_address: Annotated[
        str, typer.Option(help="Address the metrics port binds to.")
    ] = "127.0.0.1",
) -> None:
    """Run the controller: compiles host states, pokes hosts, records their reports."""
    from workers.controller.tasks import run

    run(concurrency, metrics_port, metrics_address)


@app.command()
def worker(
    host: Annotated[str, typer.Option(help="This host's name (as ports name it).")],
    vtep_ip: Annotated[str, typer.Option(help="This host's underlay (VTEP) address.")],
    netns: Annotated[
        str | None, typer.Option(help="Host namespace to operate in (sandbox); default: root.")
    ] = None,
    roles: Annotated[str, typer.Option(help="Comma-separated: compute,network.")] = "compute",
    workload_prefix: Annotated[
        str, typer.Option(help="Prefix of workload namespace names (the sandbox's 'H-').")
    ] = "",
    resync_interval: Annotated[float, typer.Option(help="Seconds between full resyncs.")] = 30.0,
    heartbeat_interval: Annotated[float, typer.Option(help="Seconds between heartbeats.")] = 5.0,
    state_dir: Annotated[
        str, typer.Option(help="Where the agent keeps what it owns.")
    ] = "/var/lib/vpcd/agent",
    external_interface: Annotated[
        str | None,
        typer.Option(help="The interface on the external network (network hosts), e.g. ext0."),
    ] = None,
    sections: Annotated[
        str | None,
        typer.Option(
            help="Advertise only these document sections (comma-separated; a staged "
            "rollout pins an upgraded agent to what the old one did). Default: all."
        ),
    ] = None,
    physical_interface: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=IFACE: the host interface of physical network NAME (flat subnets' "
            "macvlan parent). Repeatable."
        ),
    ] = None,
    deltas: Annotated[
        bool,
        typer.Option(
            help="Take incremental documents (protocol 2); --no-deltas pins an upgraded "
            "agent to whole documents, as before them."
        ),
    ] = True,
) -> None:
    """Run the agent for one host: it applies only its own host's documents."""
    from workers.agent.agent import Agent
    from workers.agent.service import SUPPORTED_SECTIONS, AgentService

    advertised = SUPPORTED_SECTIONS
    if sections is not None:
        advertised = tuple(x for x in sections.split(",") if x)
        unknown = sorted(set(advertised) - set(SUPPORTED_SECTIONS))
        if unknown:
            raise typer.BadParameter(f"unsupported sections: {', '.join(unknown)}")

    physical = parse_physical_interfaces(physical_interface or [])
    from workers.agent.drivers.capabilities import detect

    agent = Agent(
        host=host,
        host_netns=netns,
        netns_prefix=workload_prefix,
        state_dir=state_dir,
        external_interface=external_interface,
        physical_interfaces=physical,
    )
    AgentService(
        host=host,
        vtep_ip=vtep_ip,
        roles=[r for r in roles.split(",") if r],
        agent=agent,
        heartbeat_interval=heartbeat_interval,
        resync_interval=resync_interval,
        sections=advertised,
        capabilities=detect(),
        physical_interfaces=physical,
        deltas=deltas,
    ).run()


PHYSNET = re.compile(r"[a-z][a-z0-9_-]{0,31}")  # as models.nettypes.PHYSNET_PATTERN
IFACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")


def parse_physical_interfaces(values: list[str]) -> dict[str, str]:
    """NAME=IFACE pairs: each name once, valid physical network and interface names."""
    out: dict[str, str] = {}
    for value in values:
        name, sep, iface = value.partition("=")
        if not sep or not PHYSNET.fullmatch(name) or not IFACE.fullmatch(iface):
            raise typer.BadParameter(f"{value!r}: expected NAME=IFACE (e.g. physnet1=eth1)")
        if name in out:
            raise typer.BadParameter(f"physical network {name!r} given twice")
        out[name] = iface
    return out


sandbox = typer.Typer(help="Many hosts on one machine, in private namespaces (root).")
app.add_typer(sandbox, name="sandbox")
NameOpt = Annotated[
    str,
    typer.Option("--name", envvar="VPCD_SANDBOX", help="Sandbox name (prefix of everything)."),
]
HostArg = Annotated[str, typer.Argument(help="Host: h1 or its full name.", show_default=False)]
T = TypeVar("T")


def guarded(func: Callable[[], T]) -> T:
    """Run a sandbox step; its own errors (a missing host or package) as one line, exit 1."""
    from cli.sandbox import SandboxError

    try:
        return func()
    except SandboxError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@sandbox.command("up")
def sandbox_up(
    hosts: Annotated[int, typer.Option(help="How many hosts.")] = 3,
    network_hosts: Annotated[int, typer.Option(help="How many of them have role network.")] = 1,
    resync_interval: Annotated[float, typer.Option(help="Agents' full resync period.")] = 30.0,
    name: NameOpt = "vpcd",
    replace: Annotated[
        bool, typer.Option("--replace", help="Tear down a running sandbox of that name first.")
    ] = False,
) -> None:
    """Build the fabric, start API, controller and agents; print endpoint and token."""
    from cli import sandbox as sb

    box = guarded(lambda: sb.up(name, hosts, network_hosts, resync_interval, replace=replace))
    typer.echo(f"endpoint:    {box.endpoint}")
    typer.echo(f"admin token: {box.admin_token}")
    typer.echo(f"hosts:       {', '.join(h['name'] for h in box.hosts)}")
    typer.echo(f"export VPCD_URL={box.endpoint} VPCD_TOKEN={box.admin_token}")


@sandbox.command("env")
def sandbox_env(name: NameOpt = "vpcd") -> None:
    """Print `export VPCD_URL=... VPCD_TOKEN=...` (admin) for: eval "$(vpcd sandbox env)"."""
    from cli import sandbox as sb

    box = guarded(lambda: sb.load(name))
    typer.echo(f"export VPCD_URL={box.endpoint} VPCD_TOKEN={box.admin_token}")


@sandbox.command("status")
def sandbox_status(
    name: NameOpt = "vpcd",
    show_token: Annotated[
        bool, typer.Option("--show-token", help="Print the admin token.")
    ] = False,
) -> None:
    """Show the endpoint, processes and hosts (roles, agent, up/down, last sync, logs)."""
    from rich.console import Console

    from cli import sandbox_status

    console = Console(width=None if sys.stdout.isatty() else 240, highlight=False)
    if not sandbox_status.render(name, show_token, console):
        raise typer.Exit(1)


@sandbox.command(
    "exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def sandbox_exec(
    ctx: typer.Context,
    host: Annotated[str, typer.Argument(help="Host (h1 or full name), 'outside', 'physical'.")],
    netns: Annotated[str | None, typer.Argument(help="The port's netns on that host.")] = None,
    name: NameOpt = "vpcd",
) -> None:
    """Run a command in a workload: vpcd sandbox exec H NETNS -- CMD ..."""
    from cli import sandbox as sb

    args = list(ctx.args)
    if netns == "--" or netns is None:
        netns = None
    if host in ("outside", "physical") and netns is not None:
        args, netns = [netns, *args], None
    if not args:
        raise typer.BadParameter("give a command after --")
    argv = guarded(lambda: sb.exec_argv(name, host, netns, args))
    os.execvp(argv[0], argv)


@sandbox.command("fail")
def sandbox_fail(host: HostArg, name: NameOpt = "vpcd") -> None:
    """Kill a host as a dead machine dies: its fabric links go down, its agent is killed."""
    from cli import sandbox as sb

    h = guarded(lambda: sb.fail(name, host))
    typer.echo(f"host {h['short']} ({h['name']}) failed: links down, agent killed")


@sandbox.command("heal")
def sandbox_heal(host: HostArg, name: NameOpt = "vpcd") -> None:
    """Undo `fail`: the host's links come back up and its agent starts again."""
    from cli import sandbox as sb

    h = guarded(lambda: sb.heal(name, host))
    typer.echo(f"host {h['short']} ({h['name']}) healed: links up, agent restarted")


@sandbox.command("down")
def sandbox_down(name: NameOpt = "vpcd") -> None:
    """Stop every process and remove every namespace the sandbox made."""
    from cli import sandbox as sb

    if sb.down(name):
        typer.echo(f"sandbox {name} removed")
    else:
        typer.echo(f"nothing to remove: no sandbox named {name} is running")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
