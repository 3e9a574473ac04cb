"""Convergence benchmark on the sandbox (root; Postgres + Redis, as in production).

1. p50/p99 from `POST /v1/ports` to the first successful ping from a port on another
   host, over N ports spread across hosts h2 and h3 (the prober lives on h1).
2. With M ports on one host (h1): the cold build (ports declared while the agent is
   down, API creates timed apart, then the agent starts), the warm resync after a
   SIGKILL + restart with kernel writes counted (the agent's own count, and kernel
   notifications in h1 and every workload namespace), one change (a new port) while
   the others stay, to active, to first ping and inside the agent, the teardown of all
   of them, the agent's RSS, and the same run's kernel floor per port (`ip -batch`).
Baseline in the same run: the same ping between two ports that already exist (the floor
that ping itself and `ip netns exec` cost). Prints figures and saves them as JSON.

The one change is also broken down stage by stage (bench/stages.py): every process
runs with VPCD_TIMELINE=1 and marks the stages it passes in its log (workers/timeline.py),
and the client's own POST and polling are timed here.

    python bench/converge.py [--ports 60] [--scale 1000] [--changes 7] [--skip warm,teardown]
                             [--poll 0.005] [--out bench/results/converge.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import kernelwatch, stages
from bench.sandbox_run import machine, pct, sandbox, save, tenant
from cli import sandbox as sbx
from workers import timeline

NAME = "bcv"


class Bench:
    def __init__(self, sb: sbx.Sandbox, poll: float = 0.005) -> None:
        self.sb = sb
        self.poll = poll  # seconds between two GETs of a port waiting for `active`
        self.polls: list[tuple[float, float]] = []  # the last wait's GETs: (sent, answered)
        self.http = httpx.Client(base_url=sb.endpoint, timeout=30)
        self.admin = {"Authorization": f"Bearer {sb.admin_token}"}
        self.who = tenant(self.http, self.admin, port_quota=5000)
        vpc = self.post("/v1/vpcs", cidr="10.0.0.0/16")
        self.subnet = self.post("/v1/subnets", vpc_id=vpc["id"], cidr="10.0.0.0/20")

    def post(self, path: str, **body: Any) -> dict[str, Any]:
        r = self.http.post(path, json=body, headers=self.who)
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def host(self, short: str) -> str:
        return self.sb.host(short)["name"]

    def port(self, short: str, netns: str) -> dict[str, Any]:
        return self.post(
            "/v1/ports", subnet_id=self.subnet["id"], host=self.host(short), netns=netns
        )

    def ns(self, short: str, netns: str) -> str:
        return f"{self.host(short)}-{netns}"

    def until_active(self, port_id: str, timeout: float = 120) -> float:
        """Poll until the port is active; returns the monotonic time the GET that saw it
        was sent (its answer reflects the database at about then). Each GET's wall times
        are kept in `polls` (the timeline's last stage)."""
        start = time.monotonic()
        self.polls = []
        while time.monotonic() - start < timeout:
            sent, wall = time.monotonic(), time.time()
            body = self.http.get(f"/v1/ports/{port_id}", headers=self.who).json()
            self.polls.append((wall, time.time()))
            if body["status"] == "active":
                return sent
            if body["status"] == "error":
                raise RuntimeError(body["status_detail"])
            time.sleep(self.poll)
        raise TimeoutError(port_id)

    def fast_arp(self, ns: str) -> None:
        """Make the prober re-ask ARP every 10 ms, so the kernel's 1 s retry backoff for a
        not-yet-existing address does not dominate what is measured."""
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-q",
                "-w",
                "net.ipv4.neigh.eth0.retrans_time_ms=10",
                "net.ipv4.neigh.eth0.mcast_solicit=100",
            ],
            check=True,
        )

    def ping_until(self, ns: str, address: str, deadline: float = 10) -> float:
        """Ping every 10 ms until the first reply; returns the time it came."""
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                ns,
                "ping",
                "-n",
                "-q",
                "-c",
                "1",
                "-i",
                "0.01",
                "-w",
                str(deadline),
                address,
            ],
            check=True,
            capture_output=True,
        )
        return time.monotonic()


