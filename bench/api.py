"""API throughput and latency on Postgres, next to a bare FastAPI endpoint in the same run.

    python bench/api.py [--requests N] [--concurrency 32] [--workers 2]
                        [--baseline-requests M] [--max-seconds S] [--client raw|httpx]
                        [--out bench/results/api.json]

Creates a private Postgres database, migrates it, serves vpcd with uvicorn (N workers) and,
on another port with the same worker count, a bare FastAPI app with one trivial endpoint.
A closed-loop load of `--concurrency` keep-alive clients then measures, per phase,
throughput and p50/p99 latency of: the baseline endpoint, GET /v1/vpcs/{id} and
POST /v1/ports (on a /16, so allocation never runs out). Figures and the vpcd/baseline
ratios are printed and saved as JSON. Every process it starts is killed by PID (its
process group) and the database dropped at the end, also on error or Ctrl-C.

The default client is a minimal asyncio HTTP/1.1 client: httpx costs several times more
CPU per request than a bare endpoint does, so with httpx on a small machine the baseline
measures the client, not the server (`--client httpx` shows it). Both servers are measured
with the same client either way; client and server share the machine's CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make api/, models/, migrations/ importable
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from cli import procs  # noqa: E402
from models.db import scratch_database  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://root@127.0.0.1/postgres"
STARTUP_TIMEOUT = 60.0
WARMUP = 200


# -- the baseline app ----------------------------------------------------------------------


def baseline_app() -> Any:
    """A bare FastAPI app: one sync endpoint returning a small dict, as vpcd's routes are sync."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"status": "ok", "service": "baseline"}

    return app


# -- processes -----------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def cpu_seconds(self) -> float:
        """User+system CPU of every live process in the server's process group."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            fields = text[text.rindex(")") + 2 :].split()
            if int(fields[2]) == self.proc.pid:  # pgrp
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / tick


def start_uvicorn(
    name: str, factory: str, workers: int, env: dict[str, str], logdir: Path
) -> Server:
    """uvicorn in a process group of its own: its workers are measured and stopped with it."""
    port = procs.free_port()
    log = logdir / f"{name}.log"
    argv = procs.uvicorn_argv(factory, port, "--workers", str(workers), "--no-access-log")
    return Server(name, procs.spawn(argv, {**os.environ, **env}, log, cwd=ROOT), port, log)


def wait_ready(server: Server, path: str) -> None:
    procs.wait_http_ok(
        f"http://127.0.0.1:{server.port}{path}", server.proc, server.log, STARTUP_TIMEOUT
    )


# -- clients -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None = None

    def raw(self, port: int) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        if self.body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(self.body)}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + (self.body or b"")


class RawConnection:
    """One keep-alive HTTP/1.1 connection; enough for uvicorn's Content-Length replies."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def __aenter__(self) -> RawConnection:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.writer.close()

    async def send(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            key = name.strip().lower()
            if key == b"content-length":
                length = int(value)
            elif key == b"transfer-encoding":
                raise RuntimeError("chunked replies are not expected from these endpoints")
        body = await self.reader.readexactly(length) if length else b""
        return status, body


class HttpxConnection:
    def __init__(self, port: int) -> None:
        import httpx

        self.client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            timeout=60,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )

    async def __aenter__(self) -> HttpxConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def call(self, call: Call) -> tuple[int, bytes]:
        headers = dict(call.headers)
        if call.body is not None:
            headers["Content-Type"] = "application/json"
        r = await self.client.request(call.method, call.path, headers=headers, content=call.body)
        return r.status_code, r.content


@dataclass
class Phase:
    name: str
    requests: int
    seconds: float
    throughput_rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    statuses: dict[str, int]
    server_cpu_seconds: float
    client_cpu_seconds: float
    stopped_by_time_limit: bool
    notes: dict[str, Any] = field(default_factory=dict)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


