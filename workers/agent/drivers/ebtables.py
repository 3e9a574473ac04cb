"""ebtables (the nf_tables backend): dump the bridge filter table, apply one restore.

The same whole-ruleset model as iptables (workers/agent/ruleset.py): `--noflush` keeps
everything the input does not name, so foreign bridge rules are never touched.
"""

from __future__ import annotations

from workers.agent.drivers.cmd import check, run


def save(netns: str | None) -> str:
    """`ebtables-save -t filter` in `netns` (None: the current namespace)."""
    return check(run(netns, ["ebtables-save", "-t", "filter"]), "ebtables-save -t filter")


def restore(netns: str | None, text: str) -> None:
    """`ebtables-restore --noflush`: one transaction for the filter table."""
    check(run(netns, ["ebtables-restore", "--noflush"], stdin=text), "ebtables-restore")
