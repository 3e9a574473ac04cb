"""Convergence benchmark on the sandbox (root; Postgres + Redis, as in production).

1. p50/p99 from `POST /v1/ports` to the first successful ping from a port on another
   host, over N ports spread across hosts h2 and h3 (the prober lives on h1).
2. With M ports on one host: the agent's full resync after a SIGKILL + restart, and one
   port change (a new port) while the other M-1 stay, to active and to first ping.
Baseline in the same run: the same ping between two ports that already exist (the floor
that ping itself and `ip netns exec` cost). Prints figures and saves them as JSON.

    python bench/converge.py [--ports 60] [--scale 1000] [--out bench/results/converge.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.sandbox_run import machine, pct, sandbox, save, tenant
from cli import sandbox as sbx

NAME = "bcv"


class Bench:
    def __init__(self, sb: sbx.Sandbox) -> None:
        self.sb = sb
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
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            body = self.http.get(f"/v1/ports/{port_id}", headers=self.who).json()
            if body["status"] == "active":
                return time.monotonic()
            if body["status"] == "error":
                raise RuntimeError(body["status_detail"])
            time.sleep(0.005)
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


def scale(b: Bench, count: int) -> dict[str, Any]:
    t0 = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        ports = list(pool.map(lambda i: b.port("h1", f"s{i}"), range(count)))
    created = time.monotonic() - t0
    for p in ports:
        b.until_active(p["id"], timeout=600)
    build = time.monotonic() - t0
    # full resync after SIGKILL + restart of h1's agent
    state = sbx.Sandbox.load(b.sb.name)
    assert state is not None
    pid = state.pids["agent-h1"]
    os.killpg(pid, signal.SIGKILL)
    while sbx.alive(pid):
        time.sleep(0.01)
    before = host_sync(b, "h1")
    restart = time.monotonic()
    sbx.respawn(b.sb.name, "agent-h1")
    sync = None
    while time.monotonic() - restart < 300:
        sync = host_sync(b, "h1")
        if sync and sync != before and sync["full"]:
            break
        time.sleep(0.05)
    resync_wall = time.monotonic() - restart
    # one change while the others stay: a new port on h1, pinged from h2
    peer = b.port("h2", "peer")
    b.until_active(peer["id"])
    b.fast_arp(b.ns("h2", "peer"))
    actives, pings, syncs = [], [], []
    for i in range(5):
        time.sleep(1.0)  # let the peer's FDB updates settle: measure one change alone
        t1 = time.monotonic()
        extra = b.port("h1", f"extra{i}")
        actives.append((b.until_active(extra["id"]) - t1) * 1000)
        while True:
            try:
                pinged = b.ping_until(b.ns("h2", "peer"), extra["ip_address"], deadline=2)
                break
            except subprocess.CalledProcessError:
                if time.monotonic() - t1 > 30:
                    raise
        pings.append((pinged - t1) * 1000)
        sync_now = host_sync(b, "h1")
        syncs.append(sync_now["duration_ms"] if sync_now else None)
    return {
        "ports_on_host": count,
        "create_all_s": created,
        "create_to_all_active_s": build,
        "restart_to_full_resync_reported_s": resync_wall,
        "agent_full_resync_ms": sync["duration_ms"] if sync else None,
        "one_change_post_to_active_ms": {"median": statistics.median(actives), "all": actives},
        "one_change_post_to_first_ping_ms": {"median": statistics.median(pings), "all": pings},
        "one_change_agent_sync_ms": syncs,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", type=int, default=60)
    parser.add_argument("--scale", type=int, default=1000)
    parser.add_argument("--out", default="bench/results/converge.json")
    args = parser.parse_args()
    result = machine()
    with sandbox(NAME, resync=300.0) as sb:
        b = Bench(sb)
        result["first_ping"] = first_ping_latencies(b, args.ports)
        print(json.dumps(result["first_ping"], indent=2), flush=True)
        if args.scale:
            result["scale"] = scale(b, args.scale)
            print(json.dumps(result["scale"], indent=2), flush=True)
    save(result, args.out)


if __name__ == "__main__":
    main()
