"""haproxy per load balancer: files under `<state dir>/lb/`, the master-worker process
through the processes driver, its stats socket, and the namespace's forwarding switch.

The master runs `haproxy -W -S <master socket> -f <config>`; a reload (SIGUSR2) makes it
re-exec with `-sf <old workers>` appended, so the process is recognised by that argv
prefix. Old workers keep serving their open connections until those close.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import time
from pathlib import Path

from workers.agent.drivers import processes
from workers.agent.drivers.cmd import check, run

LB_DIR = "lb"
REEXEC_SECONDS = 2.0  # how long a master re-executing itself on a reload may look gone
PING_CHECK = "ping-check"  # lbconf.PING_CHECK: haproxy's external check for PING monitors
# $3 is the server's address; one echo, one second (Octavia's ping-wrapper.sh)
PING_SCRIPT = '#!/bin/sh\nexec ping -q -n -c 1 -w 1 "$3" >/dev/null 2>&1\n'
PID_RE = re.compile(r"^haproxy-([0-9a-f-]{36})\.pid\Z")


def files(state_dir: str | os.PathLike[str], token: str) -> tuple[Path, Path, Path]:
    """(config, stats socket, master socket) of one load balancer."""
    base = Path(state_dir) / LB_DIR
    return base / f"{token}.cfg", base / f"{token}.sock", base / f"{token}.master"


def argv(state_dir: str | os.PathLike[str], token: str) -> list[str]:
    config, _, master = files(state_dir, token)
    return ["haproxy", "-W", "-S", str(master), "-f", str(config)]


def daemons(state_dir: str | os.PathLike[str]) -> set[str]:
    """Ids of load balancers with a haproxy pid file (running or not)."""
    pids = Path(state_dir) / processes.PID_DIR
    if not pids.is_dir():
        return set()
    return {m.group(1) for p in pids.iterdir() if (m := PID_RE.match(p.name))}


def running(state_dir: str | os.PathLike[str], name: str, token: str, netns: str) -> int | None:
    return processes.running(state_dir, name, netns, argv(state_dir, token), prefix=True)


def read_config(state_dir: str | os.PathLike[str], token: str) -> str | None:
    try:
        return files(state_dir, token)[0].read_text()
    except OSError:
        return None


def _ping_script(base: Path) -> None:
    """The PING monitors' check script, shared by the load balancers of this host."""
    path = base / PING_CHECK
    with contextlib.suppress(OSError):
        if path.read_text() == PING_SCRIPT and os.access(path, os.X_OK):
            return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(PING_SCRIPT)
    tmp.chmod(0o755)
    os.replace(tmp, path)


def _write_config(state_dir: str | os.PathLike[str], token: str, text: str) -> None:
    path = files(state_dir, token)[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    if "external-check command" in text:
        _ping_script(path.parent)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    check(run(None, ["haproxy", "-c", "-q", "-f", str(tmp)]), "haproxy -c")
    os.replace(tmp, path)


def start(
    state_dir: str | os.PathLike[str], name: str, token: str, netns: str, config: str
) -> None:
    """Write the configuration and start the master; one already running (observed as
    gone while it re-executed itself on a reload) is reloaded instead, and keeps its
    sockets: removing a live master's would leave its stats unreadable."""
    _write_config(state_dir, token, config)
    command = argv(state_dir, token)
    if _settled(state_dir, name, netns, command):
        processes.send_signal(state_dir, name, netns, command, signal.SIGUSR2, prefix=True)
        return
    _, stats, master = files(state_dir, token)
    for stale in (stats, master):  # left by a killed master: haproxy would refuse to bind
        stale.unlink(missing_ok=True)
    processes.start(state_dir, name, netns, command, prefix=True)


def reload(
    state_dir: str | os.PathLike[str], name: str, token: str, netns: str, config: str
) -> None:
    """New configuration, then SIGUSR2 to the master (started again if it is gone):
    what `start` does."""
    start(state_dir, name, token, netns, config)


def _settled(
    state_dir: str | os.PathLike[str], name: str, netns: str | None, command: list[str]
) -> bool:
    """Whether our master runs, waiting out one that is re-executing itself on a reload
    (its pid file names a live process that does not look like it for a moment)."""
    deadline = time.monotonic() + REEXEC_SECONDS
    while processes.running(state_dir, name, netns, command, prefix=True) is None:
        if not processes.recorded_alive(state_dir, name) or time.monotonic() > deadline:
            return False  # gone (or never ours)
        time.sleep(0.02)
    return True


def stop(state_dir: str | os.PathLike[str], name: str, token: str, netns: str | None) -> None:
    """Stop the master (waiting out a re-exec: stopping then would orphan it)."""
    _settled(state_dir, name, netns, argv(state_dir, token))
    processes.stop(state_dir, name, netns, argv(state_dir, token), prefix=True)
    for path in files(state_dir, token):
        path.unlink(missing_ok=True)
    base = Path(state_dir) / LB_DIR
    if not any(base.glob("*.cfg")):  # the last load balancer here: its check script too
        (base / PING_CHECK).unlink(missing_ok=True)


def forwarding(netns: str) -> bool:
    done = run(netns, ["cat", "/proc/sys/net/ipv4/ip_forward"])
    return done.returncode == 0 and done.stdout.strip() == "1"


def enable_forwarding(netns: str) -> None:
    check(run(netns, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]), "sysctl ip_forward")


def show_stat(stats_socket: str, timeout: float = 3.0) -> str:
    """`show stat` from a worker's stats socket; "" when it does not answer."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(stats_socket)
        s.sendall(b"show stat\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")
    return ""
