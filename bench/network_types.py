"""Network types side by side (issue 12): iperf3 TCP throughput (1 and 4 streams) and ping
RTT p50/p99 between two hosts, in one run, for

- bare: host to host on the underlay (the reference);
- vxlan: a bridge + VXLAN device per host (VNI, learning off, static fdb), MTU 1450;
- routed: Calico-style, a veth without bridge, proxy ARP and a /32 route on the host
  side, the workload's default route via 169.254.1.1, a /32 route to the remote port via
  the remote host's underlay address; full MTU;
- flat: a macvlan (bridge mode) child of each host's provider interface, full MTU;
- bridge: two workloads on one host's bridge (no host crossing).

The hosts are network namespaces on a private fabric (underlay bridge, provider bridge)
built here with iproute2; every measured path but `bare` is made by vpcd's own agent
(workers/agent, the code the sandbox runs) from a hand-written host document, and the
agent removes it again afterwards (then every namespace of this run goes, also on
failure). The same-host bridge is a vpcd subnet's bridge, so its ports have the tenant
MTU (1450) like vxlan's; routed and flat ports have the full underlay MTU. Rounds
alternate the types so a load change on the machine hits all of them alike; figures are
medians over rounds. Root only; no packet leaves the namespaces made here.

    python bench/network_types.py [--rounds 3] [--seconds 3] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from workers.agent.agent import Agent
from workers.protocol import (
    HostState,
    PortState,
    RemotePort,
    SubnetState,
    TypedNetworkState,
)

PREFIX = f"vbnt{os.getpid() % 100000}"
UNDERLAY = "198.18.0"
TYPES = ("bare", "vxlan", "routed", "flat", "bridge")
IPERF_PORT = 5201
GOALS = {"routed": 0.95, "flat": 0.95, "vxlan": 0.80}


def sh(*args: str, ns: str | None = None, check: bool = True) -> str:
    cmd = ["ip", "netns", "exec", ns, *args] if ns else list(args)
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r.stdout


def ip(ns: str, *args: str) -> None:
    sh("ip", "-n", ns, *args)


def _port(pid: str, sid: str, ip: str, mac: str, prefixlen: int = 24) -> PortState:
    return PortState(
        id=f"bench-{pid}", revision=1, subnet_id=sid, netns=pid, mac=mac, ip=ip,
        prefixlen=prefixlen,
    )  # fmt: skip


def host_document(host: str, i: int, revision: int) -> HostState:
    """Host i's document (i = 1 or 2): a VXLAN subnet across both hosts, a routed and a
    flat subnet with one port per host, and on host 1 a subnet with two local ports (the
    same-host bridge). No security groups: every type is measured unfiltered alike."""
    other = 3 - i
    vtep, peer = f"{UNDERLAY}.{10 + i}", f"{UNDERLAY}.{10 + other}"
    vx = SubnetState(
        id="bench-vx", revision=1, vni=42, cidr="10.42.0.0/24", gateway_ip="10.42.0.1",
        remote_vteps=[peer],
        remote_ports=[RemotePort(mac=f"02:00:00:00:42:0{other}", ip=f"10.42.0.{10 + other}",
                                 vtep_ip=peer)],
    )  # fmt: skip
    subnets, ports = [vx], [_port("vx", vx.id, f"10.42.0.{10 + i}", f"02:00:00:00:42:0{i}")]
    if i == 1:
        sb = SubnetState(id="bench-sb", revision=1, vni=99, cidr="10.99.0.0/24",
                         gateway_ip="10.99.0.1")  # fmt: skip
        subnets.append(sb)
        ports += [_port(f"sb{n}", sb.id, f"10.99.0.1{n}", f"02:00:00:00:99:0{n}") for n in (1, 2)]
    routed = TypedNetworkState(
        id="bench-rt", revision=1, network_type="routed", cidr="10.64.0.0/24",
        gateway_ip="10.64.0.1",
        ports=[_port("rt", "bench-rt", f"10.64.0.{10 + i}", f"02:00:00:00:64:0{i}")],
        remote_ports=[RemotePort(mac=f"02:00:00:00:64:0{other}", ip=f"10.64.0.{10 + other}",
                                 vtep_ip=peer)],
    )  # fmt: skip
    flat = TypedNetworkState(
        id="bench-fl", revision=1, network_type="flat", cidr="192.168.50.0/24",
        gateway_ip="192.168.50.1", physical_network="provider",
        ports=[_port("fl", "bench-fl", f"192.168.50.{10 + i}", f"02:00:00:00:50:0{i}")],
    )  # fmt: skip
    return HostState(
        host=host, revision=revision, vtep_ip=vtep, subnets=subnets, ports=ports,
        typed_networks=[routed, flat],
    )  # fmt: skip


class Fabric:
    """Namespaces: fabric (bridges `underlay` and `provider`), hosts h1/h2, workloads."""

    def __init__(self) -> None:
        self.made: list[str] = []
        self.servers: list[subprocess.Popen[str]] = []
        self.paths: dict[str, tuple[str, str]] = {}  # type -> (client netns, server address)
        self.agents: dict[str, Agent] = {}
        self.servers_in: dict[str, str] = {}
        self.state_dir: Path | None = None

    def netns(self, short: str) -> str:
        name = f"{PREFIX}-{short}"
        self.made.append(name)
        sh("ip", "netns", "add", name)
        ip(name, "link", "set", "lo", "up")
        return name

    def build(self) -> None:
        fab = self.netns("fabric")
        for br in ("underlay", "provider"):
            ip(fab, "link", "add", br, "type", "bridge")
            ip(fab, "link", "set", br, "up")
        hosts = {}
        for i in (1, 2):
            h = self.netns(f"h{i}")
            hosts[i] = h
            self._plug(fab, "underlay", f"u{i}", h, "vtep0", 1500)
            ip(h, "addr", "add", f"{UNDERLAY}.{10 + i}/24", "dev", "vtep0")
            self._plug(fab, "provider", f"p{i}", h, "phys0", 1500)
            sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=h)
        self.paths["bare"] = (hosts[1], f"{UNDERLAY}.12")
        self._agents(hosts)

    def _plug(self, a: str, bridge: str, end: str, b: str, inner: str, mtu: int) -> None:
        ip(a, "link", "add", end, "mtu", str(mtu), "type", "veth", "peer", "name", inner,
           "netns", b, "mtu", str(mtu))  # fmt: skip
        if bridge:
            ip(a, "link", "set", end, "master", bridge)
        ip(a, "link", "set", end, "up")
        ip(b, "link", "set", inner, "up")

    def _agents(self, hosts: dict[int, str]) -> None:
        """vxlan, routed, flat and the same-host bridge, all made by vpcd's agent from a
        host document (the one each host would get from the controller)."""
        self.state_dir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-"))
        for i, h in hosts.items():
            agent = Agent(
                h, h, f"{h}-", self.state_dir / h, physical_interfaces={"provider": "phys0"}
            )
            self.agents[h] = agent
            report = agent.sync(host_document(h, i, 1))
            if not report.ok:
                raise RuntimeError(f"{h}: {report.detail}: {report.results}")
        h1, h2 = hosts[1], hosts[2]
        self.paths["vxlan"] = (f"{h1}-vx", "10.42.0.12")
        self.paths["routed"] = (f"{h1}-rt", "10.64.0.12")
        self.paths["flat"] = (f"{h1}-fl", "192.168.50.12")
        self.paths["bridge"] = (f"{h1}-sb1", "10.99.0.12")
        self.servers_in = {
            "bare": h2, "vxlan": f"{h2}-vx", "routed": f"{h2}-rt", "flat": f"{h2}-fl",
            "bridge": f"{h1}-sb2",
        }  # fmt: skip

    def server_netns(self, kind: str) -> str:
        return self.servers_in[kind]

    def start_servers(self) -> None:
        for kind in TYPES:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.server_netns(kind), "iperf3", "-s", "-p",
                 str(IPERF_PORT)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            self.servers.append(proc)

    def teardown(self) -> None:
        for proc in self.servers:  # only what this run started
            proc.terminate()
        for proc in self.servers:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        for h, agent in self.agents.items():  # the agent removes what it made
            try:
                agent.sync(HostState(host=h, revision=2, vtep_ip=""), full=True)
            finally:
                agent.close()
        for name in reversed(self.made):
            sh("ip", "netns", "del", name, check=False)
        left = sh("ip", "netns", "list").split()
        for name in [n for n in left if n.startswith(f"{PREFIX}-")]:  # ours by prefix
            sh("ip", "netns", "del", name, check=False)
        if self.state_dir is not None:
            shutil.rmtree(self.state_dir, ignore_errors=True)


@contextmanager
def fabric() -> Iterator[Fabric]:
    f = Fabric()
    try:
        f.build()
        f.start_servers()
        yield f
    finally:
        f.teardown()


def wait_reachable(client: str, address: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run(["ip", "netns", "exec", client, "ping", "-c1", "-W1", address],
                           capture_output=True)  # fmt: skip
        if r.returncode == 0:
            return
    raise RuntimeError(f"{address} unreachable from {client}")


def iperf(client: str, address: str, streams: int, seconds: float) -> float:
    """Gbit/s received, retried while the server is still starting."""
    deadline = time.monotonic() + 20
    while True:
        r = subprocess.run(
            ["ip", "netns", "exec", client, "iperf3", "-c", address, "-p", str(IPERF_PORT),
             "-P", str(streams), "-t", str(seconds), "-J"],
            capture_output=True, text=True,
        )  # fmt: skip
        if r.returncode == 0:
            return float(json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"]) / 1e9
        if time.monotonic() > deadline:
            raise RuntimeError(f"iperf3 to {address} from {client}: {r.stdout[-300:]}")
        time.sleep(0.2)


def rtts(client: str, address: str, count: int) -> list[float]:
    out = sh("ping", "-c", str(count), "-i", "0.01", "-W", "1", address, ns=client)
    return [float(m) for m in re.findall(r"time=([\d.]+) ms", out)]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(rounds: int, seconds: float, pings: int) -> dict[str, Any]:
    raw: dict[str, dict[str, list[float]]] = {t: {"tcp1": [], "tcp4": [], "rtt": []} for t in TYPES}
    with fabric() as f:
        for kind in TYPES:
            wait_reachable(*f.paths[kind])
        for _ in range(rounds):
            for kind in TYPES:
                client, address = f.paths[kind]
                raw[kind]["tcp1"].append(iperf(client, address, 1, seconds))
                raw[kind]["tcp4"].append(iperf(client, address, 4, seconds))
                raw[kind]["rtt"] += rtts(client, address, pings)
    out: dict[str, Any] = {}
    for kind in TYPES:
        r = raw[kind]
        out[kind] = {
            "tcp1_gbps": round(statistics.median(r["tcp1"]), 3),
            "tcp4_gbps": round(statistics.median(r["tcp4"]), 3),
            "rtt_p50_ms": round(pct(r["rtt"], 0.5), 4),
            "rtt_p99_ms": round(pct(r["rtt"], 0.99), 4),
            "samples": {k: [round(v, 3) for v in vs] for k, vs in r.items() if k != "rtt"},
        }
    bare = out["bare"]
    for kind in TYPES:
        out[kind]["tcp1_ratio"] = round(out[kind]["tcp1_gbps"] / bare["tcp1_gbps"], 3)
        out[kind]["tcp4_ratio"] = round(out[kind]["tcp4_gbps"] / bare["tcp4_gbps"], 3)
    return out


def table(results: dict[str, Any]) -> str:
    lines = [
        f"{'type':<8} {'TCP x1 Gbit/s':>14} {'ratio':>6} {'TCP x4 Gbit/s':>14} {'ratio':>6} "
        f"{'RTT p50 ms':>11} {'RTT p99 ms':>11}  goal"
    ]
    for kind in TYPES:
        r = results[kind]
        goal = GOALS.get(kind)
        verdict = ""
        if goal is not None:
            met = r["tcp1_ratio"] >= goal
            verdict = f">= {goal:.0%} of bare: {'met' if met else 'NOT met'}"
        lines.append(
            f"{kind:<8} {r['tcp1_gbps']:>14.2f} {r['tcp1_ratio']:>6.2f} {r['tcp4_gbps']:>14.2f} "
            f"{r['tcp4_ratio']:>6.2f} {r['rtt_p50_ms']:>11.3f} {r['rtt_p99_ms']:>11.3f}  {verdict}"
        )
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.38
    xs = range(len(TYPES))
    one = [results[k]["tcp1_gbps"] for k in TYPES]
    four = [results[k]["tcp4_gbps"] for k in TYPES]
    bars = ax.bar([x - width / 2 for x in xs], one, width, label="TCP, 1 stream")
    ax.bar([x + width / 2 for x in xs], four, width, label="TCP, 4 streams")
    for bar, kind in zip(bars, TYPES, strict=True):
        ax.annotate(f"{results[kind]['tcp1_ratio']:.0%}", (bar.get_x() + bar.get_width() / 2,
                    bar.get_height()), ha="center", va="bottom", fontsize=8)  # fmt: skip
    ax.set_xticks(list(xs), list(TYPES))
    ax.set_ylabel("Gbit/s (iperf3, median of rounds)")
    ax.set_title("vpcd network types between two sandbox hosts (label: 1-stream ratio to bare)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--pings", type=int, default=200)
    parser.add_argument("--out", default="bench/results/network_types.json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/network_types.py needs root (network namespaces)")
    results = measure(args.rounds, args.seconds, args.pings)
    print(table(results))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "network_types",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
        "rounds": args.rounds,
        "seconds": args.seconds,
        "goals_tcp1_ratio": GOALS,
        "results": results,
    }
    out.write_text(json.dumps(doc, indent=2) + "\n")
    png = out.with_suffix(".png")
    chart(results, png)
    print(f"saved {out} and {png}")


if __name__ == "__main__":
    main()
