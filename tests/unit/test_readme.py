"""The README as a newcomer reads it on a plain root machine (issue 11 §5).

The sandbox walk-through itself runs, as written, in tests/e2e/test_readme.py.
"""

from __future__ import annotations

import re
from pathlib import Path

from cli import prereqs

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```sh\n(.*?)```", README, flags=re.S)
SPANS = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", README, flags=re.S))


def test_no_sudo_but_as_root() -> None:
    assert "sudo" not in README
    assert "As root" in README or "as root" in README


def test_one_form_of_command_throughout() -> None:
    """Every vpcd/vpcctl/python/pytest call in a command is the virtualenv's own."""
    bare = re.compile(r"(?<![\w/.-])(vpcd|vpcctl|pytest|lint-imports)(?=\s|$)")
    python = re.compile(r"(?<![\w/.-])python(?=\s)(?! -m venv| bench)")
    commands = [line for block in BLOCKS for line in block.splitlines()]
    commands += [s for s in SPANS if re.match(r"(\.venv/bin/)?(vpcd|vpcctl|python)\s", s)]
    assert commands
    for line in commands:
        code = line.split("#", 1)[0]
        assert not bare.search(code), line
        assert not python.search(code.replace("python3 -m venv", "")), line
    assert ".venv/bin/vpcd sandbox up" in README and ".venv/bin/vpcctl" in README


def test_prerequisites_are_listed_with_their_install_command() -> None:
    assert prereqs.install_command(list(prereqs.PREREQUISITES)) in README


def test_docs_live_in_the_repository() -> None:
    for page in ("docs/architecture.md", "docs/rest-contract.md"):
        assert f"]({page})" in README
        assert (ROOT / page).is_file()
    assert "shared" not in README and "DESIGN.md" not in README


def test_ci_installs_every_prerequisite() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    for package in prereqs.packages(list(prereqs.PREREQUISITES)):
        assert re.search(rf"for pkg in [^;]*\b{re.escape(package)}\b", ci), package
