"""The agent alone at N ports on one host (root): no API, no controller, no bus.

What converge.py measures through the whole stack, minus everything before the agent:
documents are built here as the controller compiles them (every port filtered by a
default-like group: ingress from its own members, an ipset; egress anywhere) and handed
to a real Agent on a throwaway host namespace (the e2e tests' fabric, nothing leaves
it). Figures, each the agent's own sync time and its phases:

- cold build of N ports (one full sync from nothing),
- warm resync after a restart (a new Agent, full sync, kernel writes counted: goal 0),
- one change with N in place (a port added, then removed; incremental syncs), each with
  its phases (p50 per phase) and tool processes, against the same run's kernel floor of
  one change: a namespace and a veth (`ip -batch`, kernelwatch.floor) plus one no-op run
  of each tool a filtered port's change needs (iptables-restore and ebtables-restore
  --noflush, ipset restore) in the host namespace holding the N ports' rules,
- teardown of all of them (a new Agent told the host has no ports: a full sync),
- the process's RSS after the build.

    .venv/bin/python bench/agent_scale.py [--ports 1000] [--changes 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import kernelwatch
from bench.sandbox_run import machine, save
from tests.e2e.agent_fabric import build_fabric, netns_list, port, subnet
from workers.agent.agent import Agent
from workers.agent.drivers import cmd
from workers.protocol import (
    HostState,
    PortState,
    SecurityGroupRuleState,
    SecurityGroupState,
)

GROUP = str(uuid.uuid4())


def group(members: list[PortState]) -> SecurityGroupState:
    rules = [
        SecurityGroupRuleState(id=str(uuid.uuid4()), direction="egress", protocol="any"),
        SecurityGroupRuleState(
            id=str(uuid.uuid4()), direction="ingress", protocol="any", remote_group_id=GROUP
        ),
    ]
    return SecurityGroupState(id=GROUP, revision=1, rules=rules, members=[p.ip for p in members])


def document(sid: str, ports: list[PortState], revision: int) -> HostState:
    return HostState(
        host="h1",
        revision=revision,
        vtep_ip="10.250.0.1",
        subnets=[subnet(sid, 4242, {"h2": []})] if ports else [],
        ports=ports,
        security_groups=[group(ports)] if ports else [],
    )


_OUTSIDE_CORE = ("total", "desire", "render", "prune")


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def timed(agent: Agent, state: HostState, full: bool = False) -> dict[str, Any]:
    cpu, children = time.process_time(), _children_cpu()
    report = agent.sync(state, full=full)
    cpu, children = time.process_time() - cpu, _children_cpu() - children
    stats = agent.stats
    if not report.ok:
        bad = [r.detail for r in report.results if not r.ok][:3]
        raise RuntimeError(f"sync failed: {report.detail} {bad}")
    return {
        "ms": round(stats.timings.get("total", 0.0) * 1000, 1),
        # CPU, which a loaded machine stretches far less than wall time: the agent's own
        # (every thread of this process) and its tools' (children waited for).
        "agent_cpu_ms": round(cpu * 1000, 1),
        "tools_cpu_ms": round(children * 1000, 1),
        "phases_ms": {k: round(v * 1000, 1) for k, v in stats.timings.items() if k != "total"},
        # What the agent's `total` counted before it covered the document and the render
        # (desire, render, prune): comparable with earlier figures and other revisions.
        "core_ms": round(
            sum(v for k, v in stats.timings.items() if k not in _OUTSIDE_CORE) * 1000, 1
        ),
        "apply_ms_by_op": {
            k: round(v * 1000, 1) for k, v in getattr(stats, "op_seconds", {}).items()
        },
        "ops": stats.ops,
        "kernel_writes": sum(stats.applied.values()) + stats.errors,
        "iptables_saves": stats.iptables_saves,
        "iptables_restores": stats.iptables_restores,  # ebtables-restore runs included
        "ipset_restores": stats.ipset_restores,
        "conntrack_deletes": stats.conntrack_deletes,
        "full": stats.full,
    }


def tool_floor(netns: str, tries: int = 5) -> dict[str, float]:
    """ms, median of `tries`, of one no-op run of each tool a port change runs, in the
    host namespace as it is (their fixed cost at this ruleset size, no agent)."""
    noop = {
        "iptables-restore": (["iptables-restore", "--noflush", "--wait", "5"], "*filter\nCOMMIT\n"),
        "ebtables-restore": (["ebtables-restore", "--noflush"], "*filter\nCOMMIT\n"),
        "ipset-restore": (["ipset", "restore"], ""),
    }
    out: dict[str, float] = {}
    for name, (argv, text) in noop.items():
        times = []
        for _ in range(tries):
            started = time.perf_counter()
            cmd.check(cmd.run(netns, argv, stdin=text), name)
            times.append((time.perf_counter() - started) * 1000)
        out[name] = round(statistics.median(times), 1)
    return out


def phases_p50(syncs: list[dict[str, Any]]) -> dict[str, float]:
    keys = {k for s in syncs for k in s["phases_ms"]}
    return {
        k: round(statistics.median(s["phases_ms"].get(k, 0.0) for s in syncs), 1)
        for k in sorted(keys)
    }


def run(count: int, changes: int) -> dict[str, Any]:
    out: dict[str, Any] = {"ports": count}
    with tempfile.TemporaryDirectory() as tmp, build_fabric(Path(tmp)) as fab:
        sid = str(uuid.uuid4())
        ports = [port(sid, f"p{i}", i + 10, security_group_ids=[GROUP]) for i in range(count)]
        revision = 1
        agent = fab.agent("h1")
        out["cold_build"] = timed(agent, document(sid, ports, revision)) | {"goal_ms": 10000}
        out["rss_mb_after_build"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(out, indent=2), flush=True)
        agent = fab.restart("h1")
        out["warm_resync"] = timed(agent, document(sid, ports, revision)) | {"goal_ms": 2000}
        print(json.dumps(out["warm_resync"], indent=2), flush=True)
        adds, removes = [], []
        for i in range(changes):
            extra = port(sid, f"x{i}", count + 100 + i, security_group_ids=[GROUP])
            revision += 1
            adds.append(timed(agent, document(sid, [*ports, extra], revision)))
            revision += 1
            removes.append(timed(agent, document(sid, ports, revision)))
        tools = tool_floor(fab.ns("h1"))
        kernel = kernelwatch.floor(20)
        floor_ms = round(kernel["per_port_ms"] + sum(tools.values()), 1)
        add_p50 = statistics.median(a["ms"] for a in adds)
        remove_p50 = statistics.median(r["ms"] for r in removes)
        out["one_change"] = {
            "add_ms_p50": add_p50,
            "remove_ms_p50": remove_p50,
            "add_cpu_ms_p50": {
                k: statistics.median(a[k] for a in adds) for k in ("agent_cpu_ms", "tools_cpu_ms")
            },
            "remove_cpu_ms_p50": {
                k: statistics.median(r[k] for r in removes)
                for k in ("agent_cpu_ms", "tools_cpu_ms")
            },
            "add_core_ms_p50": statistics.median(a["core_ms"] for a in adds),
            "remove_core_ms_p50": statistics.median(r["core_ms"] for r in removes),
            "add_phases_ms_p50": phases_p50(adds),
            "remove_phases_ms_p50": phases_p50(removes),
            "kernel_floor_same_run": {"tools_ms": tools, **kernel, "one_change_ms": floor_ms},
            "ratio_add_to_floor": round(add_p50 / floor_ms, 2),
            "ratio_remove_to_floor": round(remove_p50 / floor_ms, 2),
            "adds": adds,
            "removes": removes,
            "goal_ms": 50,
        }
        print(json.dumps(out["one_change"], indent=2), flush=True)
        agent = fab.restart("h1")
        revision += 1
        out["teardown"] = timed(agent, document(sid, [], revision)) | {"goal_ms": 5000}
        left = [ns for ns in netns_list() if ns.startswith(fab.workload("h1", "p"))]
        out["teardown"]["netns_left"] = len(left)
        print(json.dumps(out["teardown"], indent=2), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=5)
    parser.add_argument("--out", default="bench/results/agent_scale.json")
    args = parser.parse_args()
    result = machine() | {"database": None, "bus": None}
    result["scale"] = run(args.ports, args.changes)
    save(result, args.out)


if __name__ == "__main__":
    main()
