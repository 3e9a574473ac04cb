"""The README's sandbox walk-through, run as written (as root, from a fresh directory).

Only two things change: the sandbox's name (VPCD_SANDBOX, so a sandbox of the user's own
called `vpcd` is never touched) and, with it, the host names in `--host`; `.venv/bin/` is
this virtualenv. Traffic stays between the sandbox's own namespaces.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli import sandbox as sbx

pytestmark = pytest.mark.e2e
README = Path(__file__).resolve().parents[2] / "README.md"


def walkthrough() -> str:
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S)
    (block,) = [b for b in blocks if "sandbox up" in b]
    return block


@pytest.fixture
def name() -> Iterator[str]:
    name = f"rdm{os.getpid() % 100000}"
    try:
        yield name
    finally:
        sbx.down(name)
        left = [n for n in sbx.existing_namespaces() if n.startswith(f"{name}-")]
        assert not left, f"sandbox left namespaces behind: {left}"


def test_readme_sandbox_walkthrough(name: str, tmp_path: Path) -> None:
    script = walkthrough()
    assert script.rstrip().endswith(
        "sandbox down                  # removes every process and namespace"
    )
    bin_dir = str(Path(sys.executable).parent)
    script = script.replace(".venv/bin/", f"{bin_dir}/").replace("vpcd-h", f"{name}-h")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VPCD_", "REDIS_"))}
    env.pop("DATABASE_URL", None)
    env["VPCD_SANDBOX"] = name
    cwd = tmp_path / "newcomer"
    cwd.mkdir()
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "bytes from 10.0.1.20" in result.stdout
    assert f"sandbox {name} removed" in result.stdout
    assert sbx.Sandbox.load(name) is None
    assert list(cwd.iterdir()) == []
