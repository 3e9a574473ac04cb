"""DHCP and DNS benchmark on the sandbox (root; Postgres + Redis, as in production).

1. DHCP: DISCOVER -> ACK, p50/p99 over N runs of `busybox udhcpc -q` in a workload on h2
   (the service runs on h1, across VXLAN). Baseline: `busybox true` through the same
   `ip netns exec` (the process floor included in every run).
2. DNS: query latency p50/p99 from a workload on h3 to the subnet's resolver, timed in
   process. Baseline: the same datagram to a UDP echo server on h1 (same path, no DNS).
3. Names: from `POST /v1/ports` with a dns_name to the name resolving. Baseline: from
   `POST /v1/ports` (bound, static) to that port being active.
4. Reload: a rename resolving with 1000 names in the VPC, against the same with 1 name.

    python bench/dhcp_dns.py [--dhcp 30] [--queries 300] [--names 20] [--scale 1000]
"""

from __future__ import annotations

import argparse
import json
import signal
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

NAME = "bdd"
PROBE = str(Path(__file__).with_name("dns_probe.py"))


def summary(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {"p50_ms": round(pct(ms, 0.5), 2), "p99_ms": round(pct(ms, 0.99), 2), "n": len(ms)}


class Bench:
    def __init__(self, sb: sbx.Sandbox) -> None:
        self.sb = sb
        self.http = httpx.Client(base_url=sb.endpoint, timeout=60)
        admin = {"Authorization": f"Bearer {sb.admin_token}"}
        self.who = tenant(self.http, admin, port_quota=5000)
        self.vpc = self.post("/v1/vpcs", cidr="10.0.0.0/16", name="bench")
        self.subnet = self.post("/v1/subnets", vpc_id=self.vpc["id"], cidr="10.0.0.0/20")
        self.resolver = self.subnet["dhcp_address"]
        self.domain = self.vpc["dns_domain"]
        self.procs: list[subprocess.Popen[str]] = []

    def host(self, short: str) -> str:
        return self.sb.host(short)["name"]

    def post(self, path: str, **body: Any) -> dict[str, Any]:
        r = self.http.post(path, json=body, headers=self.who)
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def port(self, short: str, netns: str, **kw: Any) -> dict[str, Any]:
        p = self.post(
            "/v1/ports", subnet_id=self.subnet["id"], host=self.host(short), netns=netns, **kw
        )
        self.wait_active(p["id"])
        return p

    def wait_active(self, port_id: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.http.get(f"/v1/ports/{port_id}", headers=self.who).json()["status"] == "active":
                return
            time.sleep(0.01)
        raise RuntimeError(f"port {port_id} not active")

    def ns(self, short: str, netns: str) -> str:
        return f"{self.host(short)}-{netns}"

    def run(self, ns: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True)

    def spawn(self, ns: str, *argv: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv], stdout=subprocess.PIPE, text=True
        )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)


