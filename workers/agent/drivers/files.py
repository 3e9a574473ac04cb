"""Files the agent owns: a daemon's rendered configuration under its state dir, and
`/etc/netns/<netns>/resolv.conf` for workload namespaces it made (iproute2's convention:
`ip netns exec` bind-mounts that file over /etc/resolv.conf).

Writes are atomic (temp file, rename). resolv.conf is world-readable; a daemon's files
are given to its group (dnsmasq drops root and re-reads them on SIGHUP): the directory
0750 and the files 0640, root-owned, so no other user reads a tenant's leases or names.
Removing what is already gone is success.
"""

from __future__ import annotations

import contextlib
import grp
import os
import shutil
import tempfile
from pathlib import Path

from workers.agent.drivers.netns import netns_path

ETC_NETNS = "/etc/netns"
RESOLV = "resolv.conf"
MARKER = "# vpcd:"  # the first line of every file the agent writes


def write(path: str | os.PathLike[str], text: str, group: str | None = None) -> None:
    """The file, world-readable; with `group`, readable by that group only (and its
    directory enterable by it only)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    gid = -1 if group is None else grp.getgrnam(group).gr_gid
    if group is not None:
        os.chown(target.parent, 0, gid)
        os.chmod(target.parent, 0o750)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chown(tmp, -1, gid)
        os.chmod(tmp, 0o644 if group is None else 0o640)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_dir(directory: str | os.PathLike[str]) -> dict[str, str] | None:
    """Every regular file of the directory by name; None when it does not exist."""
    base = Path(directory)
    if not base.is_dir():
        return None
    out: dict[str, str] = {}
    for entry in base.iterdir():
        if entry.is_file() and not entry.name.startswith("."):
            with contextlib.suppress(OSError, UnicodeDecodeError):
                out[entry.name] = entry.read_text()
    return out


def list_dirs(directory: str | os.PathLike[str]) -> list[str]:
    base = Path(directory)
    return sorted(e.name for e in base.iterdir() if e.is_dir()) if base.is_dir() else []


def remove_tree(directory: str | os.PathLike[str]) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def resolv_path(netns: str) -> Path:
    netns_path(netns)  # validates the name: it becomes a path component
    return Path(ETC_NETNS) / netns / RESOLV


def read_resolv(netns: str) -> str | None:
    """Our resolv.conf of the namespace; None when absent or not ours."""
    try:
        text = resolv_path(netns).read_text()
    except (OSError, UnicodeDecodeError):
        return None
    return text if text.startswith(MARKER) else None


def write_resolv(netns: str, text: str) -> None:
    write(resolv_path(netns), text)


def remove_resolv(netns: str) -> None:
    """Our file, then the namespace's directory if nothing else is left in it."""
    path = resolv_path(netns)
    if read_resolv(netns) is not None:
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()
