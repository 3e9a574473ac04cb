"""The newcomer's path without root: prerequisites, one-line sandbox errors, secrets on disk,
the admin token, and pins that `.[dev]` does not fight (issue 11 §5)."""

from __future__ import annotations

import importlib.metadata as md
import os
import stat
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version
from typer.testing import CliRunner

from cli import prereqs, vpcd
from cli import sandbox as sbx
from tests.logs import keep_logs


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(sbx, "RUN_DIR", tmp_path / "run")
    return tmp_path / "run"


def a_sandbox(name: str = "nb") -> sbx.Sandbox:
    sb = sbx.Sandbox(name=name, endpoint="http://127.0.0.1:1", admin_token="secret-token")
    sb.hosts = [
        {"name": f"{name}-h1", "short": "h1", "netns": f"{name}-h1", "roles": "compute"},
        {"name": f"{name}-h2", "short": "h2", "netns": f"{name}-h2", "roles": "compute"},
    ]
    sb.save()
    return sb


def test_missing_prerequisites_are_named_with_their_packages(
    monkeypatch: pytest.MonkeyPatch, run_dir: Path
) -> None:
    gone = {"ping", "conntrack"}
    monkeypatch.setattr(prereqs.shutil, "which", lambda c: None if c in gone else f"/bin/{c}")
    message = prereqs.problem(prereqs.missing())
    assert message == (
        "missing commands: conntrack (conntrack), ping (iputils-ping); "
        "install them with: apt-get install -y conntrack iputils-ping"
    )
    # `sandbox up` says so first, in one line, before it needs root or builds anything
    result = CliRunner().invoke(vpcd.app, ["sandbox", "up", "--name", "nb"])
    assert result.exit_code == 1
    assert result.stderr == f"error: {message}\n"
    assert not run_dir.exists()


def test_prerequisites_cover_what_the_sandbox_and_agents_run() -> None:
    assert {p.package for p in prereqs.PREREQUISITES} == {
        "iproute2",
        "iptables",
        "ipset",
        "conntrack",
        "iputils-ping",
        "dnsmasq-base",
        "busybox",
        "dnsutils",
        "haproxy",
    }
    assert prereqs.missing(lambda c: "/bin/" + c) == []


def test_exec_on_an_unknown_host_is_one_line_listing_the_hosts(run_dir: Path) -> None:
    a_sandbox()
    result = CliRunner().invoke(
        vpcd.app, ["sandbox", "exec", "h9", "web", "--name", "nb", "--", "true"]
    )
    assert result.exit_code == 1
    assert result.stderr == "error: no host 'h9' in sandbox nb; hosts: h1, h2\n"
    assert result.exception is None or isinstance(result.exception, SystemExit)
    result = CliRunner().invoke(
        vpcd.app, ["sandbox", "exec", "h1", "web", "--name", "zz", "--", "true"]
    )
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "no sandbox named zz" in result.stderr


def test_down_with_nothing_running_says_so(run_dir: Path) -> None:
    result = CliRunner().invoke(vpcd.app, ["sandbox", "down", "--name", "nothing-here"])
    assert result.exit_code == 0
    assert result.stdout == "nothing to remove: no sandbox named nothing-here is running\n"


def test_status_hides_the_token_unless_asked(run_dir: Path) -> None:
    sb = a_sandbox()
    runner = CliRunner()
    out = runner.invoke(vpcd.app, ["sandbox", "status", "--name", "nb"]).stdout
    assert "secret-token" not in out
    assert "--show-token" in out
    for column in ("host", "roles", "agent pid", "status", "last sync", "log"):
        assert column in out
    assert str(sb.dir / "agent-h2.log") in out
    shown = runner.invoke(vpcd.app, ["sandbox", "status", "--name", "nb", "--show-token"]).stdout
    assert "admin token: secret-token" in shown
    missing = runner.invoke(vpcd.app, ["sandbox", "status", "--name", "zz"])
    assert missing.exit_code == 1 and "no sandbox named zz" in missing.stdout