def first_ping_latencies(b: Bench, count: int) -> dict[str, Any]:
    prober = b.port("h1", "probe")
    b.until_active(prober["id"])
    b.fast_arp(b.ns("h1", "probe"))
    other = b.port("h2", "base")
    b.until_active(other["id"])
    b.ping_until(b.ns("h1", "probe"), other["ip_address"])
    base = []
    for _ in range(20):
        t0 = time.monotonic()
        b.ping_until(b.ns("h1", "probe"), other["ip_address"])
        base.append((time.monotonic() - t0) * 1000)
    times = []
    for i in range(count):
        host = "h2" if i % 2 == 0 else "h3"
        t0 = time.monotonic()
        p = b.port(host, f"c{i}")
        # the probe's ping may fail until the port exists: retry within one deadline
        while True:
            try:
                done = b.ping_until(b.ns("h1", "probe"), p["ip_address"], deadline=2)
                break
            except subprocess.CalledProcessError:
                if time.monotonic() - t0 > 30:
                    raise
        times.append((done - t0) * 1000)
    return {
        "ports": count,
        "post_to_first_ping_ms": {
            "p50": pct(times, 0.5),
            "p99": pct(times, 0.99),
            "max": max(times),
            "mean": statistics.mean(times),
        },
        "baseline_ping_existing_ms": {"p50": pct(base, 0.5), "p99": pct(base, 0.99)},
        "ratio_p50_to_baseline": pct(times, 0.5) / max(pct(base, 0.5), 0.001),
    }


def host_sync(b: Bench, short: str) -> dict[str, Any] | None:
    for h in b.http.get("/v1/hosts", headers=b.admin, params={"limit": 1000}).json()["items"]:
        if h["name"] == b.host(short):
            return h.get("last_sync")  # type: ignore[no-any-return]
    return None


SYNC_LINE = re.compile(
    r"sync revision=(\d+) full=(\w+) ops=(\d+) writes=(\d+) ms=([\d.]+)"
    r"(?: steps=(\S+) apply=(\S+))?"
)


def agent_syncs(b: Bench, short: str) -> list[dict[str, Any]]:
    """Every sync the host's agent logged (service.py writes one line per sync)."""
    text = (b.sb.dir / f"agent-{short}.log").read_text(errors="replace")
    return [
        {
            "revision": int(r),
            "full": f == "True",
            "ops": int(o),
            "writes": int(w),
            "ms": float(ms),
            "steps_ms": _pairs(steps),
            "apply_ms": _pairs(apply),
        }
        for r, f, o, w, ms, steps, apply in SYNC_LINE.findall(text)
    ]


def _pairs(text: str) -> dict[str, float]:
    """`name:ms,...` (the agent's sync line) as a dict; "" or "-" is empty."""
    return {k: float(v) for k, v in (p.split(":") for p in text.split(",") if ":" in p)}


def host_ports(b: Bench, short: str) -> list[dict[str, Any]]:
    out, token = [], None
    while True:
        params: dict[str, Any] = {"host": b.host(short), "limit": 1000}
        if token:
            params["page_token"] = token
        page = b.http.get("/v1/ports", headers=b.who, params=params).json()
        out += page["items"]
        token = page.get("next_page_token")
        if not token:
            return out


def until_all_active(b: Bench, short: str, count: int, timeout: float = 600) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        ports = host_ports(b, short)
        if len(ports) >= count and all(p["status"] == "active" for p in ports):
            return time.monotonic()
        time.sleep(0.1)
    raise TimeoutError(f"{short}: not all {count} ports active")


def agent_pid(b: Bench, short: str) -> int:
    state = sbx.Sandbox.load(b.sb.name)
    assert state is not None
    return state.pids[f"agent-{short}"]


def kill_agent(b: Bench, short: str) -> None:
    pid = agent_pid(b, short)
    os.killpg(pid, signal.SIGKILL)
    while sbx.alive(pid):
        time.sleep(0.01)


def purge_queue(b: Bench, short: str) -> int:
    """Drop the documents queued for a dead agent: each is a whole document (level-
    triggered), so the one its restart brings is all it needs; the backlog would only
    measure how fast it skips stale revisions."""
    client = redis.Redis.from_url(b.sb.env["REDIS_URL"])
    queue = f"{b.sb.env['VPCD_BUS_NAMESPACE']}.host.{b.host(short)}"
    keys = [k for k in client.scan_iter(match=f"{queue}*") if k.decode().startswith(queue)]
    return int(client.delete(*keys)) if keys else 0


def control_idle(b: Bench, timeout: float = 600) -> float:
    """Wait until the controller's queue has been empty for a second; returns the wait."""
    client = redis.Redis.from_url(b.sb.env["REDIS_URL"])
    queue = f"{b.sb.env['VPCD_BUS_NAMESPACE']}.control"
    start, quiet = time.monotonic(), None
    while time.monotonic() - start < timeout:
        if client.llen(queue) == 0:
            quiet = quiet or time.monotonic()
            if time.monotonic() - quiet > 1.0:
                break
        else:
            quiet = None
        time.sleep(0.05)
    return time.monotonic() - start


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def until_synced(
    b: Bench, short: str, after: int, full: bool, timeout: float = 300
) -> dict[str, Any]:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        syncs = agent_syncs(b, short)[after:]
        done = [s for s in syncs if s["full"] == full]
        if done:
            return done[0]
        time.sleep(0.02)
    raise TimeoutError(f"{short}: no sync logged")


