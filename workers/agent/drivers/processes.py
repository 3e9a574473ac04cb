"""Per-netns daemons (dnsmasq, haproxy, ...): start, check, signal, stop by pid file.

The agent signals only PIDs it recorded itself, in pid files under its state dir, and
only after /proc/PID/cmdline still reads as the argv it started (and the process still
lives in the expected namespace): a PID reused by any other process is never touched.
A daemon starts in its own session, so it outlives an agent restart; the next agent
finds it through the pid file. Starting what already runs and stopping what is already
gone are success (EEXIST/ENOENT).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from workers.agent.drivers.base import DriverError
from workers.agent.drivers.cmd import in_netns
from workers.agent.drivers.netns import netns_path

PID_DIR = "pids"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def pid_file(state_dir: str | os.PathLike[str], name: str) -> Path:
    if _NAME_RE.match(name) is None:
        raise ValueError(f"invalid daemon name {name!r}")
    return Path(state_dir) / PID_DIR / f"{name}.pid"


def _reap(pid: int) -> None:
    """Collect our own child if it exited, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _matches(pid: int, netns: str | None, argv: list[str], prefix: bool = False) -> bool:
    _reap(pid)
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        if netns is not None:
            want = os.stat(netns_path(netns))
            have = os.stat(f"/proc/{pid}/ns/net")
            if (want.st_dev, want.st_ino) != (have.st_dev, have.st_ino):
                return False
    except OSError:
        return False
    cmdline = raw.rstrip(b"\0").split(b"\0") if raw else []
    words = [a.decode(errors="replace") for a in cmdline]
    # prefix: a daemon that re-execs itself on reload (haproxy -W adds -sf PIDs)
    return (words[: len(argv)] if prefix else words) == argv


def recorded_alive(state_dir: str | os.PathLike[str], name: str) -> bool:
    """Whether daemon `name`'s pid file names a live process, verified or not: a daemon
    that re-executes itself (haproxy -W on a reload) fails `running` for a moment."""
    try:
        pid = int(pid_file(state_dir, name).read_text().strip())
        _reap(pid)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return False
    return state != "Z"


def running(
    state_dir: str | os.PathLike[str],
    name: str,
    netns: str | None,
    argv: list[str],
    prefix: bool = False,
) -> int | None:
    """The PID of daemon `name` if its pid file names a live process running `argv`
    (with `prefix`, `argv` and then any further arguments)."""
    try:
        pid = int(pid_file(state_dir, name).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and _matches(pid, netns, argv, prefix) else None


def start(
    state_dir: str | os.PathLike[str],
    name: str,
    netns: str | None,
    argv: list[str],
    *,
    settle: float = 2.0,
    prefix: bool = False,
) -> int:
    """Start `argv` in `netns` (in the foreground mode of the daemon) and record its PID.

    Waits until the process runs `argv` (after `ip netns exec` has exec'd it), so the
    pid file never names a process that cannot be verified.
    """
    pid = running(state_dir, name, netns, argv, prefix)
    if pid is not None:
        return pid
    path = pid_file(state_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        in_netns(netns, argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{proc.pid}\n")
    os.replace(tmp, path)
    deadline = time.monotonic() + settle
    while not _matches(proc.pid, netns, argv, prefix):
        if proc.poll() is not None or time.monotonic() > deadline:
            path.unlink(missing_ok=True)
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            raise DriverError(errno.ESRCH, f"daemon {name} did not start: {argv[0]}")
        time.sleep(0.01)
    return proc.pid


def send_signal(
    state_dir: str | os.PathLike[str],
    name: str,
    netns: str | None,
    argv: list[str],
    sig: int,
    prefix: bool = False,
) -> bool:
    """Signal the daemon (e.g. SIGHUP to reload); False when it is not running."""
    pid = running(state_dir, name, netns, argv, prefix)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    return True


def stop(
    state_dir: str | os.PathLike[str],
    name: str,
    netns: str | None,
    argv: list[str],
    *,
    timeout: float = 5.0,
    prefix: bool = False,
) -> None:
    """SIGTERM, then SIGKILL after `timeout`; remove the pid file. Not running: success."""
    pid = running(state_dir, name, netns, argv, prefix)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _matches(pid, netns, argv, prefix) and time.monotonic() < deadline:
            time.sleep(0.02)
        if _matches(pid, netns, argv, prefix):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
            while _matches(pid, netns, argv, prefix):
                if time.monotonic() > deadline:
                    raise DriverError(errno.EBUSY, f"daemon {name} (pid {pid}) survived SIGKILL")
                time.sleep(0.02)
    pid_file(state_dir, name).unlink(missing_ok=True)
