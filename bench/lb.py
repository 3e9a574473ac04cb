"""Load-balancer benchmark on the sandbox (root; Postgres + Redis, as in production).

1. Throughput: iperf3 through a TCP listener against iperf3 straight to the member.
2. Requests: HTTP requests per second through an HTTP listener against straight to the
   member (sequential, a new connection each, as a client without keep-alive does).
3. Timings: a member create to its first request served through the listener; a member
   failure (its server killed) to haproxy taking it out (stats socket) and to the API
   showing it OFFLINE.
The baselines (straight to the member) are measured in the same run; ratios are printed.

    python bench/lb.py [--seconds 5] [--requests 300] [--out bench/results/lb.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cli import sandbox as sbx
from models.db import scratch_database
from workers.agent import names
from workers.agent.drivers import haproxy
from workers.agent.lbconf import parse_show_stat

NAME = "blb"
IDENTITY = str(Path(__file__).resolve().parents[1] / "tests" / "e2e" / "identity.py")


class Bench:
    def __init__(self, sb: sbx.Sandbox) -> None:
        self.sb = sb
        self.http = httpx.Client(base_url=sb.endpoint, timeout=30)
        admin = {"Authorization": f"Bearer {sb.admin_token}"}
        t = self.http.post("/v1/tenants", json={"name": "bench"}, headers=admin).json()
        tok = self.http.post(f"/v1/tenants/{t['id']}/tokens", headers=admin).json()["token"]
        self.who = {"Authorization": f"Bearer {tok}"}
        vpc = self.post("/v1/vpcs", cidr="10.0.0.0/16")
        self.group = vpc["default_security_group_id"]  # the members' (and the client's)
        self.subnet = self.post("/v1/subnets", vpc_id=vpc["id"], cidr="10.0.1.0/24")
        self.procs: list[subprocess.Popen[str]] = []

    def post(self, path: str, **body: Any) -> dict[str, Any]:
        r = self.http.post(path, json=body, headers=self.who)
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def get(self, path: str) -> dict[str, Any]:
        r = self.http.get(path, headers=self.who)
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def port(self, short: str, netns: str) -> tuple[str, str]:
        """A workload port; (its namespace, its address) once active."""
        port = self.post(
            "/v1/ports", subnet_id=self.subnet["id"], host=self.sb.host(short)["name"], netns=netns
        )
        self.until(f"/v1/ports/{port['id']}", lambda b: b["status"] == "active")
        return f"{self.sb.host(short)['name']}-{netns}", port["ip_address"]

    def until(self, path: str, ok: Any, timeout: float = 120) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            body = self.get(path)
            if ok(body):
                return time.monotonic()
            time.sleep(0.02)
        raise RuntimeError(f"{path} not ready in {timeout}s: {body}")

    def spawn(self, ns: str, *argv: str, ready: bool = False) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv], stdout=subprocess.PIPE, text=True
        )
        self.procs.append(proc)
        if ready:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        return proc

    def run(self, ns: str, *argv: str, timeout: float = 300) -> str:
        done = subprocess.run(
            ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]}: {done.stderr.strip()}")
        return done.stdout

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(timeout=5)


def iperf(b: Bench, client: str, address: str, port: int, seconds: int) -> float:
    out = json.loads(
        b.run(client, "iperf3", "-c", address, "-p", str(port), "-t", str(seconds), "-J")
    )
    return round(out["end"]["sum_received"]["bits_per_second"] / 1e9, 3)


def requests_per_second(b: Bench, client: str, address: str, port: int, n: int) -> float:
    start = time.monotonic()
    counts = json.loads(
        b.run(client, sys.executable, IDENTITY, "count", "http", address, str(port), str(n))
    )
    took = time.monotonic() - start
    assert "!fail" not in counts, counts
    return round(n / took, 1)


def bench(b: Bench, seconds: int, requests: int) -> dict[str, Any]:
    client, _ = b.port("h2", "client")
    m1_ns, m1 = b.port("h3", "member1")
    m2_ns, m2 = b.port("h1", "member2")
    b.spawn(m1_ns, "iperf3", "-s", "-p", "5201")
    b.spawn(m1_ns, sys.executable, IDENTITY, "serve", "http", "8081", "member1", ready=True)
    for ns, name in ((m1_ns, "member1"), (m2_ns, "member2")):
        b.spawn(ns, sys.executable, IDENTITY, "serve", "tcp", "8080", name, ready=True)
    monitor = {"type": "TCP", "delay": 1, "timeout": 1, "max_retries": 2, "max_retries_down": 2}
    lb = b.post(
        "/v1/load-balancers",
        vip_subnet_id=b.subnet["id"],
        listeners=[
            {
                "protocol": "TCP",
                "protocol_port": 5201,
                "default_pool": {
                    "protocol": "TCP",
                    "lb_algorithm": "ROUND_ROBIN",
                    "members": [{"address": m1, "protocol_port": 5201}],
                },
            },
            {
                "protocol": "HTTP",
                "protocol_port": 80,
                "default_pool": {
                    "protocol": "HTTP",
                    "lb_algorithm": "ROUND_ROBIN",
                    "members": [{"address": m1, "protocol_port": 8081}],
                },
            },
            {
                "protocol": "TCP",
                "protocol_port": 8080,
                "default_pool": {
                    "protocol": "TCP",
                    "lb_algorithm": "ROUND_ROBIN",
                    "healthmonitor": monitor,
                    "members": [{"address": m1, "protocol_port": 8080}],
                },
            },
        ],
    )
    vip = lb["vip_address"]
    # the members' group admits the load balancer's traffic, which comes from the VIP
    b.post(
        "/v1/security-group-rules",
        security_group_id=b.group,
        direction="ingress",
        protocol="any",
        remote_cidr=f"{vip}/32",
    )
    b.until(f"/v1/load-balancers/{lb['id']}", lambda x: x["provisioning_status"] == "active")
    time.sleep(3)  # the health checks settle
    out: dict[str, Any] = {}
    direct, through = iperf(b, client, m1, 5201, seconds), iperf(b, client, vip, 5201, seconds)
    out["throughput_gbps"] = {
        "direct": direct,
        "through_lb": through,
        "ratio": round(through / direct, 3),
    }
    direct_rps = requests_per_second(b, client, m1, 8081, requests)
    lb_rps = requests_per_second(b, client, vip, 80, requests)
    out["http_rps"] = {
        "direct": direct_rps,
        "through_lb": lb_rps,
        "ratio": round(lb_rps / direct_rps, 3),
    }

    pool = next(x for x in lb["listeners"] if x["protocol_port"] == 8080)["default_pool_id"]
    t0 = time.monotonic()
    member = b.post(f"/v1/pools/{pool}/members", address=m2, protocol_port=8080)
    served = None
    while time.monotonic() - t0 < 120 and served is None:
        seen = json.loads(b.run(client, sys.executable, IDENTITY, "count", "tcp", vip, "8080", "4"))
        if "member2" in seen:
            served = time.monotonic() - t0
    out["member_create_to_first_request_s"] = round(served or -1, 3)

    # a server haproxy just added is UP at the threshold (one failed check takes it out);
    # let its health fill up first, so the figure is the steady case: fall checks
    time.sleep(5)
    state_dir = b.sb.dir / "agents" / "h1"
    sock = str(haproxy.files(state_dir, names.lb_token(lb["id"]))[1])
    server = next(p for p in b.procs if p.args[-1] == "member2" and "tcp" in p.args)
    server.kill()
    t0 = time.monotonic()
    down = None
    while time.monotonic() - t0 < 60 and down is None:
        if parse_show_stat(haproxy.show_stat(sock)).get(member["id"], "").startswith("DOWN"):
            down = time.monotonic() - t0
        time.sleep(0.05)
    api = (
        b.until(
            f"/v1/pools/{pool}/members/{member['id']}", lambda x: x["operating_status"] == "OFFLINE"
        )
        - t0
    )
    out["member_failure_to_removal_s"] = {
        "haproxy": round(down or -1, 3),
        "api_offline": round(api, 3),
        "expected_haproxy": "at most delay * max_retries_down = 2 s after the first failed check",
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--out", default="bench/results/lb.json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root")
    base = os.environ.get("VPCD_BENCH_DATABASE_URL", "postgresql+psycopg://root@127.0.0.1/postgres")
    redis = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": os.getloadavg()[0],
    }
    with scratch_database(base, "vpcd_bench") as url:
        b = None
        try:
            sb = sbx.up(NAME, 3, resync=30.0, overrides={"DATABASE_URL": url, "REDIS_URL": redis})
            b = Bench(sb)
            result |= bench(b, args.seconds, args.requests)
            print(json.dumps(result, indent=2), flush=True)
        finally:
            if b is not None:
                b.stop()
            sbx.down(NAME)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