def workload_netns(b: Bench, short: str) -> list[str]:
    prefix = f"{b.host(short)}-"
    return sorted(n for n in os.listdir("/run/netns") if n.startswith(prefix))


def sandbox_marks(b: Bench) -> list[timeline.Mark]:
    """Every stage mark the sandbox's processes logged so far."""
    marks: list[timeline.Mark] = []
    for log in sorted(b.sb.dir.glob("*.log")):
        marks += timeline.parse(log.read_text(errors="replace"))
    return marks


CPU_OF = ("api", "controller", "agent-h1", "agent-h2")  # the processes a change runs through


def cpu_ns(b: Bench) -> dict[str, int]:
    """CPU time each sandbox process (all its threads, not its children) has used so far,
    in ns (schedstat): per change, a figure the machine's load does not stretch."""
    state = sbx.Sandbox.load(b.sb.name)
    assert state is not None
    out = {}
    for label in CPU_OF:
        total = 0
        for task in Path(f"/proc/{state.pids[label]}/task").glob("*/schedstat"):
            try:
                total += int(task.read_text().split()[0])
            except (OSError, ValueError, IndexError):  # a thread that just ended
                continue
        out[label] = total
    return out


def print_timeline(summary: dict[str, Any]) -> None:
    print("one change, stage by stage (p50 ms):")
    for span, figures in summary.items():
        print(f"  {figures['p50_ms']:8.1f}  {span}")


def scale(
    b: Bench, count: int, changes: int = 7, skip: frozenset[str] = frozenset()
) -> dict[str, Any]:
    out: dict[str, Any] = {"ports_on_host": count}
    # Cold build: the ports are declared while h1's agent is down, then it starts.
    kill_agent(b, "h1")
    t0 = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: b.port("h1", f"s{i}"), range(count)))
    out["api_create_all_s"] = time.monotonic() - t0
    out["controller_backlog_drain_s"] = control_idle(b)
    out["stale_documents_purged"] = purge_queue(b, "h1")
    logged = len(agent_syncs(b, "h1"))
    start = time.monotonic()
    sbx.respawn(b.sb.name, "agent-h1")
    done = until_all_active(b, "h1", count)
    cold = until_synced(b, "h1", logged, full=True)
    out["cold_build"] = {
        "agent_start_to_all_active_s": done - start,
        "agent_sync_ms": cold["ms"],
        "kernel_writes": cold["writes"],
        "goal_s": 10,
    }
    out["agent_rss_mb_after_build"] = rss_mb(agent_pid(b, "h1"))
    print(json.dumps(out, indent=2), flush=True)
    if "warm" not in skip:
        out["warm_resync"] = warm_resync(b)
        out["agent_rss_mb_after_resync"] = rss_mb(agent_pid(b, "h1"))
        print(json.dumps(out["warm_resync"], indent=2), flush=True)
    out["one_change"] = one_change(b, changes)
    print(json.dumps(out["one_change"], indent=2), flush=True)
    print_timeline(out["one_change"]["timeline"])
    if "teardown" not in skip:
        out["teardown"] = teardown(b)
        out["agent_rss_mb_after_teardown"] = rss_mb(agent_pid(b, "h1"))
        out["kernel_floor_same_run"] = kernelwatch.floor(200)
        floor_s = out["kernel_floor_same_run"]["per_port_ms"] * count / 1000
        out["cold_build"]["ratio_agent_sync_to_kernel_floor"] = cold["ms"] / 1000 / floor_s
    return out


def warm_resync(b: Bench) -> dict[str, Any]:
    """SIGKILL, restart, everything in place: zero kernel writes."""
    kill_agent(b, "h1")
    watch = kernelwatch.Watch([b.host("h1"), *workload_netns(b, "h1")])
    logged = len(agent_syncs(b, "h1"))
    before = host_sync(b, "h1")
    restart = time.monotonic()
    sbx.respawn(b.sb.name, "agent-h1")
    warm = until_synced(b, "h1", logged, full=True)
    while host_sync(b, "h1") == before and time.monotonic() - restart < 60:
        time.sleep(0.02)
    reported = time.monotonic() - restart
    seen = watch.count()
    watch.close()
    return {
        "restart_to_full_resync_reported_s": reported,
        "agent_sync_ms": warm["ms"],
        "kernel_writes_agent": warm["writes"],
        "kernel_events_seen": seen,
        "goal_s": 2,
        "goal_writes": 0,
    }


