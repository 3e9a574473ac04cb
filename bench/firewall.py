"""Security-group benchmark on real kernels: three agent hosts on a private fabric (root).

What is real and what is declared: three host namespaces with a real agent each, on a
private underlay (the e2e tests' fabric: nothing leaves its namespaces). Each host
really realises two workload ports, both in group `db` whose rule admits the members of
group `app` (a remote group, so an ipset); `app` has N members spread over the three
hosts — declared in the documents as the controller would compile them (their IPs),
not realised as namespaces, because what a host pays for a remote group is exactly its
member list. Documents are handed to the agents directly (no API/controller), so "rule
create -> enforced" is the agents' part: all three hosts syncing in parallel until a
probe crosses the new rule.

1. Scaling, for N = 10, 100, 1000: iptables rules and ipset entries per host (read from
   the kernel), the time of one full sync, rule create -> enforced on all hosts, and one
   member change (tool calls: iptables-restore and ipset restore counts, and its time).
2. Throughput: iperf3 from a port on h1 to one on h2 whose groups hold 50 rules (the one
   that admits the traffic last), against the same path with the ports unfiltered, in
   the same run, alternating. Goal: ratio >= 0.9.

    .venv/bin/python bench/firewall.py [--sizes 10,100,1000] [--out bench/results/firewall.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.e2e.agent_fabric import Fabric, build_fabric, sh
from workers.agent.planners.firewall import RAW_CHAIN
from workers.protocol import (
    HostState,
    PortState,
    RemotePort,
    SecurityGroupRuleState,
    SecurityGroupState,
    SubnetState,
)

HOSTS = {"h1": "10.250.0.1", "h2": "10.250.0.2", "h3": "10.250.0.3"}
SID = str(uuid.uuid4())


def rule(direction: str, protocol: str = "any", **kw: Any) -> SecurityGroupRuleState:
    return SecurityGroupRuleState.model_validate(
        {"id": str(uuid.uuid4()), "direction": direction, "protocol": protocol, **kw}
    )


def member_ip(i: int) -> str:
    return f"10.77.{100 + i // 250}.{i % 250 + 1}"


class World:
    def __init__(self, fab: Fabric) -> None:
        self.fab = fab
        self.revision = 0
        self.ports = {
            h: [
                PortState(
                    id=str(uuid.uuid4()),
                    revision=1,
                    subnet_id=SID,
                    netns=f"w{k}",
                    mac=f"02:00:00:00:{n:02x}:{k:02x}",
                    ip=f"10.77.0.{10 * n + k}",
                    prefixlen=16,
                )
                for k in range(2)
            ]
            for n, h in enumerate(HOSTS, start=1)
        }
        self.groups: dict[str, list[str] | None] = {}  # port id -> groups (None: unfiltered)
        self.rules: dict[str, list[SecurityGroupRuleState]] = {}
        self.members: dict[str, list[str]] = {}

    def docs(self) -> dict[str, HostState]:
        self.revision += 1
        out = {}
        for host, vtep in HOSTS.items():
            others = [(p, HOSTS[h]) for h, ps in self.ports.items() if h != host for p in ps]
            subnet = SubnetState(
                id=SID,
                revision=1,
                vni=4242,
                cidr="10.77.0.0/16",
                gateway_ip="10.77.0.1",
                remote_vteps=sorted({v for _, v in others}),
                remote_ports=[RemotePort(mac=p.mac, ip=p.ip, vtep_ip=v) for p, v in others],
            )
            ports = [
                p.model_copy(update={"security_group_ids": self.groups.get(p.id)})
                for p in self.ports[host]
            ]
            groups = [
                SecurityGroupState(
                    id=g,
                    revision=self.revision,
                    rules=self.rules.get(g, []),
                    members=sorted(self.members.get(g, [])),
                )
                for g in sorted(set(self.rules) | set(self.members))
            ]
            out[host] = HostState(
                host=host,
                revision=self.revision,
                vtep_ip=vtep,
                subnets=[subnet],
                ports=ports,
                security_groups=groups,
            )
        return out

    def sync(self, full: bool = False) -> dict[str, float]:
        """Every host in parallel; each host's own sync time."""
        docs = self.docs()

        def one(host: str) -> tuple[str, float]:
            start = time.perf_counter()
            report = self.fab.agent(host).sync(docs[host], full=full)
            assert report.ok, report
            return host, time.perf_counter() - start

        with ThreadPoolExecutor(3) as pool:
            return dict(pool.map(one, HOSTS))

    def ns(self, host: str, k: int) -> str:
        return self.fab.workload(host, f"w{k}")

    def kernel_counts(self, host: str) -> dict[str, int]:
        ns = self.fab.ns(host)
        saved = sh("ip", "netns", "exec", ns, "iptables-save", "-t", "filter").stdout
        sets = sh("ip", "netns", "exec", ns, "ipset", "save").stdout.splitlines()
        return {
            "iptables_rules": sum(
                1 for x in saved.splitlines() if x.startswith("-A") and "vpcd-" in x
            ),
            "ipset_entries": sum(1 for x in sets if x.startswith("add vpcd-g-")),
        }


def ping(ns: str, ip: str) -> bool:
    return (
        sh("ip", "netns", "exec", ns, "ping", "-n", "-c1", "-W1", ip, check=False).returncode == 0
    )


