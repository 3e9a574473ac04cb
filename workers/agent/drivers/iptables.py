"""iptables: dump one table, apply one restore input; nothing per rule.

`--noflush` keeps everything the input does not name: the renderer's input names only
our chains and hooks (workers/agent/ruleset.py), so foreign rules are never touched.
"""

from __future__ import annotations

from workers.agent.drivers.cmd import check, run

WAIT = "5"  # seconds to wait for the xtables lock (legacy backend) instead of failing


def save(netns: str | None, table: str | None) -> str:
    """`iptables-save -t TABLE` in `netns` (None: the current namespace); every table
    when `table` is None (one process instead of one per table)."""
    if table is None:
        return check(run(netns, ["iptables-save"]), "iptables-save")
    return check(run(netns, ["iptables-save", "-t", table]), f"iptables-save -t {table}")


def restore(netns: str | None, text: str) -> None:
    """`iptables-restore --noflush`: one atomic transaction per table in `text`."""
    check(
        run(netns, ["iptables-restore", "--noflush", "--wait", WAIT], stdin=text),
        "iptables-restore",
    )
