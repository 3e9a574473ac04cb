"""`vpcd`: the server-side commands (DESIGN §6)."""

from __future__ import annotations

import os
from typing import Annotated

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


@app.command()
def controller(
    concurrency: Annotated[int, typer.Option(help="Threads compiling host states.")] = 4,
) -> None:
    """Run the controller: compiles host states, pokes hosts, records their reports."""
    from workers.controller.tasks import run

    run(concurrency)


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
) -> None:
    """Run the agent for one host: it applies only its own host's documents."""
    from workers.agent.agent import Agent
    from workers.agent.service import AgentService

    agent = Agent(host=host, host_netns=netns, netns_prefix=workload_prefix, state_dir=state_dir)
    AgentService(
        host=host,
        vtep_ip=vtep_ip,
        roles=[r for r in roles.split(",") if r],
        agent=agent,
        heartbeat_interval=heartbeat_interval,
        resync_interval=resync_interval,
    ).run()


sandbox = typer.Typer(help="Many hosts on one machine, in private namespaces (root).")
app.add_typer(sandbox, name="sandbox")
NameOpt = Annotated[str, typer.Option("--name", help="Sandbox name (prefix of everything).")]


@sandbox.command("up")
def sandbox_up(
    hosts: Annotated[int, typer.Option(help="How many hosts.")] = 3,
    network_hosts: Annotated[int, typer.Option(help="How many of them have role network.")] = 1,
    resync_interval: Annotated[float, typer.Option(help="Agents' full resync period.")] = 30.0,
    name: NameOpt = "vpcd",
) -> None:
    """Build the fabric, start API, controller and agents; print endpoint and token."""
    from cli import sandbox as sb

    box = sb.up(name, hosts, network_hosts, resync_interval)
    typer.echo(f"endpoint:    {box.endpoint}")
    typer.echo(f"admin token: {box.admin_token}")
    typer.echo(f"hosts:       {', '.join(h['name'] for h in box.hosts)}")
    typer.echo(f"export VPCD_URL={box.endpoint} VPCD_TOKEN={box.admin_token}")


@sandbox.command("status")
def sandbox_status(name: NameOpt = "vpcd") -> None:
    """Show the sandbox's endpoint, processes, hosts and namespaces."""
    import json

    from cli import sandbox as sb

    typer.echo(json.dumps(sb.status(name), indent=2))


@sandbox.command(
    "exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def sandbox_exec(
    ctx: typer.Context,
    host: Annotated[str, typer.Argument(help="Host (h1 or its full name), or 'outside'.")],
    netns: Annotated[str | None, typer.Argument(help="The port's netns on that host.")] = None,
    name: NameOpt = "vpcd",
) -> None:
    """Run a command in a workload: vpcd sandbox exec H NETNS -- CMD ..."""
    from cli import sandbox as sb

    args = list(ctx.args)
    if netns == "--" or netns is None:
        netns = None
    if host == "outside" and netns is not None:
        args, netns = [netns, *args], None
    if not args:
        raise typer.BadParameter("give a command after --")
    argv = sb.exec_argv(name, host, netns, args)
    os.execvp(argv[0], argv)


@sandbox.command("down")
def sandbox_down(name: NameOpt = "vpcd") -> None:
    """Stop every process and remove every namespace the sandbox made."""
    from cli import sandbox as sb

    sb.down(name)
    typer.echo(f"sandbox {name} removed")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
