"""Drivers for userspace tools and daemons, for real, inside throwaway namespaces.

Every namespace and process a test makes is removed in a finally, also on failure;
processes are killed only by the PIDs the test itself started.
"""

from __future__ import annotations

import contextlib
import grp
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

if os.geteuid() != 0 or not (shutil.which("ip") and shutil.which("conntrack")):
    pytest.skip("needs root, iproute2 and conntrack", allow_module_level=True)

from tests.e2e.agent_fabric import netns_list, sh, wait_for
from workers.agent import dnsmasq
from workers.agent.drivers import DriverError, conntrack, files, haproxy, processes

pytestmark = pytest.mark.e2e


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"vd{uuid.uuid4().hex[:6]}"
    sh("ip", "netns", "add", name)
    try:
        yield name
    finally:
        sh("ip", "netns", "del", name, check=False)
    assert name not in netns_list()


def _gone(pid: int) -> bool:
    """True when `pid` no longer runs (a zombie of ours is reaped on the way)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def test_a_daemon_is_started_watched_restarted_and_stopped(tmp_path: Path, netns: str) -> None:
    tag = f"vpcd-test-daemon-{uuid.uuid4().hex[:8]}"
    argv = [sys.executable, "-c", "import time; time.sleep(600)", tag]
    started: list[int] = []
    try:
        pid = processes.start(tmp_path, "sleeper", netns, argv)
        started.append(pid)
        assert processes.running(tmp_path, "sleeper", netns, argv) == pid
        here, there = os.stat(f"/proc/{pid}/ns/net"), os.stat(f"/run/netns/{netns}")
        assert (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)  # in the netns
        assert processes.start(tmp_path, "sleeper", netns, argv) == pid  # EEXIST: same one

        os.kill(pid, signal.SIGKILL)  # killed by hand: the watch sees it dead
        assert wait_for(lambda: processes.running(tmp_path, "sleeper", netns, argv) is None)
        again = processes.start(tmp_path, "sleeper", netns, argv)
        started.append(again)
        assert again != pid and processes.running(tmp_path, "sleeper", netns, argv) == again
        assert processes.send_signal(tmp_path, "sleeper", netns, argv, 0)

        processes.stop(tmp_path, "sleeper", netns, argv)  # returns once it no longer runs argv
        assert processes.running(tmp_path, "sleeper", netns, argv) is None
        assert wait_for(lambda: _gone(again))  # the kernel may still be tearing it down
        assert not processes.pid_file(tmp_path, "sleeper").exists()
        processes.stop(tmp_path, "sleeper", netns, argv)  # ENOENT: already stopped is fine
    finally:
        for p in started:
            if not _gone(p):
                os.kill(p, signal.SIGKILL)
    assert all(_gone(p) for p in started)


def test_a_pid_file_naming_someone_else_is_never_signalled(tmp_path: Path, netns: str) -> None:
    argv = [sys.executable, "-c", "import time; time.sleep(600)", "vpcd-test-daemon"]
    other = subprocess.Popen(["sleep", "600"])  # ours, but not the daemon the file is for
    try:
        path = processes.pid_file(tmp_path, "victim")
        path.parent.mkdir(parents=True)
        path.write_text(f"{other.pid}\n")
        assert processes.running(tmp_path, "victim", netns, argv) is None
        assert not processes.send_signal(tmp_path, "victim", netns, argv, signal.SIGTERM)
        processes.stop(tmp_path, "victim", netns, argv)
        time.sleep(0.1)
        assert other.poll() is None  # still alive: its cmdline was not the daemon's
    finally:
        other.kill()
        other.wait(timeout=5)


def test_a_daemon_that_cannot_start_is_an_error_and_leaves_no_pid_file(
    tmp_path: Path, netns: str
) -> None:
    argv = [str(tmp_path / "no-such-daemon")]
    with pytest.raises(DriverError, match="did not start"):
        processes.start(tmp_path, "broken", netns, argv)
    assert not processes.pid_file(tmp_path, "broken").exists()


def test_conntrack_delete_by_filter(netns: str) -> None:
    assert conntrack.delete(netns, proto="udp", orig_src="10.1.1.1") == 0  # none: success
    for src in ("10.1.1.1", "10.1.1.2"):
        sh(
            "ip", "netns", "exec", netns, "conntrack", "-I", "-p", "udp", "-s", src,
            "-d", "10.2.2.2", "--sport", "1000", "--dport", "4789", "--timeout", "60",
        )  # fmt: skip
    assert conntrack.delete(netns, proto="udp", orig_src="10.1.1.1", dport=4789) == 1
    listed = sh("ip", "netns", "exec", netns, "conntrack", "-L").stdout
    assert "src=10.1.1.2" in listed and "src=10.1.1.1 " not in listed


def test_a_daemons_files_are_readable_by_its_group_only(tmp_path: Path) -> None:
    """dnsmasq drops root: its directory and files are root's, readable by its group,
    and by no other user (a tenant's leases and names)."""
    directory = tmp_path / "svc"
    files.write(directory / "addn_hosts", "# vpcd: x\n", group=dnsmasq.GROUP)
    gid = grp.getgrnam(dnsmasq.GROUP).gr_gid
    for path, mode in ((directory, 0o750), (directory / "addn_hosts", 0o640)):
        st = path.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, gid, mode), path
    files.write(directory / "addn_hosts", "# vpcd: y\n", group=dnsmasq.GROUP)  # rewritten
    assert (directory / "addn_hosts").read_text() == "# vpcd: y\n"
    assert stat.S_IMODE((directory / "addn_hosts").stat().st_mode) == 0o640


def _haproxy_config(stats: Path, port: int) -> str:
    return "\n".join(
        [
            "global",
            f"    stats socket {stats} mode 600 level admin expose-fd listeners",
            "defaults",
            "    timeout connect 5s",
            "    timeout client 5s",
            "    timeout server 5s",
            f"frontend f{port}",
            "    mode tcp",
            f"    bind 127.0.0.1:{port}",
            "    default_backend b",
            "backend b",
            "    mode tcp",
            "    server s 127.0.0.1:9",
            "",
        ]
    )


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is installed by .ci/run")
def test_starting_a_running_haproxy_reloads_it_and_keeps_its_sockets(
    tmp_path: Path, netns: str
) -> None:
    """An observation that missed a live master (it re-executes itself on every reload)
    plans a start: that must reload it, not remove the sockets of the one running."""
    sh("ip", "-n", netns, "link", "set", "lo", "up")
    token, name = "t0", f"haproxy-{uuid.uuid4()}"
    _, stats, master = haproxy.files(tmp_path, token)
    haproxy.start(tmp_path, name, token, netns, _haproxy_config(stats, 8001))
    pid = haproxy.running(tmp_path, name, token, netns)
    try:
        assert pid is not None
        assert wait_for(lambda: "f8001" in haproxy.show_stat(str(stats)), 10)
        haproxy.start(tmp_path, name, token, netns, _haproxy_config(stats, 8002))
        # the same master (after it re-executed itself: for a moment it looks gone)
        assert wait_for(lambda: haproxy.running(tmp_path, name, token, netns) == pid, 10)
        assert stats.exists() and master.exists()
        assert wait_for(lambda: "f8002" in haproxy.show_stat(str(stats)), 10)  # new config
    finally:
        haproxy.stop(tmp_path, name, token, netns)
        if pid is not None and not _gone(pid):  # ours, by its PID: never left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert _gone(pid) and not stats.exists() and not master.exists()