def one_change(b: Bench, changes: int) -> dict[str, Any]:
    """A new port on h1 while the others stay, pinged from h2: to active (stage by
    stage), to first ping, and inside the agent."""
    peer = b.port("h2", "peer")
    b.until_active(peer["id"])
    b.fast_arp(b.ns("h2", "peer"))
    actives, pings, syncs, spans, polls, raw, steps, cpu = [], [], [], [], [], [], [], []
    for i in range(changes):
        time.sleep(1.0)  # let the peer's FDB updates settle: measure one change alone
        logged = len(agent_syncs(b, "h1"))
        cpu_before = cpu_ns(b)
        t1, posted = time.monotonic(), time.time()
        extra = b.port("h1", f"extra{i}")
        returned = time.time()
        actives.append((b.until_active(extra["id"]) - t1) * 1000)
        cpu_after = cpu_ns(b)
        cpu.append({k: (cpu_after[k] - cpu_before[k]) / 1e6 for k in CPU_OF})
        seen = b.polls[-1][1]  # the wall time the answer saying `active` came
        marks = sandbox_marks(b)
        line = stages.chain(marks, b.host("h1"), posted, seen)
        spans.append(stages.durations(line))
        raw.append(stages.relative(marks, posted, seen))
        spans[-1][stages.POST_ANSWERED] = (returned - posted) * 1000
        gets = [(done - sent) * 1000 for sent, done in b.polls]
        polls.append({"gets": len(gets), "get_ms_p50": round(statistics.median(gets), 2)})
        while True:
            try:
                pinged = b.ping_until(b.ns("h2", "peer"), extra["ip_address"], deadline=2)
                break
            except subprocess.CalledProcessError:
                if time.monotonic() - t1 > 30:
                    raise
        pings.append((pinged - t1) * 1000)
        done = agent_syncs(b, "h1")[logged:]
        syncs.append([s["ms"] for s in done])
        steps.append([{**s["steps_ms"], **s["apply_ms"]} for s in done])
    applied = [ms for batch in syncs for ms in batch]
    return {
        "post_to_active_ms": {"p50": statistics.median(actives), "all": actives, "goal_p50": 150},
        "post_to_first_ping_ms": {"p50": statistics.median(pings), "all": pings},
        "agent_sync_ms": {"p50": statistics.median(applied), "all": syncs, "goal": 50},
        "agent_steps_ms": steps,
        "timeline": stages.summary(spans),
        # CPU each process spent from the POST to `active` (the API's includes the GETs)
        "cpu_ms_per_change": {
            k: {"p50": round(statistics.median(c[k] for c in cpu), 1), "all": [c[k] for c in cpu]}
            for k in CPU_OF
        },
        "client_polls": {"interval_ms": b.poll * 1000, "per_change": polls},
        "marks_ms_after_post": raw,
    }


def teardown(b: Bench) -> dict[str, Any]:
    """The ports are deleted while the agent is down, then it starts."""
    kill_agent(b, "h1")
    ports = host_ports(b, "h1")
    t0 = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: b.http.delete(f"/v1/ports/{p['id']}", headers=b.who), ports))
    deleted_s = time.monotonic() - t0
    control_idle(b)
    purge_queue(b, "h1")
    logged = len(agent_syncs(b, "h1"))
    start = time.monotonic()
    sbx.respawn(b.sb.name, "agent-h1")
    gone = until_synced(b, "h1", logged, full=True)
    theirs = {f"{b.host('h1')}-{p['netns']}" for p in ports}  # not the DHCP service's
    while theirs & set(workload_netns(b, "h1")) and time.monotonic() - start < 120:
        time.sleep(0.05)
    return {
        "ports": len(ports),
        "api_delete_all_s": deleted_s,
        "agent_start_to_no_netns_s": time.monotonic() - start,
        "agent_sync_ms": gone["ms"],
        "goal_s": 5,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", type=int, default=60, help="first-ping samples (0: skip)")
    parser.add_argument("--scale", type=int, default=1000, help="ports on h1 (0: skip)")
    parser.add_argument("--changes", type=int, default=7, help="one-change samples")
    parser.add_argument(
        "--skip", default="", help="comma-separated scale phases to skip: warm, teardown"
    )
    parser.add_argument("--poll", type=float, default=0.005, help="seconds between GETs")
    parser.add_argument("--out", default="bench/results/converge.json")
    args = parser.parse_args()
    skip = frozenset(p for p in args.skip.split(",") if p)
    result = machine()
    result["load_average_at_start"] = os.getloadavg()
    os.environ["VPCD_TIMELINE"] = "1"  # every sandbox process marks its stages
    with sandbox(NAME, resync=300.0) as sb:
        b = Bench(sb, poll=args.poll)
        if args.ports:
            result["first_ping"] = first_ping_latencies(b, args.ports)
            print(json.dumps(result["first_ping"], indent=2), flush=True)
        if args.scale:
            result["scale"] = scale(b, args.scale, args.changes, skip)
            print(json.dumps(result["scale"], indent=2), flush=True)
    result["load_average_at_end"] = os.getloadavg()
    save(result, args.out)


if __name__ == "__main__":
    main()
