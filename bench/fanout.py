"""The controller at 1000 hosts (issue 13): simulated agents, real controller, real
Postgres and Redis.

Seeds N hosts with about P ports each across T tenants (one VPC and one subnet per
tenant; tenant 0's subnet spans `--span` hosts), runs the API (`vpcd serve`), one
controller (`vpcd controller`, with its metrics port) and processes of simulated agents
(`workers.agent.simulated`: real Celery consumers on every host's queue, the agents'
protocol, no kernel), all on a private database and bus namespace. Measures:

1. one port create: documents sent (== hosts carrying the subnet?) and time to the last report;
2. a change of the subnet spanning `--span` hosts: compile time per host document (the
   controller's batch compile time over the documents it compiled) and total fan-out time;
3. the controller's CPU per change (its process CPU time, minus the same run's idle rate:
   heartbeats of every host);
4. a burst of `--burst` port creates in `--burst-seconds`: the backlog when it ends and
   the drain time until every host converged;
5. `--restart` agents restarting at once: documents sent and time to all converged;
6. Postgres statements and rows per compile (one host's compile, in this process), and
   the same-run baseline: the wide subnet's hosts compiled one by one against one batch.

Prints the figures and saves bench/results/fanout.json.

    python bench/fanout.py [--hosts 1000] [--ports-per-host 20] [--tenants 200] [--span 500]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

NAMESPACE = f"fan{uuid.uuid4().hex[:8]}"
os.environ["VPCD_BUS_NAMESPACE"] = NAMESPACE  # before anything imports workers.bus
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from bench import simfleet as sf  # noqa: E402

TOKEN = "fanout-bench-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def compile_totals(metrics_port: int) -> tuple[float, float, float]:
    """(seconds compiling, host documents compiled, pokes coalesced) so far, from the
    controller's metrics endpoint (a compile is of a batch of hosts: its time over its
    documents is the time per host document)."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    names = {
        "vpcd_controller_compile_seconds_sum": 0,
        "vpcd_controller_compiled_total": 1,
        "vpcd_controller_coalesced_total": 2,
    }
    values = [0.0, 0.0, 0.0]
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in names:
            values[names[name]] = float(value)
    return values[0], values[1], values[2]


