"""Keeping a sandbox's logs after an e2e session, without leaving its admin token about."""

from __future__ import annotations

import shutil
from pathlib import Path


def keep_logs(run_dir: Path, dest: Path, *, passed: bool) -> None:
    """Copy the sandbox's process logs to `dest` for a post-mortem.

    The state file holds the admin token: it is kept (mode 0600, in a 0700 folder) only
    when the session failed, and removed when it passed. Bus messages, databases and the
    agents' state are left out.
    """
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    dest.parent.chmod(0o700)
    shutil.copytree(
        run_dir,
        dest,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("bus", "*.db*", "agents", "*.tmp"),
    )
    state = dest / "state.json"
    if passed:
        state.unlink(missing_ok=True)
    elif state.exists():
        state.chmod(0o600)
