"""conntrack: delete the entries a filter matches, e.g. those a removed rule allowed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from workers.agent.drivers.cmd import check, run_all

_DELETED = re.compile(r"(\d+) flow entries have been deleted")


Filter = Mapping[str, Any]  # delete()'s keyword arguments


def delete(
    netns: str | None,
    *,
    proto: str | None = None,
    orig_src: str | None = None,
    orig_dst: str | None = None,
    dport: int | None = None,
    reply_dst: str | None = None,
) -> int:
    """`conntrack -D` with the given filter; returns how many entries went.

    conntrack exits 1 when nothing matched ("0 flow entries"): that is success (ENOENT).
    """
    return delete_all(
        netns,
        [dict(proto=proto, orig_src=orig_src, orig_dst=orig_dst, dport=dport, reply_dst=reply_dst)],
    )


def delete_all(netns: str | None, filters: list[Filter]) -> int:
    """One `conntrack -D` per filter, all started at once (conntrack takes one filter a
    run); how many entries went in all. Any failure but "nothing matched" raises."""
    runs = run_all(netns, [_argv(**f) for f in filters])
    deleted = 0
    for done in runs:
        found = _DELETED.search(done.stderr + done.stdout)
        if found is not None:
            deleted += int(found.group(1))
        else:
            check(done, "conntrack -D")
    return deleted


def _argv(
    proto: str | None = None,
    orig_src: str | None = None,
    orig_dst: str | None = None,
    dport: int | None = None,
    reply_dst: str | None = None,
) -> list[str]:
    argv = ["conntrack", "-D"]
    if proto is not None:
        argv += ["-p", proto]
    if orig_src is not None:
        argv += ["--orig-src", orig_src]
    if orig_dst is not None:
        argv += ["--orig-dst", orig_dst]
    if reply_dst is not None:
        argv += ["--reply-dst", reply_dst]
    if dport is not None:
        argv += ["--dport", str(dport)]
    return argv
