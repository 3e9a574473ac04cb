"""`vpcd sandbox status`: what runs, where its logs are, and what the API says of each host.

The admin token is in the state file, so it is printed only when asked for
(`--show-token`); everything else is a table a person can read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from cli import sandbox as sbx


@dataclass(frozen=True)
class HostRow:
    name: str
    short: str
    roles: str
    agent_pid: int | None
    agent: str  # running / exited / killed (failed)
    status: str  # up / down / failed, or ? when the API does not answer
    last_sync: str
    log: str


def _ago(stamp: str | None, now: datetime) -> str:
    if not stamp:
        return "never"
    at = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return f"{at:%H:%M:%S} ({max(0.0, (now - at).total_seconds()):.0f}s ago)"


def api_hosts(sb: sbx.Sandbox) -> dict[str, dict[str, Any]] | None:
    """The API's view of the hosts by name, or None when the API does not answer."""
    try:
        r = httpx.get(
            f"{sb.endpoint}/v1/hosts",
            params={"limit": 1000},
            headers={"Authorization": f"Bearer {sb.admin_token}"},
            timeout=3,
        )
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    return {h["name"]: h for h in r.json()["items"]}


def host_rows(sb: sbx.Sandbox, seen: dict[str, dict[str, Any]] | None) -> list[HostRow]:
    now = datetime.now(UTC)
    rows = []
    for h in sb.hosts:
        label = f"agent-{h['short']}"
        pid = sb.pids.get(label)
        agent = "running" if pid is not None and sbx.alive(pid) else "exited"
        api = (seen or {}).get(h["name"])
        if h["short"] in sb.failed:
            status = "failed"
        elif seen is None:
            status = "?"
        else:
            status = api["status"] if api else "unregistered"
        sync = (api or {}).get("last_sync") or {}
        rows.append(
            HostRow(
                name=h["name"],
                short=h["short"],
                roles=h["roles"],
                agent_pid=pid,
                agent=agent,
                status=status,
                last_sync=_ago(sync.get("at"), now) if api else "?",
                log=str(sb.dir / f"{label}.log"),
            )
        )
    return rows


def render(name: str, show_token: bool, console: Console) -> bool:
    """Print the sandbox's status; False when there is no such sandbox."""
    sb = sbx.Sandbox.load(name)
    if sb is None:
        console.print(f"no sandbox named {name} (vpcd sandbox up --name {name})")
        return False
    seen = api_hosts(sb)
    console.print(f"sandbox {name}: {'running' if sbx.running(sb) else 'stopped'}")
    console.print(f"endpoint:    {sb.endpoint}" + ("" if seen is not None else " (not answering)"))
    console.print(f"database:    {sb.database_url}")
    console.print(f"bus:         {sb.bus}")
    console.print(f"run dir:     {sb.dir}")
    if show_token:
        console.print(f"admin token: {sb.admin_token}")
        console.print(f"export VPCD_URL={sb.endpoint} VPCD_TOKEN={sb.admin_token}")
    else:
        console.print("admin token: (hidden; --show-token prints it)")
    services = Table("process", "pid", "state", "log")
    for label in ("api", "controller"):
        pid = sb.pids.get(label)
        state = "running" if pid is not None and sbx.alive(pid) else "exited"
        services.add_row(label, str(pid or ""), state, str(sb.dir / f"{label}.log"))
    console.print(services)
    hosts = Table("host", "name", "roles", "agent pid", "agent", "status", "last sync", "log")
    for row in host_rows(sb, seen):
        hosts.add_row(
            row.short,
            row.name,
            row.roles,
            str(row.agent_pid or ""),
            row.agent,
            row.status,
            row.last_sync,
            row.log,
        )
    console.print(hosts)
    return True
