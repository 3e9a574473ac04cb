"""Servers the fault tests own: a Postgres, a Redis and a multi-worker uvicorn.

The machine's Postgres and Redis are shared, so a test that restarts a database starts one
of its own: a throwaway cluster (initdb, as the `postgres` user: Postgres refuses root) or
redis-server in a temp dir, on a free loopback port, stopped and started by its own data
dir and PID, and removed whatever happens. uvicorn runs as in production, with several
worker processes, so a request can race another process or lose its worker.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from cli import procs

ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT = 60.0


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def missing_own_postgres() -> str | None:
    """Why this machine cannot run a Postgres of the test's own (None: it can)."""
    if os.geteuid() != 0:
        return "needs root (to run a throwaway Postgres as the postgres user)"
    if _pg_bin() is None:
        return "needs the Postgres server binaries (/usr/lib/postgresql/*/bin)"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "needs the postgres system user"
    return None


def missing_own_redis() -> str | None:
    return None if shutil.which("redis-server") else "needs redis-server"


class OwnPostgres:
    """A Postgres cluster in a temp dir: trust on loopback only, its socket in that dir."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = port
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        self.bin = _pg_bin()

    def _run(self, *argv: str) -> None:
        assert self.bin is not None
        cmd = ["runuser", "-u", "postgres", "--", str(self.bin / argv[0]), *argv[1:]]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "--auth=trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
            " -c max_connections=200 -c fsync=off -c synchronous_commit=off"
        )
        log = str(self.folder / "postgres.log")
        self._run(
            "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", log, "-o", options
        )

    def stop(self) -> None:
        """A fast shutdown: sessions in flight are ended, their transactions rolled back."""
        self._run("pg_ctl", "stop", "-w", "-t", "60", "-m", "fast", "-D", str(self.data))

    def pid(self) -> int | None:
        pidfile = self.data / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(pidfile.read_text().splitlines()[0])
        return None

    def kill(self) -> None:
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    """A started cluster; stopped (killed if need be) and deleted on exit."""
    problem = missing_own_postgres()
    if problem:
        pytest.skip(problem)
    folder = Path(tempfile.mkdtemp(prefix="vpcd-pg-"))
    pg = OwnPostgres(folder, procs.free_port())
    try:
        shutil.chown(folder, "postgres", "postgres")
        pg.init()
        pg.start()
        yield pg
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            pg.stop()
        pg.kill()
        shutil.rmtree(folder, ignore_errors=True)


class OwnRedis:
    """redis-server on a free port in a temp dir, without persistence (a restart loses all)."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        argv += ["--appendonly", "no", "--dir", str(self.folder)]
        self.proc = procs.spawn(argv, os.environ, self.folder / "redis.log")
        import redis

        deadline = time.monotonic() + 30
        while True:
            try:
                redis.Redis.from_url(self.url, socket_timeout=1).ping()
                return
            except redis.RedisError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((self.folder / "redis.log").read_text()) from None
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGKILL, as a crash: what it held in memory is gone."""
        if self.proc is not None:
            procs.stop_group(self.proc, grace=0)
            self.proc = None


@contextlib.contextmanager
def own_redis() -> Iterator[OwnRedis]:
    problem = missing_own_redis()
    if problem:
        pytest.skip(problem)
    folder = Path(tempfile.mkdtemp(prefix="vpcd-redis-"))
    server = OwnRedis(folder, procs.free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


class Uvicorn:
    """A running `uvicorn --workers N` serving the API, with its log and metrics folder."""

    def __init__(self, base: str, proc: subprocess.Popen[bytes], metrics_dir: Path, log: Path):
        self.base = base
        self.proc = proc
        self.metrics_dir = metrics_dir
        self.log = log

    def log_tail(self, chars: int = 6000) -> str:
        """The end of uvicorn's output: the traceback behind a 5xx, for the failure message."""
        return self.log.read_text(errors="replace")[-chars:]

    def worker_pids(self) -> list[int]:
        """The supervisor's worker processes (its children), oldest first."""
        found = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                with contextlib.suppress(OSError):
                    cmd = Path(f"/proc/{child}/cmdline").read_bytes()
                    if b"spawn_main" in cmd and b"resource_tracker" not in cmd:
                        found.append(int(child))
        return sorted(found)

    def served(self, method: str, route: str) -> dict[str, float]:
        """Requests to this route counted so far, per worker process (by PID).

        prometheus_client's multiprocess mode keeps one file per process, named by PID,
        which tells us which workers served a burst without adding anything to the API.
        """
        from prometheus_client.multiprocess import MultiProcessCollector

        counts: dict[str, float] = {}
        for path in self.metrics_dir.glob("counter_*.db"):
            pid = path.stem.split("_", 1)[1]
            for metric in MultiProcessCollector.merge([str(path)], accumulate=False):
                for sample in metric.samples:
                    if (
                        sample.name == "vpcd_http_requests_total"
                        and sample.labels.get("method") == method
                        and sample.labels.get("route") == route
                    ):
                        counts[pid] = counts.get(pid, 0.0) + sample.value
        return counts


@contextlib.contextmanager
def uvicorn_api(
    db_url: str, folder: Path, admin_token: str, workers: int = 2, **env: str
) -> Iterator[Uvicorn]:
    """The API app factory under uvicorn with `workers` processes, ready; stopped on exit.

    No bus unless `env` names one (REDIS_URL): it must poke no controller by accident.
    """
    metrics_dir = folder / "metrics"
    metrics_dir.mkdir()
    log = folder / "uvicorn.log"
    port = procs.free_port()
    full_env: Mapping[str, str] = {
        **os.environ,
        "DATABASE_URL": db_url,
        "VPCD_ADMIN_TOKEN": admin_token,
        "REDIS_URL": "",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        **env,
    }
    argv = procs.uvicorn_argv("api.app:create_app", port, "--workers", str(workers))
    proc = procs.spawn(argv, full_env, log, cwd=ROOT)
    try:
        base = f"http://127.0.0.1:{port}"
        procs.wait_http_ok(f"{base}/readyz", proc, log, STARTUP_TIMEOUT)
        yield Uvicorn(base, proc, metrics_dir, log)
    finally:
        procs.stop_group(proc)
