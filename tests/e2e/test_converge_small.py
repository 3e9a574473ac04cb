"""The small version of bench/converge.py's agent part: 100 ports on one host.

Asserts counts and convergence, never times: the cold build realises every port; a
restarted agent's full resync writes nothing to the kernel (by its own count, and by
the kernel's: no rtnetlink notification in the host or any workload namespace, and
the same iptables/ipset rulesets); one more port is three ops on an incremental sync;
the teardown removes every namespace, the kernel taking the veths with them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import kernelwatch
from tests.e2e.agent_fabric import Fabric, build_fabric, links, netns_list, port, states, subnet_id
from workers.agent import names

PORTS = 100


@pytest.fixture
def fabric(tmp_path: Path) -> Iterator[Fabric]:
    with build_fabric(tmp_path) as fab:
        yield fab


def test_a_hundred_ports_build_resync_change_and_teardown(fabric: Fabric) -> None:
    sid = subnet_id()
    ports = [port(sid, f"w{i}", i + 2) for i in range(PORTS)]
    doc = states(sid, 4545, {"h1": ports})["h1"]
    agent = fabric.agent("h1")

    report = agent.sync(doc)
    assert report.ok and agent.stats.full and not agent.stats.leftover
    assert agent.stats.applied["CreateNetns"] == PORTS
    assert agent.stats.applied["CreatePort"] == PORTS
    assert {r.id for r in report.results if r.ok} >= {p.id for p in ports}
    workloads = sorted(fabric.workload("h1", f"w{i}") for i in range(PORTS))
    assert set(workloads) <= netns_list()

    watch = kernelwatch.Watch([fabric.ns("h1"), *workloads])
    try:
        agent = fabric.restart("h1")
        report = agent.sync(doc)
        seen = watch.count()
    finally:
        watch.close()
    assert report.ok and agent.stats.full
    assert agent.stats.ops == 0 and sum(agent.stats.applied.values()) == 0
    assert agent.stats.iptables_restores == agent.stats.ipset_restores == 0
    assert seen["namespaces_watched"] == PORTS + 1
    assert (seen["writes"], seen["overflows"], seen["rulesets_changed"]) == (0, 0, [])

    extra = port(sid, "extra", 60000)
    changed = doc.model_copy(update={"revision": 2, "ports": [*ports, extra]})
    assert agent.sync(changed).ok and not agent.stats.full
    assert agent.stats.applied == {"CreateNetns": 1, "CreatePort": 1, "ConfigurePort": 1}

    empty = doc.model_copy(update={"revision": 3, "ports": [], "subnets": []})
    assert agent.sync(empty).ok and not agent.stats.leftover
    assert agent.stats.applied["DeleteNetns"] == PORTS + 1
    assert not [ns for ns in netns_list() if ns.startswith(fabric.workload("h1", ""))]
    veths = {names.host_veth_name(p.id) for p in [*ports, extra]}
    assert not veths & set(links(fabric.ns("h1")))
