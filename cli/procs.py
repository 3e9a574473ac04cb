"""Servers we start as child processes: a port, a process group, a log, readiness, a stop.

The sandbox, the benchmarks and the tests that run a real uvicorn all start and end their
processes this one way, so each gets the same guarantees: a whole process group goes (a
uvicorn supervisor's workers with it), and a server that dies on start fails with its log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the kernel picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def uvicorn_argv(factory: str, port: int, *extra: str) -> list[str]:
    """uvicorn serving an app factory on loopback with quiet logs, as this interpreter."""
    argv = [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1"]
    return [*argv, "--port", str(port), "--log-level", "warning", *extra]


def spawn(
    argv: Sequence[str], env: Mapping[str, str], log_path: Path, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start `argv` as the leader of a new process group, stdout and stderr to `log_path`.

    Its own group lets `stop_group` end every process it forks and keeps our Ctrl-C away
    from it. The log is appended to, so a restarted process keeps the earlier output; the
    parent's copy of the file is closed once the child holds its own.
    """
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_group(proc: subprocess.Popen[bytes], grace: float = 15.0, kill_grace: float = 5.0) -> None:
    """TERM the process group of `proc`; after `grace` seconds, KILL what is left of it.

    KILL goes to the group even when the leader has exited in time: workers can outlive
    their supervisor, or ignore TERM. A group already gone is not an error.
    """
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, kill_grace)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)


def wait_http_ok(
    url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 60.0
) -> None:
    """Return once GET `url` answers 200; raise with the log if `proc` dies or time runs out.

    A server that crashed on start shows up at once with its traceback, not as a timeout.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = log_path.read_text(errors="replace")
            raise RuntimeError(f"{log_path.stem} exited with {proc.returncode}:\n{log}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    log = log_path.read_text(errors="replace")
    raise RuntimeError(f"{log_path.stem}: {url} not 200 after {timeout}s:\n{log}")


def stop_daemons(run_dir: Path) -> None:
    """Daemons a sandbox's agents started (haproxy per load balancer) outlive them by
    design; end each by the PID its agent recorded, once /proc says it is that daemon."""
    for pid_file in sorted(run_dir.glob("agents/*/pids/*.pid")):
        try:
            pid = int(pid_file.read_text().strip())
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if pid > 0 and cmd.startswith(b"haproxy\0"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