class Run:
    def __init__(self, args: argparse.Namespace, db_url: str, redis_url: str) -> None:
        self.args = args
        self.db_url = db_url
        self.fleet = sf.Fleet(
            db_url, redis_url, namespace=NAMESPACE, log_dir=Path(tempfile.mkdtemp("-fanout"))
        )
        self.metrics_port = free_port()
        self.api_port = free_port()
        self.results: dict[str, Any] = {}

    def controller_pid(self) -> int:
        return self.fleet.controllers["main"].pid

    def agents_cpu(self) -> float:
        """CPU seconds of the simulated agents' processes (on one machine here; on
        their own hosts in production)."""
        return sum(cpu_seconds(p.pid) for p in self.fleet.agent_procs)

    def start_api(self) -> httpx.Client:
        os.environ["VPCD_ADMIN_TOKEN"] = TOKEN
        self.fleet._spawn(
            ["-m", "cli.vpcd", "serve", "--port", str(self.api_port), "--workers", "2"], "api.log"
        )
        http = httpx.Client(base_url=f"http://127.0.0.1:{self.api_port}", timeout=60)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if http.get("/v1/hosts", headers=ADMIN).status_code == 200:
                    return http
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError("the API did not come up")

    def idle_rate(self, seconds: float = 5.0) -> float:
        """Controller CPU seconds per second with nothing changing (heartbeats only)."""
        pid = self.controller_pid()
        c0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(seconds)
        return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)

    def one_change(
        self, http: httpx.Client, topo: sf.Topology, tenant: int, host: str, label: str
    ) -> dict[str, Any]:
        """Create one port; count documents per host; time to the last affected report."""
        pid = self.controller_pid()
        idle = self.idle_rate(3.0)
        before = self.fleet.applies()
        compile0 = compile_totals(self.metrics_port)
        cpu0, agents0 = cpu_seconds(pid), self.agents_cpu()
        t0 = time.time()
        m0 = time.monotonic()
        r = http.post(
            "/v1/ports",
            json={"subnet_id": topo.subnets[tenant], "host": host, "netns": f"bench-{label}"},
            headers=topo.tokens[tenant],
        )
        r.raise_for_status()
        api_s = time.time() - t0
        affected = sf.carrying(self.db_url, topo.subnets[tenant]) | {host}
        deadline = time.monotonic() + 300
        while True:
            reported = self.fleet.reported()
            if all(reported.get(h, 0) > t0 for h in affected):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{label}: not every affected host reported")
            time.sleep(0.01)
        last = max(reported[h] for h in affected) - t0
        sf.wait_converged(self.db_url, 300)
        wall = time.monotonic() - m0
        cpu, agents = cpu_seconds(pid) - cpu0, self.agents_cpu() - agents0
        time.sleep(3.0)  # late duplicates would land now
        sent = sf.diff(self.fleet.applies(), before)
        compile1 = compile_totals(self.metrics_port)
        compiles = compile1[1] - compile0[1]
        return {
            "affected_hosts": len(affected),
            "messages": sum(sent.values()),
            "hosts_messaged": len(sent),
            "unaffected_hosts_messaged": len(set(sent) - affected),
            "max_messages_per_host": max(sent.values(), default=0),
            "api_post_s": round(api_s, 4),
            "time_to_last_report_s": round(last, 3),
            "compiles": int(compiles),
            "pokes_coalesced": int(compile1[2] - compile0[2]),
            "compile_ms_per_host_doc": round((compile1[0] - compile0[0]) / compiles * 1000, 2)
            if compiles
            else None,
            "controller_cpu_s": round(cpu, 3),
            "controller_cpu_s_minus_idle": round(cpu - idle * wall, 3),
            "controller_idle_cpu_per_s": round(idle, 3),
            "simulated_agents_cpu_s": round(agents, 3),
        }

    def burst(self, http: httpx.Client, topo: sf.Topology) -> dict[str, Any]:
        """`--burst` port creates paced over `--burst-seconds`, 8 at a time."""
        n, seconds = self.args.burst, self.args.burst_seconds
        rng = random.Random(13)
        plan = []
        for i in range(n):
            tenant = rng.randrange(1, len(topo.subnets))
            carriers = self.carriers[tenant]
            plan.append((i, tenant, rng.choice(carriers)))
        pid = self.controller_pid()
        before = self.fleet.applies()
        cpu0, start = cpu_seconds(pid), time.monotonic()

        def create(item: tuple[int, int, str]) -> None:
            i, tenant, host = item
            delay = start + i * seconds / n - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            r = http.post(
                "/v1/ports",
                json={"subnet_id": topo.subnets[tenant], "host": host, "netns": f"burst-{i}"},
                headers=topo.tokens[tenant],
            )
            r.raise_for_status()

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, plan))
        ended = time.monotonic()
        backlog = {
            "control_queue": self.fleet.backlog(),
            "hosts_not_converged": len(sf.lagging(self.db_url)),
        }
        converged = sf.wait_converged(self.db_url, 900, poll=0.2)
        cpu = cpu_seconds(pid) - cpu0
        time.sleep(3.0)
        sent = sf.diff(self.fleet.applies(), before)
        return {
            "changes": n,
            "requested_seconds": seconds,
            "api_seconds": round(ended - start, 2),
            "backlog_at_end": backlog,
            "drain_s": round(converged - ended, 2),
            "first_change_to_converged_s": round(converged - start, 2),
            "messages": sum(sent.values()),
            "hosts_messaged": len(sent),
            "max_messages_per_host": max(sent.values(), default=0),
            "controller_cpu_s": round(cpu, 2),
            "controller_cpu_ms_per_change": round(cpu / n * 1000, 1),
        }

    def restart(self, topo: sf.Topology) -> dict[str, Any]:
        hosts = topo.hosts[: self.args.restart]
        pid = self.controller_pid()
        before = self.fleet.applies()
        cpu0, t0, m0 = cpu_seconds(pid), time.time(), time.monotonic()
        self.fleet.restart(hosts)
        deadline = time.monotonic() + 600
        while True:
            reported = self.fleet.reported()
            if all(reported.get(h, 0) > t0 for h in hosts):
                break
            if time.monotonic() > deadline:
                raise TimeoutError("restarted agents never reported")
            time.sleep(0.02)
        last = max(reported[h] for h in hosts) - t0
        converged = sf.wait_converged(self.db_url, 600)
        cpu = cpu_seconds(pid) - cpu0
        time.sleep(3.0)
        sent = sf.diff(self.fleet.applies(), before)
        return {
            "restarted": len(hosts),
            "messages": sum(sent.values()),
            "messages_to_other_hosts": sum(v for h, v in sent.items() if h not in hosts),
            "time_to_last_report_s": round(last, 3),
            "time_to_converged_s": round(converged - m0, 3),
            "controller_cpu_s": round(cpu, 3),
        }


def rows_per_compile(db_url: str, hosts: list[str]) -> dict[str, Any]:
    """Statements, rows and time of one batch compiling `hosts` (in this process, same
    code), per batch and per host document."""
    from models.db import engine_for, session_factory
    from workers.controller.compile import compile_hosts

    engine = engine_for(db_url)
    counts = {"statements": 0, "rows": 0}

    def after(conn: Any, cursor: Any, *_: Any) -> None:
        counts["statements"] += 1
        counts["rows"] += max(cursor.rowcount, 0)

    sa.event.listen(engine, "after_cursor_execute", after)
    try:
        started = time.perf_counter()
        with session_factory(engine).begin() as session:
            compiled = compile_hosts(session, hosts)
            bodies = [json.dumps(c.wire()) for c in compiled.values()]
        took = time.perf_counter() - started
    finally:
        sa.event.remove(engine, "after_cursor_execute", after)
    assert len(compiled) == len(hosts)
    return {
        "hosts": len(hosts),
        **counts,
        "ms": round(took * 1000, 1),
        "ms_per_host_doc": round(took * 1000 / len(hosts), 2),
        "document_bytes_mean": sum(map(len, bodies)) // len(bodies),
    }


