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
        "api.app:create_app", factory=True, host=bind, port=port, workers=workers,
        log_level="info",
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
