"""A one-port change leaves every other port's rules alone, in the real kernel.

Nine filtered ports on one host of the throwaway fabric (tests/e2e/agent_fabric.py),
traffic between two of them so their rules count packets; then a port comes and goes
by incremental syncs. Rewriting a rule (a chain flushed and refilled) zeroes its
counters, so counters that only grew prove the other ports' chains and jumps were never
rewritten; the host's filter table is not even read back (no iptables-save) between
full syncs. Then the teardown of all of them leaves no namespace, chain, set or veth.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

if os.geteuid() != 0 or not all(
    shutil.which(t) for t in ("ip", "ping", "iptables-save", "ipset", "nsenter")
):
    pytest.skip("needs root, iproute2, iptables, ipset and nsenter", allow_module_level=True)

from tests.e2e.agent_fabric import Fabric, build_fabric, netns_list, ping, port, sh, subnet
from workers.agent import names
from workers.agent.planners.secgroups import (
    BUCKET_IN,
    BUCKET_OUT,
    VETH_PREFIX,
    egress_chain,
    ingress_chain,
)
from workers.protocol import HostState, PortState, SecurityGroupRuleState, SecurityGroupState

pytestmark = pytest.mark.e2e

GROUP = "default-group"
COUNTED = re.compile(r"^\[(\d+):\d+\] (-A vpcd-.*)$")


@pytest.fixture
def fabric(tmp_path: Path) -> Iterator[Fabric]:
    with build_fabric(tmp_path) as fab:
        yield fab


def document(sid: str, ports: list[PortState], revision: int) -> HostState:
    rules = [
        SecurityGroupRuleState(id=str(uuid.uuid4()), direction="egress", protocol="any"),
        SecurityGroupRuleState(
            id=str(uuid.uuid4()), direction="ingress", protocol="any", remote_group_id=GROUP
        ),
    ]
    group = SecurityGroupState(id=GROUP, revision=1, rules=rules, members=[p.ip for p in ports])
    return HostState(
        host="h1",
        revision=revision,
        vtep_ip="10.250.0.1",
        subnets=[subnet(sid, 4321, {"h2": []})] if ports else [],
        ports=ports,
        security_groups=[group] if ports else [],
    )


def counters(fab: Fabric) -> dict[str, int]:
    """Packets per rule of ours in h1's filter table."""
    text = sh("ip", "netns", "exec", fab.ns("h1"), "iptables-save", "-c", "-t", "filter").stdout
    return {m[2]: int(m[1]) for line in text.splitlines() if (m := COUNTED.match(line))}


def test_a_port_change_rewrites_no_other_rule_and_teardown_leaves_nothing(fabric: Fabric) -> None:
    sid = str(uuid.uuid4())
    ports = [port(sid, f"w{i}", 10 + i, security_group_ids=[GROUP]) for i in range(9)]
    agent = fabric.agent("h1")
    assert agent.sync(document(sid, ports, 1)).ok
    a, b = fabric.workload("h1", "w0"), ports[1].ip
    assert ping(a, b)
    before = counters(fabric)
    counted = {rule for rule, packets in before.items() if packets}
    assert len(counted) >= 4  # both ports' jumps and chains saw the ping

    extra = port(sid, "wx", 40, security_group_ids=[GROUP])
    assert agent.sync(document(sid, [*ports, extra], 2)).ok
    stats = agent.stats
    assert not stats.full and stats.iptables_saves == 0 and stats.iptables_restores == 2
    grown = counters(fabric)
    assert all(grown[rule] >= packets for rule, packets in before.items())  # none rewritten
    digit = names.host_veth_name(extra.id)[len(VETH_PREFIX)]  # its buckets may be new
    mine = (
        names.host_veth_name(extra.id),
        egress_chain(extra.id),
        ingress_chain(extra.id),
        f"-j {BUCKET_OUT}{digit}",
        f"-j {BUCKET_IN}{digit}",
    )
    added = set(grown) - set(before)
    assert len(added) > 2 and all(any(n in rule for n in mine) for rule in added)
    assert ping(fabric.workload("h1", "wx"), ports[0].ip)  # its jumps sit where they work
    assert agent.pending(document(sid, [*ports, extra], 2)) == []

    assert agent.sync(document(sid, ports, 3)).ok
    assert agent.stats.iptables_saves == 0
    after = counters(fabric)
    assert set(after) == set(before)
    assert all(after[rule] >= packets for rule, packets in before.items())
    assert agent.pending(document(sid, ports, 3)) == []

    agent = fabric.restart("h1")  # the teardown: a fresh agent, a full sync of nothing
    assert agent.sync(document(sid, [], 4)).ok
    assert not [ns for ns in netns_list() if ns.startswith(fabric.workload("h1", "w"))]
    assert counters(fabric) == {}
    sets = sh("ip", "netns", "exec", fabric.ns("h1"), "ipset", "list", "-n").stdout.split()
    assert not [s for s in sets if s.startswith("vpcd-")]
    host_links = sh("ip", "-n", fabric.ns("h1"), "-o", "link").stdout
    assert not [p.id for p in [*ports, extra] if names.host_veth_name(p.id) in host_links]


def test_a_failed_restore_makes_the_next_sync_full_and_it_repairs(fabric: Fabric) -> None:
    """The snapshot stands for the host's firewall only while syncs are clean: a hook
    added by hand (unseen between full syncs) makes removing its chain fail; that sync
    says so (its verify reads the table back), and the next sync is full and finishes
    the removal."""
    sid = str(uuid.uuid4())
    ports = [port(sid, f"w{i}", 10 + i, security_group_ids=[GROUP]) for i in range(3)]
    agent = fabric.agent("h1")
    assert agent.sync(document(sid, ports, 1)).ok
    assert agent.sync(document(sid, ports[:2] + ports[2:], 2)).ok  # incremental from here
    chain = egress_chain(ports[2].id)
    sh("ip", "netns", "exec", fabric.ns("h1"), "iptables", "-A", "FORWARD", "-j", chain)
    report = agent.sync(document(sid, ports[:2], 3))
    assert not report.ok and not agent.stats.full
    assert agent.stats.iptables_saves == 1  # a failed op: the verify reads the table again
    assert agent.needs_full
    assert agent.sync(document(sid, ports[:2], 3)).ok  # same revision: the due full sync
    assert agent.stats.full and agent.stats.iptables_saves >= 1
    assert not [rule for rule in counters(fabric) if chain in rule]
    forward = sh("ip", "netns", "exec", fabric.ns("h1"), "iptables", "-S", "FORWARD").stdout
    assert chain not in forward
    assert agent.pending(document(sid, ports[:2], 3)) == []