def test_sandbox_env_prints_the_exports_and_the_name_comes_from_the_environment(
    run_dir: Path,
) -> None:
    a_sandbox("envbox")
    result = CliRunner().invoke(vpcd.app, ["sandbox", "env"], env={"VPCD_SANDBOX": "envbox"})
    assert result.exit_code == 0, result.output
    assert result.stdout == "export VPCD_URL=http://127.0.0.1:1 VPCD_TOKEN=secret-token\n"
    missing = CliRunner().invoke(vpcd.app, ["sandbox", "env", "--name", "zz"])
    assert missing.exit_code == 1 and missing.stderr.startswith("error: no sandbox named zz")


def test_state_file_is_private(run_dir: Path) -> None:
    sb = a_sandbox()
    path = sb.dir / "state.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    sb.save()  # rewritten atomically, still private
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sbx.Sandbox.load("nb") == sb


@pytest.mark.parametrize("passed", [True, False])
def test_kept_logs_hold_the_token_only_after_a_failure(
    run_dir: Path, tmp_path: Path, passed: bool
) -> None:
    sb = a_sandbox()
    (sb.dir / "api.log").write_text("log\n")
    (sb.dir / "bus").mkdir()
    dest = tmp_path / "logs" / "nb"
    keep_logs(sb.dir, dest, passed=passed)
    assert (dest / "api.log").read_text() == "log\n"
    assert not (dest / "bus").exists()
    assert stat.S_IMODE(dest.parent.stat().st_mode) == 0o700
    state = dest / "state.json"
    if passed:
        assert not state.exists()
    else:
        assert stat.S_IMODE(state.stat().st_mode) == 0o600


def test_dev_tools_never_cap_a_runtime_dependency_below_ours() -> None:
    """`pip install -e '.[dev]'` over `pip install .` must not downgrade anything (typer).

    For each runtime dependency, an upper bound a dev tool puts on it must be matched by
    our own (no higher), so that what `.` installs is what `.[dev]` keeps.
    """
    ours = {r.name.lower(): r for r in map(Requirement, md.requires("vpcd") or [])}
    runtime = {n: r for n, r in ours.items() if not r.marker}
    dev = [r for r in ours.values() if r.marker and "dev" in str(r.marker)]
    checked = 0
    for tool in dev:
        for raw in md.requires(tool.name) or []:
            req = Requirement(raw)
            mine = runtime.get(req.name.lower())
            if mine is None or (req.marker and not req.marker.evaluate()):
                continue
            for spec in req.specifier:
                if spec.operator not in ("<", "<="):
                    continue
                checked += 1
                cap = Version(spec.version)
                assert any(
                    Version(b.version) < cap
                    or (Version(b.version) == cap and (b.operator == "<" or spec.operator == "<="))
                    for b in mine.specifier
                    if b.operator in ("<", "<=")
                ), f"{tool.name} needs {req}; vpcd's {mine} allows more, and .[dev] would downgrade"
    assert checked, "expected openapi-python-client to cap typer"


def test_admin_token_rotate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import Settings

    url = f"sqlite:///{tmp_path}/vpcd.db"
    monkeypatch.delenv("VPCD_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("DATABASE_URL", url)
    runner = CliRunner()
    assert runner.invoke(vpcd.app, ["migrate"]).exit_code == 0
    info = runner.invoke(vpcd.app, ["admin-token"])
    assert info.exit_code == 0 and "no admin token is set yet" in info.stdout

    def rotate() -> str:
        result = runner.invoke(vpcd.app, ["admin-token", "--rotate"])
        assert result.exit_code == 0, result.output
        (line,) = [x for x in result.stdout.splitlines() if "generated admin token" in x]
        assert "no longer works" in result.stdout
        return line.rsplit(" ", 1)[1]

    first, second = rotate(), rotate()
    assert first != second and second.startswith("vpcd_admin_")
    assert "an admin token is set" in runner.invoke(vpcd.app, ["admin-token"]).stdout
    with TestClient(create_app(Settings(database_url=url, redis_url=None))) as client:
        ok = client.get("/v1/tenants", headers={"Authorization": f"Bearer {second}"})
        old = client.get("/v1/tenants", headers={"Authorization": f"Bearer {first}"})
    assert (ok.status_code, old.status_code) == (200, 401)

    monkeypatch.setenv("VPCD_ADMIN_TOKEN", "configured")
    refused = runner.invoke(vpcd.app, ["admin-token", "--rotate"])
    assert refused.exit_code == 1 and "VPCD_ADMIN_TOKEN is set" in refused.stderr
    os.environ.pop("VPCD_ADMIN_TOKEN", None)