async def load(
    server: Server,
    make: Callable[[int], Call],
    total: int,
    concurrency: int,
    max_seconds: float,
    client: str,
    on_reply: Callable[[int, bytes], None] | None = None,
) -> tuple[list[float], Counter[int], float, bool]:
    """Closed loop: `concurrency` connections, each sending its next request on a reply."""
    numbers = itertools.count()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    start = time.perf_counter()
    deadline = start + max_seconds
    timed_out = False

    async def worker() -> None:
        nonlocal timed_out
        conn: Any = RawConnection(server.port) if client == "raw" else HttpxConnection(server.port)
        async with conn:
            while True:
                i = next(numbers)
                if i >= total:
                    return
                if time.perf_counter() > deadline:
                    timed_out = True
                    return
                call = make(i)
                raw = call.raw(server.port) if client == "raw" else b""
                t0 = time.perf_counter()
                status, body = await (conn.send(raw) if client == "raw" else conn.call(call))
                latencies.append(time.perf_counter() - t0)
                statuses[status] += 1
                if on_reply is not None:
                    on_reply(status, body)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, statuses, time.perf_counter() - start, timed_out


def measure(
    name: str,
    server: Server,
    make: Callable[[int], Call],
    args: argparse.Namespace,
    total: int,
    on_reply: Callable[[int, bytes], None] | None = None,
) -> Phase:
    cpu0, own0 = server.cpu_seconds(), time.process_time()
    latencies, statuses, seconds, timed_out = asyncio.run(
        load(server, make, total, args.concurrency, args.max_seconds, args.client, on_reply)
    )
    cpu1, own1 = server.cpu_seconds(), time.process_time()
    done = sorted(latencies)
    return Phase(
        name=name,
        requests=len(done),
        seconds=round(seconds, 3),
        throughput_rps=round(len(done) / seconds, 1),
        p50_ms=round(percentile(done, 50) * 1000, 2),
        p99_ms=round(percentile(done, 99) * 1000, 2),
        mean_ms=round(statistics.fmean(done) * 1000, 2),
        max_ms=round(done[-1] * 1000, 2),
        statuses={str(k): v for k, v in sorted(statuses.items())},
        server_cpu_seconds=round(cpu1 - cpu0, 2),
        client_cpu_seconds=round(own1 - own0, 2),
        stopped_by_time_limit=timed_out,
    )


def warm(server: Server, make: Callable[[int], Call], args: argparse.Namespace) -> None:
    asyncio.run(load(server, make, WARMUP, args.concurrency, args.max_seconds, args.client))


# -- vpcd set-up ---------------------------------------------------------------------------


def setup_tenant(port: int, admin_token: str, ports_needed: int) -> dict[str, str]:
    """A tenant, its token, a VPC and a /16 subnet; returns ids and the tenant's headers."""
    import httpx

    admin = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:

        def ok(r: httpx.Response, status: int) -> dict[str, Any]:
            if r.status_code != status:
                raise RuntimeError(f"{r.request.method} {r.request.url}: {r.status_code} {r.text}")
            return r.json()

        tid = ok(c.post("/v1/tenants", json={"name": "bench"}, headers=admin), 201)["id"]
        ok(c.patch(f"/v1/tenants/{tid}/quotas", json={"ports": ports_needed}, headers=admin), 200)
        token = ok(c.post(f"/v1/tenants/{tid}/tokens", headers=admin), 201)["token"]
        who = {"Authorization": f"Bearer {token}"}
        vpc = ok(c.post("/v1/vpcs", json={"name": "bench", "cidr": "10.0.0.0/8"}, headers=who), 201)
        subnet = ok(
            c.post(
                "/v1/subnets",
                json={"vpc_id": vpc["id"], "name": "bench", "cidr": "10.1.0.0/16"},
                headers=who,
            ),
            201,
        )
    return {"token": token, "vpc_id": vpc["id"], "subnet_id": subnet["id"]}


# -- report --------------------------------------------------------------------------------


def machine_info(db_url: str) -> dict[str, Any]:
    import fastapi
    import uvicorn

    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        pg = conn.scalar(sa.text("SELECT version()"))
    engine.dispose()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        # Other work on the machine skews every figure: the 1/5/15-minute load at the start.
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "fastapi": fastapi.__version__,
        "uvicorn": uvicorn.__version__,
        "postgres": pg,
        "git_commit": commit,
    }


