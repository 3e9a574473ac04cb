"""`vpcd sandbox` as a newcomer runs it: from a fresh directory, on the embedded defaults
(SQLite and the filesystem bus), through the real command line. The working directory and
the repository stay exactly as they were.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cli import sandbox as sbx
from tests.e2e.conftest import git_status

pytestmark = pytest.mark.e2e


@pytest.fixture
def name() -> Iterator[str]:
    name = f"cli{os.getpid() % 100000}"
    try:
        yield name
    finally:
        sbx.down(name)
        left = [n for n in sbx.existing_namespaces() if n.startswith(f"{name}-")]
        assert not left, f"sandbox left namespaces behind: {left}"


def test_sandbox_from_a_clean_directory(name: str, tmp_path: Path) -> None:
    cwd = tmp_path / "newcomer"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VPCD_", "REDIS_"))}
    env.pop("DATABASE_URL", None)
    before = git_status()

    def vpcd(command: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.vpcd", "sandbox", command, "--name", name, *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    up = vpcd("up", "--hosts", "2")
    assert up.returncode == 0, up.stderr
    sb = sbx.Sandbox.load(name)
    assert sb is not None and sb.bus.startswith("filesystem:")

    again = vpcd("up", "--hosts", "2")  # a second up never wipes the running one
    assert again.returncode == 1
    assert again.stderr.startswith(f"error: sandbox {name} is already running")
    assert "--replace" in again.stderr and again.stderr.count("\n") == 1
    assert "Traceback" not in again.stderr
    still = sbx.Sandbox.load(name)
    assert still is not None and still.pids == sb.pids
    headers = {"Authorization": f"Bearer {sb.admin_token}"}
    assert httpx.get(f"{sb.endpoint}/v1/hosts", headers=headers).status_code == 200

    status = vpcd("status")
    assert status.returncode == 0, status.stderr
    assert sb.admin_token not in status.stdout
    for h in sb.hosts:
        row = next(line for line in status.stdout.splitlines() if h["name"] in line)
        assert h["roles"] in row and str(sb.pids[f"agent-{h['short']}"]) in row
        assert " up " in row and "ago" in row and f"agent-{h['short']}.log" in row
    assert sb.admin_token in vpcd("status", "--show-token").stdout

    bad = vpcd("exec", "h9", "web", "--", "true")
    assert bad.returncode == 1
    assert bad.stderr == f"error: no host 'h9' in sandbox {name}; hosts: h1, h2\n"
    assert vpcd("exec", "outside", "--", "true").returncode == 0

    replaced = vpcd("up", "--hosts", "2", "--replace")
    assert replaced.returncode == 0, replaced.stderr
    new = sbx.Sandbox.load(name)
    assert new is not None and new.pids != sb.pids
    assert not any(sbx.alive(p) and sbx.ours(p) for p in sb.pids.values())

    down = vpcd("down")
    assert (down.returncode, down.stdout) == (0, f"sandbox {name} removed\n")
    nothing = vpcd("down")
    assert nothing.stdout == f"nothing to remove: no sandbox named {name} is running\n"

    assert list(cwd.iterdir()) == []  # nothing written where the newcomer stood
    assert git_status() <= before  # nor into the repository (`./control` once was)
