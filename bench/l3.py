"""L3 benchmark on the sandbox (root; Postgres + Redis, as in production).

1. Floating IP association: from the association PATCH to the first answer `outside`
   gets through the FIP, p50/p99 over N associations (goal p50 < 300 ms, p99 < 1 s).
   Baseline in the same run: one probe round trip to a workload already associated
   (what the prober itself costs).
2. Failover: from `vpcd sandbox fail` of the router's host to the first answer from
   `outside` to a workload behind it, over R runs (goal p50 < heartbeat timeout + 2 s).
3. SNAT throughput: iperf3 from a workload to `outside` through SNAT, against the same
   path routed without NAT (SNAT off, `outside` routing the subnet back via the router),
   alternated in the same run; the ratio of medians (goal >= 0.9).

Every packet stays inside the sandbox's namespaces. Prints figures, saves JSON.

    python bench/l3.py [--associations 50] [--failovers 5] [--out bench/results/l3.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.sandbox_run import machine, pct, sandbox, save, tenant
from cli import sandbox as sbx
from models.host import HEARTBEAT_TIMEOUT
from tests.e2e.nsclient import ask_in
from workers.agent import names

NAME = "bl3"
PORT = 7070
ECHO = str(Path(__file__).resolve().parents[1] / "tests" / "e2e" / "echo.py")
OUTSIDE_IP = "203.0.113.1"


def summary(values: list[float]) -> dict[str, Any]:
    return {"p50": pct(values, 0.5), "p99": pct(values, 0.99), "n": len(values), "all": values}


class Bench:
    def __init__(self, sb: sbx.Sandbox) -> None:
        self.sb = sb
        self.outside = f"{sb.name}-outside"
        self.http = httpx.Client(base_url=sb.endpoint, timeout=30)
        self.admin = {"Authorization": f"Bearer {sb.admin_token}"}
        self.who = tenant(self.http, self.admin)
        self.procs: list[subprocess.Popen[str]] = []
        self.ext = self.post(
            "/v1/external-networks",
            self.admin,
            cidr="203.0.113.0/24",
            gateway_ip=OUTSIDE_IP,
            allocation_pools=[{"start": "203.0.113.10", "end": "203.0.113.250"}],
        )
        vpc = self.post("/v1/vpcs", self.who, cidr="10.60.0.0/16")
        self.subnet = self.post("/v1/subnets", self.who, vpc_id=vpc["id"], cidr="10.60.1.0/24")
        self.router = self.post(
            "/v1/routers", self.who, vpc_id=vpc["id"], external_network_id=self.ext["id"]
        )
        self.post(
            f"/v1/routers/{self.router['id']}/interfaces", self.who, subnet_id=self.subnet["id"]
        )
        self.until(f"/v1/routers/{self.router['id']}", "active")
        self.serve(self.outside, "outside")

    def post(self, path: str, who: dict[str, str], **body: Any) -> dict[str, Any]:
        r = self.http.post(path, json=body, headers=who)
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def until(self, path: str, status: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            body = self.http.get(path, headers=self.admin).json()
            if body["status"] == status:
                return body  # type: ignore[no-any-return]
            if time.monotonic() > deadline:
                raise RuntimeError(f"{path} not {status}: {body}")
            time.sleep(0.05)

    def serve(self, ns: str, name: str) -> None:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, ECHO, "identity", str(PORT), name],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def workload(self, short: str, netns: str) -> tuple[dict[str, Any], str]:
        host = self.sb.host(short)["name"]
        port = self.post("/v1/ports", self.who, subnet_id=self.subnet["id"], host=host, netns=netns)
        self.until(f"/v1/ports/{port['id']}", "active")
        ns = f"{host}-{netns}"
        self.serve(ns, netns)
        return port, ns

    def answer_from(self, ns: str, address: str, want: str, limit: float) -> float:
        """Seconds until `want` answers `address` from `ns` (probes of 50 ms)."""
        start = time.monotonic()
        while time.monotonic() - start < limit:
            got = ask_in(ns, address, PORT, timeout=0.05)
            if got is not None and got.split(" ")[0] == want:
                return time.monotonic()
        raise RuntimeError(f"no answer from {want} at {address} in {limit}s")

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(timeout=5)


def associations(b: Bench, count: int) -> dict[str, Any]:
    ports = [b.workload("h3", "fa"), b.workload("h3", "fb")]
    fip = b.post("/v1/floating-ips", b.who, external_network_id=b.ext["id"])
    url = f"/v1/floating-ips/{fip['id']}"
    samples: list[float] = []
    for i in range(count):
        port, ns = ports[i % 2]
        t0 = time.monotonic()
        b.http.patch(url, json={"port_id": port["id"]}, headers=b.who).raise_for_status()
        samples.append(
            (b.answer_from(b.outside, fip["address"], ns.rsplit("-", 1)[1], 10) - t0) * 1000
        )
        b.until(url, "active")
        b.http.patch(url, json={"port_id": None}, headers=b.who).raise_for_status()
        deadline = time.monotonic() + 10
        while ask_in(b.outside, fip["address"], PORT, timeout=0.1) is not None:
            if time.monotonic() > deadline:
                raise RuntimeError("the FIP still answers after disassociation")
    baseline = []
    b.http.patch(url, json={"port_id": ports[0][0]["id"]}, headers=b.who).raise_for_status()
    b.answer_from(b.outside, fip["address"], "fa", 10)
    for _ in range(20):
        t0 = time.monotonic()
        b.answer_from(b.outside, fip["address"], "fa", 10)
        baseline.append((time.monotonic() - t0) * 1000)
    b.http.delete(url, headers=b.who).raise_for_status()
    out = {"patch_to_first_answer_ms": summary(samples), "probe_round_trip_ms": summary(baseline)}
    out["goal"] = {"p50_ms": 300, "p99_ms": 1000}
    return out


def failover(b: Bench, runs: int) -> dict[str, Any]:
    _, ns = b.workload("h3", "fo")
    url = f"/v1/routers/{b.router['id']}"
    times: list[float] = []
    for _ in range(runs):
        b.answer_from(ns, OUTSIDE_IP, "outside", 60)
        old = b.http.get(url, headers=b.admin).json()["host"]
        short = next(h["short"] for h in b.sb.hosts if h["name"] == old)
        t0 = time.monotonic()
        sbx.fail(b.sb.name, short)
        try:
            times.append(b.answer_from(ns, OUTSIDE_IP, "outside", 180) - t0)
        finally:
            sbx.heal(b.sb.name, short)
        stale = names.router_netns(f"{old}-", b.router["id"])
        deadline = time.monotonic() + 120
        while stale in sbx.existing_namespaces():  # the healed host removes its old copy
            if time.monotonic() > deadline:
                raise RuntimeError(f"{stale} still there after heal")
            time.sleep(0.5)
        b.until(url, "active")
        print(f"failover from {old}: {times[-1]:.1f}s", flush=True)
    timeout = HEARTBEAT_TIMEOUT.total_seconds()
    return {"fail_to_first_answer_s": summary(times), "goal_p50_s": timeout + 2}


def iperf(ns: str, seconds: int) -> float:
    done = subprocess.run(
        ["ip", "netns", "exec", ns, "iperf3", "-c", OUTSIDE_IP, "-t", str(seconds), "-J"],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    )
    return float(json.loads(done.stdout)["end"]["sum_received"]["bits_per_second"])


def throughput(b: Bench, rounds: int, seconds: int) -> dict[str, Any]:
    _, ns = b.workload("h3", "tp")
    server = subprocess.Popen(
        ["ip", "netns", "exec", b.outside, "iperf3", "-s"], stdout=subprocess.DEVNULL
    )
    b.procs.append(server)
    time.sleep(0.5)
    url = f"/v1/routers/{b.router['id']}"
    cidr = b.subnet["cidr"]
    snat: list[float] = []
    routed: list[float] = []
    try:
        for i in range(rounds):  # alternating which goes first: drift hits both alike
            for nat in (True, False) if i % 2 == 0 else (False, True):
                b.http.patch(url, json={"enable_snat": nat}, headers=b.who).raise_for_status()
                b.until(url, "active")
                if nat:
                    subprocess.run(
                        ["ip", "-n", b.outside, "route", "del", cidr], capture_output=True
                    )
                    snat.append(iperf(ns, seconds))
                else:
                    gw = b.http.get(url, headers=b.admin).json()["external_ip"]
                    route = ["ip", "-n", b.outside, "route", "replace", cidr, "via", gw]
                    subprocess.run(route, check=True)
                    routed.append(iperf(ns, seconds))
    finally:
        subprocess.run(["ip", "-n", b.outside, "route", "del", cidr], capture_output=True)
        b.http.patch(url, json={"enable_snat": True}, headers=b.who).raise_for_status()
        b.until(url, "active")
    ratio = statistics.median(snat) / statistics.median(routed)
    gbit = 1e9
    return {
        "snat_gbit_s": [x / gbit for x in snat],
        "routed_gbit_s": [x / gbit for x in routed],
        "ratio_snat_to_routed": ratio,
        "goal_ratio": 0.9,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--associations", type=int, default=50)
    parser.add_argument("--failovers", type=int, default=5)
    parser.add_argument("--iperf-rounds", type=int, default=6)
    parser.add_argument("--iperf-seconds", type=int, default=4)
    parser.add_argument("--out", default="bench/results/l3.json")
    args = parser.parse_args()
    result = machine()
    with sandbox(NAME, resync=30.0, network_hosts=2, database="vpcd_bench_l3") as sb:
        b = Bench(sb)
        try:
            for key, count, run in (
                ("fip_association", args.associations, lambda: associations(b, args.associations)),
                (
                    "snat_throughput",
                    args.iperf_rounds,
                    lambda: throughput(b, args.iperf_rounds, args.iperf_seconds),
                ),
                ("failover", args.failovers, lambda: failover(b, args.failovers)),
            ):
                if not count:  # 0 skips a part
                    continue
                result[key] = run()
                print(key, json.dumps(result[key], indent=2), flush=True)
        finally:
            b.close()
    save(result, args.out)


if __name__ == "__main__":
    main()