def dhcp(b: Bench, runs: int) -> dict[str, Any]:
    b.port("h2", "dhcp", ip_config="dhcp")
    ns = b.ns("h2", "dhcp")
    argv = ["busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "3", "-T", "1"]
    argv += ["-s", "/bin/true"]
    acks, floor = [], []
    for _ in range(runs):
        started = time.monotonic()
        ok = b.run(ns, *argv).returncode == 0
        if ok:
            acks.append(time.monotonic() - started)
        started = time.monotonic()
        b.run(ns, "busybox", "true")
        floor.append(time.monotonic() - started)
    out = {"discover_to_ack": summary(acks), "baseline_process": summary(floor)}
    out["failed"] = runs - len(acks)
    out["net_p50_ms"] = round(out["discover_to_ack"]["p50_ms"] - summary(floor)["p50_ms"], 2)
    return out


def dns(b: Bench, count: int) -> dict[str, Any]:
    b.port("h3", "web", dns_name="web")
    b.port("h3", "probe")
    echo = b.port("h1", "echo")
    server = b.spawn(b.ns("h1", "echo"), sys.executable, PROBE, "echo", "5353")
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    ns = b.ns("h3", "probe")
    name = f"web.{b.domain}"
    b.run(ns, sys.executable, PROBE, "wait", b.resolver, name, "30")

    def measure(where: str) -> list[float]:
        out = b.run(ns, sys.executable, PROBE, "query", where, name, str(count)).stdout
        return [float(x) for x in out.split() if x != "-"]

    answers = measure(b.resolver)
    floor = measure(f"{echo['ip_address']}:5353")
    return {
        "query": summary(answers),
        "baseline_udp_echo": summary(floor),
        "ratio_p50": round(pct(answers, 0.5) / pct(floor, 0.5), 2),
        "unanswered": count - len(answers),
    }


def name_after(b: Bench, ns: str, name: str, change: Any, timeout: float = 60) -> float:
    """Seconds from `change()` (an API call) to `name` resolving, seen from `ns`."""
    waiter = b.spawn(ns, sys.executable, PROBE, "wait", b.resolver, name, str(timeout))
    assert waiter.stdout is not None and waiter.stdout.readline().strip() == "ready"
    started = time.monotonic()
    change()
    line = waiter.stdout.readline().strip()
    waiter.wait(timeout=10)
    if line == "timeout":
        raise RuntimeError(f"{name} did not resolve within {timeout}s")
    return float(line) - started


def names(b: Bench, count: int) -> dict[str, Any]:
    ns = b.ns("h3", "probe")
    resolving, active = [], []
    for i in range(count):
        resolving.append(
            name_after(
                b,
                ns,
                f"n{i}.{b.domain}",
                lambda i=i: b.post("/v1/ports", subnet_id=b.subnet["id"], dns_name=f"n{i}"),
            )
        )
        started = time.monotonic()
        b.port("h2", f"a{i}")
        active.append(time.monotonic() - started)
    return {
        "create_to_resolving": summary(resolving),
        "baseline_create_to_active": summary(active),
        "ratio_p50": round(pct(resolving, 0.5) / pct(active, 0.5), 2),
    }


def renames(b: Bench, port: dict[str, Any], rounds: int) -> list[float]:
    ns = b.ns("h3", "probe")
    out = []
    for i in range(rounds):
        new = f"r{i}x{len(b.procs)}"
        out.append(
            name_after(
                b,
                ns,
                f"{new}.{b.domain}",
                lambda new=new: b.http.patch(
                    f"/v1/ports/{port['id']}", json={"dns_name": new}, headers=b.who
                ).raise_for_status(),
            )
        )
    return out


def reload(b: Bench, scale: int, rounds: int = 10) -> dict[str, Any]:
    renamed = b.post("/v1/ports", subnet_id=b.subnet["id"], dns_name="renamed")
    small = renames(b, renamed, rounds)
    existing = len(b.http.get("/v1/ports", params={"limit": 1000}, headers=b.who).json()["items"])
    with ThreadPoolExecutor(4) as pool:
        list(
            pool.map(
                lambda i: b.post("/v1/ports", subnet_id=b.subnet["id"], dns_name=f"bulk{i}"),
                range(max(0, scale - existing)),
            )
        )
    b.run(
        b.ns("h3", "probe"), sys.executable, PROBE, "wait", b.resolver, f"bulk0.{b.domain}", "120"
    )
    big = renames(b, renamed, rounds)
    return {
        "names_in_vpc": scale,
        "rename_to_resolving": summary(big),
        "baseline_rename_few_names": summary(small),
        "ratio_p50": round(pct(big, 0.5) / pct(small, 0.5), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dhcp", type=int, default=30)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--names", type=int, default=20)
    parser.add_argument("--scale", type=int, default=1000)
    parser.add_argument("--out", default="bench/results/dhcp_dns.json")
    args = parser.parse_args()
    result = machine()
    with sandbox(NAME, resync=30.0) as sb:
        b = Bench(sb)
        try:
            for key, fn in (
                ("dhcp", lambda: dhcp(b, args.dhcp)),
                ("dns", lambda: dns(b, args.queries)),
                ("names", lambda: names(b, args.names)),
                ("reload", lambda: reload(b, args.scale)),
            ):
                result[key] = fn()
                print(key, json.dumps(result[key], indent=2), flush=True)
        finally:
            b.stop()
    save(result, args.out)


if __name__ == "__main__":
    main()
