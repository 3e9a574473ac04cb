"""Running a userspace tool, in a named netns or the current one: argv lists only.

No shell ever: names travel as separate arguments. A daemon enters its namespace with
`ip netns exec NS` (and execs in place, so the PID is the daemon's); a tool that runs
and exits is forked inside the network namespace (all it needs), with no helper exec.
"""

from __future__ import annotations

import errno
import subprocess
from dataclasses import dataclass

from workers.agent.drivers.base import DriverError
from workers.agent.drivers.netns import netns_path, on_netns_thread

TIMEOUT = 30.0


def in_netns(netns: str | None, argv: list[str]) -> list[str]:
    """argv run inside `netns` (None: where the agent runs)."""
    if netns is None:
        return argv
    netns_path(netns)  # validates the name
    return ["ip", "netns", "exec", netns, *argv]


def run(
    netns: str | None, argv: list[str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run argv in `netns`: forked from the netns thread while it is inside (a child
    starts in its parent thread's namespace), not through `nsenter --net` (≈5 ms, an
    exec more, and a one-port change runs three or four tools); `ip netns exec` also
    remounts /sys and binds /etc/netns files (≈17 ms), which iptables, ipset and
    conntrack never read. DriverError carrying the tool's stderr when it fails."""
    return run_all(netns, [argv], stdin)[0]


def run_all(
    netns: str | None, argvs: list[list[str]], stdin: str | None = None
) -> list[subprocess.CompletedProcess[str]]:
    """Start every argv at once in `netns` (each given `stdin`), then wait for each:
    independent tools (one `conntrack -D` per filter) overlap instead of queueing one
    fork+exec behind another."""

    def spawn() -> list[subprocess.CompletedProcess[str]]:
        procs = [
            subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for argv in argvs
        ]
        done = []
        try:
            for argv, proc in zip(argvs, procs, strict=True):
                out, err = proc.communicate(stdin, timeout=TIMEOUT)
                done.append(subprocess.CompletedProcess(argv, proc.returncode, out, err))
        finally:
            for proc in procs:  # a timeout (or anything) leaves none running
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        return done

    try:
        return spawn() if netns is None else on_netns_thread(netns, spawn)
    except FileNotFoundError as exc:
        raise DriverError(errno.ENOENT, f"{argvs[0][0]}: not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise DriverError(errno.ETIMEDOUT, f"{exc.cmd[0]} timed out after {TIMEOUT}s") from exc


def check(done: subprocess.CompletedProcess[str], what: str) -> str:
    if done.returncode != 0:
        message = " ".join((done.stderr or done.stdout).split()) or f"exit {done.returncode}"
        raise DriverError(errno.EIO, f"{what}: {message}")
    return done.stdout


@dataclass
class ToolCalls:
    """Userspace tool runs of one agent (each a fork+exec), for SyncStats."""

    iptables_saves: int = 0
    iptables_restores: int = 0
    ipset_restores: int = 0
    conntrack_deletes: int = 0
