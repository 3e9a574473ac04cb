"""IPAM at scale: 10,000 port creates on one /16, and the create rate thousand by thousand.

    python bench/ipam.py [--ports 10000] [--step 1000] [--concurrency 32] [--workers 2]
                         [--out bench/results/ipam.json]

Creates a private Postgres database, serves vpcd with uvicorn (2 workers), makes a tenant,
a VPC and a /16 subnet, then creates `--ports` ports on it with `--concurrency` keep-alive
clients, measured per `--step` ports: creates/s, p50/p99 latency and server CPU per create.
After each step it also times the allocation query itself (`first_free` from 200 random
points, straight on the database), which is what must stay O(log n) as the subnet fills.
An allocation that read every used address grows with the subnet; this one must not: the
last step's rate over the first's is printed and saved (1.0 = flat). Every address is
checked to be handed out once. Processes are stopped by PID and the database dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.api import (  # noqa: E402
    DEFAULT_PG,
    Call,
    Phase,
    Server,
    machine_info,
    measure,
    setup_tenant,
    start_uvicorn,
    wait_ready,
)
from cli import procs  # noqa: E402
from models.db import scratch_database  # noqa: E402

SUBNET_FIRST, SUBNET_LAST = (10 << 24) | (1 << 16) | 2, (10 << 24) | (1 << 16) | 0xFFFE
GAP_SAMPLES = 200


def time_gap_query(db_url: str, subnet_id: str) -> float:
    """Median ms of one `first_free` from a random point of the subnet's pool."""
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from models.network import first_free

    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    rng = random.Random(7)
    times = []
    try:
        with Session(engine) as session:
            for _ in range(GAP_SAMPLES):
                start = rng.randint(SUBNET_FIRST, SUBNET_LAST)
                t0 = time.perf_counter()
                first_free(session, subnet_id, start, SUBNET_LAST)
                times.append(time.perf_counter() - t0)
    finally:
        engine.dispose()
    return round(statistics.median(times) * 1000, 3)


def run(args: argparse.Namespace) -> dict[str, Any]:
    servers: list[Server] = []
    logdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"vpcd-bench-ipam-{os.getpid()}"
    logdir.mkdir(parents=True, exist_ok=True)
    admin_token = "bench-admin-" + secrets.token_urlsafe(16)
    steps: list[dict[str, Any]] = []
    addresses: list[str] = []
    try:
        with scratch_database(args.pg_url, "vpcd_bench_ipam") as db_url:
            from migrations.runner import upgrade

            upgrade(db_url)
            info = machine_info(db_url)
            env = {"DATABASE_URL": db_url, "VPCD_ADMIN_TOKEN": admin_token, "REDIS_URL": ""}
            vpcd = start_uvicorn("vpcd", "api.app:create_app", args.workers, env, logdir)
            servers.append(vpcd)
            wait_ready(vpcd, "/readyz")
            ids = setup_tenant(vpcd.port, admin_token, args.ports + 10)
            who = {"Authorization": f"Bearer {ids['token']}"}
            create = Call(
                "POST", "/v1/ports", who, json.dumps({"subnet_id": ids["subnet_id"]}).encode()
            )

            def record(status: int, body: bytes) -> None:
                if status == 201:
                    addresses.append(json.loads(body)["ip_address"])

            done = 0
            while done < args.ports:
                n = min(args.step, args.ports - done)
                phase: Phase = measure(
                    f"ports {done + 1}-{done + n}", vpcd, lambda i: create, args, n, record
                )
                done += n
                step = {
                    "ports_before": done - n,
                    "ports_after": done,
                    "creates_per_s": phase.throughput_rps,
                    "p50_ms": phase.p50_ms,
                    "p99_ms": phase.p99_ms,
                    "server_cpu_ms_per_create": round(
                        phase.server_cpu_seconds * 1000 / max(phase.requests, 1), 2
                    ),
                    "gap_query_ms": time_gap_query(db_url, ids["subnet_id"]),
                    "statuses": phase.statuses,
                }
                steps.append(step)
                print(
                    f"{step['ports_before']:>6}-{done:<6}{step['creates_per_s']:>9.1f}/s"
                    f"  p50 {step['p50_ms']:>7.2f} ms  p99 {step['p99_ms']:>7.2f} ms"
                    f"  cpu {step['server_cpu_ms_per_create']:>6.2f} ms/create"
                    f"  gap query {step['gap_query_ms']:.3f} ms  {step['statuses']}",
                    flush=True,
                )
    except BaseException:
        print(f"bench failed; server logs are in {logdir}", file=sys.stderr)
        raise
    finally:
        for server in reversed(servers):
            procs.stop_group(server.proc)
    shutil.rmtree(logdir, ignore_errors=True)
    if len(set(addresses)) != len(addresses):
        raise RuntimeError("port creates handed out an address twice")
    first, last = steps[0], steps[-1]
    summary = {
        "created": len(addresses),
        "distinct_addresses": len(set(addresses)),
        "rate_last_over_first": round(last["creates_per_s"] / first["creates_per_s"], 3),
        "cpu_per_create_last_over_first": round(
            last["server_cpu_ms_per_create"] / first["server_cpu_ms_per_create"], 3
        ),
        "gap_query_last_over_first": round(last["gap_query_ms"] / first["gap_query_ms"], 3),
    }
    print(
        f"\ncreated {summary['created']} ports, {summary['distinct_addresses']} distinct addresses;"
        f" last/first: rate {summary['rate_last_over_first']},"
        f" cpu per create {summary['cpu_per_create_last_over_first']},"
        f" gap query {summary['gap_query_last_over_first']}"
    )
    return {
        "benchmark": "ipam",
        "machine": info,
        "config": {
            "ports": args.ports,
            "step": args.step,
            "concurrency": args.concurrency,
            "workers": args.workers,
            "subnet": "10.1.0.0/16",
            "gap_query_samples": GAP_SAMPLES,
        },
        "steps": steps,
        "summary": summary,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ports", type=int, default=10_000)
    parser.add_argument("--step", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-seconds", type=float, default=600.0, help="time limit per step")
    parser.add_argument("--pg-url", default=os.environ.get("VPCD_BENCH_DATABASE_URL", DEFAULT_PG))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ipam.json")
    args = parser.parse_args(argv)
    if not 1 <= args.step <= args.ports <= 60_000:
        parser.error("need 1 <= --step <= --ports <= 60000 (the /16 holds 65533 ports)")
    args.client = "raw"
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
