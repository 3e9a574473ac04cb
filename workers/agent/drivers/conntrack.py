"""conntrack: delete the entries a filter matches, e.g. those a removed rule allowed."""

from __future__ import annotations

import re

from workers.agent.drivers.cmd import check, run

_DELETED = re.compile(r"(\d+) flow entries have been deleted")


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
    done = run(netns, argv)
    found = _DELETED.search(done.stderr + done.stdout)
    if found is not None:
        return int(found.group(1))
    check(done, "conntrack -D")
    return 0