GOALS = {  # issue 14
    "get_p50_over_baseline_at_most": 3.0,
    "get_throughput_over_baseline_at_least": 1 / 3,
    "create_port_per_s_at_least": 200.0,
    "create_port_p99_ms_below": 300.0,
}


def goals(phases: dict[str, Phase], ratios: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Each goal of issue 14 beside the figure this run measured."""
    get, create = ratios["vpcd_get_vpc"], phases["vpcd_create_port"]
    rows = [
        ("GET p50 / baseline p50", get["p50"], "<=", GOALS["get_p50_over_baseline_at_most"]),
        (
            "GET req/s / baseline req/s",
            get["throughput"],
            ">=",
            GOALS["get_throughput_over_baseline_at_least"],
        ),
        ("POST /v1/ports req/s", create.throughput_rps, ">=", GOALS["create_port_per_s_at_least"]),
        ("POST /v1/ports p99 ms", create.p99_ms, "<", GOALS["create_port_p99_ms_below"]),
    ]
    met = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b}
    return [
        {
            "goal": name,
            "measured": value,
            "op": op,
            "target": round(target, 3),
            "met": bool(met[op](value, target)),
        }
        for name, value, op, target in rows
    ]


def cpu_ms_per_request(p: Phase) -> float:
    return round(p.server_cpu_seconds * 1000 / max(p.requests, 1), 3)


def print_table(phases: dict[str, Phase], ratios: dict[str, dict[str, float]]) -> None:
    head = f"{'phase':<22}{'requests':>9}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
    head += f"{'srv cpu s':>11}{'cli cpu s':>11}  statuses"
    print(head)
    print("-" * len(head))
    for p in phases.values():
        print(
            f"{p.name:<22}{p.requests:>9}{p.throughput_rps:>10.1f}{p.p50_ms:>9.2f}"
            f"{p.p99_ms:>9.2f}{p.server_cpu_seconds:>11.2f}{p.client_cpu_seconds:>11.2f}"
            f"  {p.statuses}"
        )
    print()
    print(f"{'vpcd / baseline':<22}{'throughput':>12}{'p50':>9}{'p99':>9}{'cpu/req':>9}")
    for name, r in ratios.items():
        print(
            f"{name:<22}{r['throughput']:>12.3f}{r['p50']:>9.2f}{r['p99']:>9.2f}"
            f"{r['cpu_per_request']:>9.2f}"
        )
    print()
    print(
        "server CPU per request (ms): "
        + ", ".join(f"{p.name} {cpu_ms_per_request(p):.3f}" for p in phases.values())
    )
    print()
    for g in goals(phases, ratios):
        verdict = "met" if g["met"] else "NOT met"
        print(f"goal {g['goal']:<28} {g['measured']:>9} {g['op']} {g['target']:<7} {verdict}")


# -- main ----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    servers: list[Server] = []
    logdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"vpcd-bench-{os.getpid()}"
    logdir.mkdir(parents=True, exist_ok=True)
    admin_token = "bench-admin-" + secrets.token_urlsafe(16)
    try:
        with scratch_database(args.pg_url, "vpcd_bench") as db_url:
            from migrations.runner import upgrade

            upgrade(db_url)
            info = machine_info(db_url)
            vpcd = start_uvicorn(
                "vpcd",
                "api.app:create_app",
                args.workers,
                {"DATABASE_URL": db_url, "VPCD_ADMIN_TOKEN": admin_token, "REDIS_URL": ""},
                logdir,
            )
            servers.append(vpcd)
            base = start_uvicorn("baseline", "bench.api:baseline_app", args.workers, {}, logdir)
            servers.append(base)
            wait_ready(vpcd, "/readyz")
            wait_ready(base, "/ping")
            ids = setup_tenant(vpcd.port, admin_token, args.requests + WARMUP + 10)
            who = {"Authorization": f"Bearer {ids['token']}"}

            ping = Call("GET", "/ping", {})
            get_vpc = Call("GET", f"/v1/vpcs/{ids['vpc_id']}", who)
            body = json.dumps({"subnet_id": ids["subnet_id"]}).encode()
            create = Call("POST", "/v1/ports", who, body)
            addresses: list[str] = []

            def record(status: int, body: bytes) -> None:
                if status == 201:
                    addresses.append(json.loads(body)["ip_address"])

            phases: dict[str, Phase] = {}
            warm(base, lambda i: ping, args)
            phases["baseline_get"] = measure(
                "baseline GET /ping", base, lambda i: ping, args, args.baseline_requests
            )
            warm(vpcd, lambda i: get_vpc, args)
            phases["vpcd_get_vpc"] = measure(
                "vpcd GET /v1/vpcs/{id}", vpcd, lambda i: get_vpc, args, args.requests
            )
            warm(vpcd, lambda i: create, args)
            phases["vpcd_create_port"] = measure(
                "vpcd POST /v1/ports", vpcd, lambda i: create, args, args.requests, record
            )
            phases["vpcd_create_port"].notes = {
                "created": len(addresses),
                "distinct_addresses": len(set(addresses)),
            }
            if len(set(addresses)) != len(addresses):
                raise RuntimeError("port creates handed out an address twice")
            bad = {k: v for p in phases.values() for k, v in p.statuses.items() if k[0] != "2"}
            if bad:
                print(f"warning: non-2xx replies {bad}; see {logdir}", file=sys.stderr)

            b = phases["baseline_get"]
            ratios = {
                key: {
                    "throughput": round(phases[key].throughput_rps / b.throughput_rps, 4),
                    "p50": round(phases[key].p50_ms / b.p50_ms, 2),
                    "p99": round(phases[key].p99_ms / b.p99_ms, 2),
                    "cpu_per_request": round(
                        cpu_ms_per_request(phases[key]) / cpu_ms_per_request(b), 2
                    ),
                }
                for key in ("vpcd_get_vpc", "vpcd_create_port")
            }
    except BaseException:
        print(f"bench failed; server logs are in {logdir}", file=sys.stderr)
        raise
    finally:
        for server in reversed(servers):
            procs.stop_group(server.proc)
    shutil.rmtree(logdir, ignore_errors=True)
    print_table(phases, ratios)
    return {
        "benchmark": "api",
        "machine": info,
        "config": {
            "requests_per_phase": args.requests,
            "baseline_requests": args.baseline_requests,
            "warmup_per_phase": WARMUP,
            "concurrency": args.concurrency,
            "workers": args.workers,
            "client": args.client,
            "max_seconds_per_phase": args.max_seconds,
            "baseline": "FastAPI sync GET returning a 2-key dict, same uvicorn flags",
            "subnet": "10.1.0.0/16",
        },
        "phases": {k: asdict(v) for k, v in phases.items()},
        "ratios_vs_baseline": ratios,
        "server_cpu_ms_per_request": {k: cpu_ms_per_request(v) for k, v in phases.items()},
        "goals": goals(phases, ratios),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="measured requests per phase")
    parser.add_argument(
        "--baseline-requests",
        type=int,
        default=None,
        help="requests for the baseline phase (default 5 x --requests: it is that much faster)",
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers, both servers")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time limit per phase")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("VPCD_BENCH_DATABASE_URL", DEFAULT_PG),
        help="a Postgres server URL; a private database is created on it and dropped",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "api.json")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 60000:
        parser.error("--requests must be within 1..60000 (the /16 holds 65533 ports)")
    if args.baseline_requests is None:
        args.baseline_requests = min(5 * args.requests, 200_000)
    if not 1 <= args.baseline_requests <= 200_000:
        parser.error("--baseline-requests must be within 1..200000")
    if not 1 <= args.concurrency <= 256:
        parser.error("--concurrency must be within 1..256")

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through run()'s finally: servers stop

    signal.signal(signal.SIGTERM, terminate)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nsaved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