def batch_vs_alone(db_url: str, hosts: list[str]) -> dict[str, Any]:
    """The same-run baseline: the wide subnet's hosts compiled one by one (as every poke
    was before batches) and then together, in this process."""
    alone = [rows_per_compile(db_url, [h]) for h in hosts]
    together = rows_per_compile(db_url, hosts)
    per_host_alone = sum(a["ms"] for a in alone) / len(alone)
    return {
        "one_by_one": {
            "statements": sum(a["statements"] for a in alone),
            "rows": sum(a["rows"] for a in alone),
            "ms_per_host_doc": round(per_host_alone, 2),
        },
        "together": together,
        "speedup": round(per_host_alone / together["ms_per_host_doc"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--ports-per-host", type=int, default=20)
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--span", type=int, default=500)
    parser.add_argument("--agent-processes", type=int, default=4)
    parser.add_argument("--heartbeat", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--burst-seconds", type=float, default=10.0)
    parser.add_argument("--restart", type=int, default=100)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("VPCD_BENCH_DATABASE_URL", "postgresql+psycopg://root@127.0.0.1/postgres"),
    )  # fmt: skip
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "fanout.json"))
    args = parser.parse_args()
    if args.span >= args.hosts:  # the wide change puts a port on a host outside the subnet
        parser.error("--span must be smaller than --hosts")
    # A SIGTERM runs the cleanup too: the fleet's processes, the scratch database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    from migrations.runner import upgrade
    from models.db import scratch_database

    with scratch_database(args.database_url, "vpcd_fanout") as db_url:
        upgrade(db_url)
        run = Run(args, db_url, args.redis_url)
        out: dict[str, Any] = {"config": {k: v for k, v in vars(args).items() if "url" not in k}}
        try:
            http = run.start_api()
            t = time.monotonic()
            topo = sf.seed(
                http, ADMIN, db_url, hosts=args.hosts, ports_per_host=args.ports_per_host,
                tenants=args.tenants, span=args.span,
            )  # fmt: skip
            out["seed_s"] = round(time.monotonic() - t, 1)
            run.carriers = {t: sorted(sf.carrying(db_url, s)) for t, s in enumerate(topo.subnets)}
            sizes = [len(c) for c in run.carriers.values()]
            out["topology"] = {
                "ports": args.hosts * args.ports_per_host,
                "hosts_per_subnet_median": sorted(sizes)[len(sizes) // 2],
                "wide_subnet_hosts": sizes[0],
            }
            run.fleet.start_controller(metrics_port=run.metrics_port, concurrency=args.concurrency)
            t = time.monotonic()
            run.fleet.start_agents(topo.hosts, args.agent_processes, args.heartbeat)
            out["cold_start_all_converged_s"] = round(
                sf.wait_converged(db_url, 1800, poll=0.5) - t, 1
            )
            print("cold start", out["cold_start_all_converged_s"], "s", flush=True)
            time.sleep(5)
            tenant = 1
            host = run.carriers[tenant][0]
            out["one_port_create"] = run.one_change(http, topo, tenant, host, "one")
            print("one port create", out["one_port_create"], flush=True)
            outside = next(h for h in topo.hosts if h not in set(run.carriers[0]))
            out["wide_subnet_change"] = run.one_change(http, topo, 0, outside, "wide")
            print("wide subnet change", out["wide_subnet_change"], flush=True)
            out["rows_per_compile"] = {
                "typical_host": rows_per_compile(db_url, [topo.hosts[-1]]),
                "wide_subnet_host": rows_per_compile(db_url, [topo.hosts[0]]),
                "wide_subnet_hosts_batch_vs_alone": batch_vs_alone(db_url, run.carriers[0]),
            }
            print("rows per compile", out["rows_per_compile"], flush=True)
            out["thundering_herd"] = run.restart(topo)
            print("restart", out["thundering_herd"], flush=True)
            out["burst"] = run.burst(http, topo)
            print("burst", out["burst"], flush=True)
            out["goals"] = goals(out)
            print(json.dumps(out["goals"], indent=2))
        finally:
            run.fleet.stop()
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
        print("saved", args.out)


def goals(out: dict[str, Any]) -> dict[str, Any]:
    one, wide, burst = out["one_port_create"], out["wide_subnet_change"], out["burst"]
    return {
        "messages_per_change_equal_affected_hosts": {
            "one_port": [one["messages"], one["affected_hosts"]],
            "wide_subnet": [wide["messages"], wide["affected_hosts"]],
            "met": one["messages"] == one["affected_hosts"]
            and wide["messages"] == wide["affected_hosts"],
        },
        "one_change_to_500_hosts_under_2s": {
            "seconds": wide["time_to_last_report_s"],
            "met": wide["time_to_last_report_s"] < 2.0,
        },
        "burst_of_1000_drains_under_30s": {
            "seconds": burst["drain_s"],
            "met": burst["drain_s"] < 30.0,
        },
    }


if __name__ == "__main__":
    main()