def scaling(w: World, size: int) -> dict[str, Any]:
    """Group `db` (every real port) admits icmp from remote group `app` (size members)."""
    everyone = [p.id for ps in w.ports.values() for p in ps]
    w.groups = {pid: ["db", "out"] for pid in everyone}
    w.rules = {"db": [rule("ingress", "icmp", remote_group_id="app")], "out": [rule("egress")]}
    real = [w.ports["h1"][0].ip]  # the prober (h1/w0) is a member; the rest are declared
    w.members = {"app": real + [member_ip(i) for i in range(size - 1)]}
    w.sync()
    probe, target = w.ns("h1", 0), w.ports["h3"][1].ip
    assert ping(probe, target), "member cannot reach"
    counts = {h: w.kernel_counts(h) for h in HOSTS}
    full = w.sync(full=True)  # the periodic resync: everything observed and compared
    # rule create -> enforced on all hosts: icmp from h2/w0 (not in `app`) is new
    outsider = w.ns("h2", 0)
    assert not ping(outsider, target), "a non-member got through before the rule"
    cidr = f"{w.ports['h2'][0].ip}/32"
    w.rules["db"] = [*w.rules["db"], rule("ingress", "icmp", remote_cidr=cidr)]
    start = time.perf_counter()
    per_host = w.sync()
    while not ping(outsider, target):
        assert time.perf_counter() - start < 30, "the new rule was not enforced"
    created = time.perf_counter() - start
    # one member change: a member leaves `app` (O(1): one ipset swap per host, no restore)
    w.members["app"] = w.members["app"][:-1]
    start = time.perf_counter()
    w.sync()
    member_change = time.perf_counter() - start
    stats = {h: w.fab.agent(h).stats for h in HOSTS}
    return {
        "members": size,
        "per_host": {h: {**counts[h], "full_sync_s": round(full[h], 4)} for h in HOSTS},
        "rule_create_to_enforced_all_hosts_s": round(created, 4),
        "rule_create_per_host_sync_s": {h: round(t, 4) for h, t in per_host.items()},
        "member_change_s": round(member_change, 4),
        "member_change_kernel_work": {
            h: {
                "iptables_restores": s.iptables_restores,
                "ipset_restores": s.ipset_restores,
                "conntrack_deletes": s.conntrack_deletes,
            }
            for h, s in stats.items()
        },
    }


def iperf(w: World, seconds: int) -> float:
    server, client = w.ns("h2", 0), w.ns("h1", 0)
    proc = subprocess.Popen(
        ["ip", "netns", "exec", server, "iperf3", "-s", "-1"], stdout=subprocess.DEVNULL
    )
    try:
        time.sleep(0.3)
        out = sh(
            "ip",
            "netns",
            "exec",
            client,
            "iperf3",
            "-c",
            w.ports["h2"][0].ip,
            "-t",
            str(seconds),
            "-J",
        ).stdout
        return float(json.loads(out)["end"]["sum_received"]["bits_per_second"])
    finally:
        proc.wait(timeout=15)


def throughput(w: World, rounds: int, seconds: int) -> dict[str, Any]:
    everyone = [p.id for ps in w.ports.values() for p in ps]
    filtered: dict[str, list[str] | None] = {pid: ["fifty"] for pid in everyone}
    unfiltered: dict[str, list[str] | None] = {}
    fifty = [rule("ingress", "tcp", port_min=6000 + i, port_max=6000 + i) for i in range(49)]
    fifty.append(rule("ingress", "tcp", port_min=5201, port_max=5201))  # the one that admits
    w.rules, w.members = {"fifty": [*fifty, rule("egress")]}, {}
    variants = (
        ("no_groups", unfiltered, False),
        ("fifty_rules", filtered, False),
        ("fifty_rules_underlay_tracked", filtered, True),  # before the NOTRACK: for comparison
    )
    runs: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    for _ in range(rounds):
        for name, groups, tracked in variants:
            w.groups = groups
            w.sync()
            if tracked:  # the agent's raw-table hooks out by hand until the next sync
                for host in HOSTS:
                    for hook in ("PREROUTING", "OUTPUT"):
                        sh(
                            "ip",
                            "netns",
                            "exec",
                            w.fab.ns(host),
                            "iptables",
                            "-t",
                            "raw",
                            "-D",
                            hook,
                            "-j",
                            RAW_CHAIN,
                        )
            runs[name].append(iperf(w, seconds))
    rules = w.kernel_counts("h2")["iptables_rules"]
    base = statistics.median(runs["no_groups"])
    return {
        "rounds": rounds,
        "seconds": seconds,
        **{f"{name}_bps": runs[name] for name, _, _ in variants},
        "h2_vpcd_rules_with_groups": rules,
        "ratio": round(statistics.median(runs["fifty_rules"]) / base, 4),
        "ratio_underlay_tracked": round(
            statistics.median(runs["fifty_rules_underlay_tracked"]) / base, 4
        ),
        "goal": ">= 0.9",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--out", default="bench/results/firewall.json")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"kernel": platform.release(), "cpus": __import__("os").cpu_count()},
        "what": "3 real agent hosts; group members declared as IPs, 2 real ports per host",
    }
    with tempfile.TemporaryDirectory() as tmp, build_fabric(Path(tmp)) as fab:
        fab.attach("h3", HOSTS["h3"])
        w = World(fab)
        result["scaling"] = [scaling(w, int(n)) for n in args.sizes.split(",") if n]
        for row in result["scaling"]:
            print(json.dumps(row), flush=True)
        counts = {row["per_host"]["h1"]["iptables_rules"] for row in result["scaling"]}
        result["rule_count_flat"] = len(counts) == 1
        result["throughput"] = throughput(w, args.rounds, args.seconds)
        print(json.dumps(result["throughput"]), flush=True)
        w.ports, w.rules, w.members, w.groups = {h: [] for h in HOSTS}, {}, {}, {}
        w.sync()
        for h in HOSTS:
            assert w.kernel_counts(h) == {"iptables_rules": 0, "ipset_entries": 0}
    print(f"rule count flat as membership grows: {result['rule_count_flat']}")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
