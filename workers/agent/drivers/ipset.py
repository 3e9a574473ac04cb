"""ipset: dump the sets, apply a restore input (create-temp + swap + destroy), destroy."""

from __future__ import annotations

from workers.agent.drivers.cmd import check, run

_GONE = "does not exist"  # ipset's message when the named set is not there


def save(netns: str | None) -> str:
    """`ipset save` of every set in `netns` (callers keep only their own)."""
    return check(run(netns, ["ipset", "save"]), "ipset save")


def restore(netns: str | None, text: str) -> None:
    """`ipset restore`: the lines run in order and stop at the first error."""
    check(run(netns, ["ipset", "restore"], stdin=text), "ipset restore")


def destroy(netns: str | None, name: str) -> None:
    """Destroy one set; a set already gone is success (ENOENT)."""
    done = run(netns, ["ipset", "destroy", name])
    if done.returncode != 0 and _GONE in done.stderr:
        return
    check(done, f"ipset destroy {name}")
