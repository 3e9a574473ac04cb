"""The firewall as whole rulesets, against the real kernel (iptables-nft/legacy, ipset).

Everything happens inside the throwaway namespaces of tests/e2e/agent_fabric.py: the
machine's own tables are never read or written. A stranger on the underlay is one more
namespace attached to the same private bridge; the frames it sends go only to
addresses inside those namespaces.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

if os.geteuid() != 0 or not all(
    shutil.which(t) for t in ("ip", "ping", "iptables-save", "iptables-restore", "ipset")
):
    pytest.skip("needs root, iproute2, iptables and ipset", allow_module_level=True)

from tests.e2e.agent_fabric import (
    VTEP,
    Fabric,
    build_fabric,
    ping,
    sh,
    two_ports,
    wait_for,
)
from workers.protocol import HostState

pytestmark = pytest.mark.e2e

PROBE = str(Path(__file__).with_name("vxlan_probe.py"))
OURS = [
    ":vpcd-INPUT -",
    "-A INPUT -j vpcd-INPUT",
    "-A vpcd-INPUT -p udp -m udp --dport 4789 -m set --match-set vpcd-vteps src -j ACCEPT",
    "-A vpcd-INPUT -p udp -m udp --dport 4789 -j DROP",
]


@pytest.fixture
def fabric(tmp_path: Path) -> Iterator[Fabric]:
    with build_fabric(tmp_path) as fab:
        yield fab


def ipt(ns: str, *args: str) -> None:
    sh("ip", "netns", "exec", ns, "iptables", *args)


def save(ns: str, table: str = "filter") -> list[str]:
    """The table's lines, without comments and the policy counters traffic moves."""
    out = sh("ip", "netns", "exec", ns, "iptables-save", "-t", table).stdout
    return [
        line.split(" [", 1)[0] if line.startswith(":") else line
        for line in out.splitlines()
        if line and not line.startswith("#")
    ]


def ours(lines: list[str]) -> list[str]:
    return [line for line in lines if "vpcd-" in line]


def foreign(lines: list[str]) -> list[str]:
    return [line for line in lines if "vpcd-" not in line]


def sets(ns: str) -> list[str]:
    return sh("ip", "netns", "exec", ns, "ipset", "save").stdout.splitlines()


def members(ns: str, name: str) -> set[str]:
    return {line.split()[2] for line in sets(ns) if line.startswith(f"add {name} ")}


def drops(ns: str) -> int:
    """Packets our DROP rule in vpcd-INPUT has counted."""
    out = sh("ip", "netns", "exec", ns, "iptables", "-nvxL", "vpcd-INPUT").stdout
    return sum(int(line.split()[0]) for line in out.splitlines()[2:] if line.split()[2] == "DROP")


def with_vteps(doc: HostState, extra: list[str], revision: int) -> HostState:
    subnet = doc.subnets[0]
    grown = subnet.model_copy(update={"remote_vteps": [*subnet.remote_vteps, *extra]})
    return doc.model_copy(update={"revision": revision, "subnets": [grown]})


def test_underlay_guard_is_built_and_repaired_by_a_full_sync(fabric: Fabric) -> None:
    sc = two_ports(fabric)
    h1, agent, doc = fabric.ns("h1"), fabric.agent("h1"), sc.docs["h1"]
    assert ours(save(h1)) == OURS
    assert members(h1, "vpcd-vteps") == {VTEP["h2"]}
    assert not [line for line in sets(h1) if "vpcd-vteps-tmp" in line]  # swapped, destroyed

    # (a) by hand: our DROP rule deleted, our hook duplicated, a VTEP taken out of the set
    ipt(h1, "-D", "vpcd-INPUT", "-p", "udp", "--dport", "4789", "-j", "DROP")
    ipt(h1, "-A", "INPUT", "-j", "vpcd-INPUT")
    sh("ip", "netns", "exec", h1, "ipset", "del", "vpcd-vteps", VTEP["h2"])
    report = agent.sync(doc, full=True)  # what the periodic resync does
    assert report.ok, report
    assert agent.stats.iptables_restores == 1 and agent.stats.ipset_restores == 1
    assert ours(save(h1)) == OURS
    assert members(h1, "vpcd-vteps") == {VTEP["h2"]}
    assert agent.pending(doc) == []
    assert ping(fabric.workload("h1", "wa"), sc.b.ip)


def test_foreign_chains_rules_and_sets_are_never_touched(fabric: Fabric) -> None:
    h1 = fabric.ns("h1")
    ipt(h1, "-N", "FOREIGN")
    ipt(h1, "-A", "FOREIGN", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
    ipt(h1, "-A", "INPUT", "-p", "udp", "--dport", "53", "-j", "ACCEPT")
    ipt(h1, "-A", "INPUT", "-j", "FOREIGN")
    ipt(h1, "-A", "FORWARD", "-s", "10.98.0.0/16", "-j", "DROP")
    ipt(h1, "-t", "nat", "-A", "POSTROUTING", "-s", "10.99.0.0/16", "-j", "MASQUERADE")
    sh("ip", "netns", "exec", h1, "ipset", "create", "foreign-set", "hash:ip")
    sh("ip", "netns", "exec", h1, "ipset", "add", "foreign-set", "10.9.9.9")
    before = {table: foreign(save(h1, table)) for table in ("filter", "nat")}
    foreign_sets = [line for line in sets(h1) if "foreign-set" in line]

    def untouched() -> None:
        assert {table: foreign(save(h1, table)) for table in ("filter", "nat")} == before
        assert [line for line in sets(h1) if "foreign-set" in line] == foreign_sets

    sc = two_ports(fabric)  # build
    untouched()
    assert ours(save(h1)) == OURS
    agent, doc = fabric.agent("h1"), sc.docs["h1"]
    grown = with_vteps(doc, ["10.250.0.3"], 2)  # a new VTEP: the set is swapped
    assert agent.sync(grown).ok and agent.stats.ipset_restores == 1
    untouched()
    ipt(h1, "-F", "vpcd-INPUT")  # repair
    assert agent.sync(grown, full=True).ok and agent.stats.iptables_restores == 1
    untouched()
    assert ours(save(h1)) == OURS
    gone = grown.model_copy(update={"revision": 3, "ports": [], "subnets": []})
    assert agent.sync(gone).ok  # teardown: nothing of ours is left, all the rest is
    untouched()
    assert ours(save(h1)) == [] and not [line for line in sets(h1) if "vpcd-" in line]


def test_syncs_with_nothing_changed_make_no_restore(fabric: Fabric) -> None:
    sc = two_ports(fabric)
    agent, doc = fabric.agent("h1"), sc.docs["h1"]
    for _ in range(2):  # (c) periodic resyncs: the tables are read, nothing is written
        assert agent.sync(doc, full=True).ok
        assert agent.stats.iptables_saves == 1
        assert agent.stats.iptables_restores == 0 and agent.stats.ipset_restores == 0
    # An incremental sync whose firewall rendering did not change does not even read it.
    moved = sc.a.model_copy(update={"ip": "10.77.0.11", "revision": 2})
    assert agent.sync(doc.model_copy(update={"revision": 2, "ports": [moved]})).ok
    assert not agent.stats.full and agent.stats.ops == 1
    assert agent.stats.iptables_saves == 0 and agent.stats.iptables_restores == 0
    # A new VTEP changes only the set: one ipset restore, no iptables-restore.
    grown = with_vteps(doc.model_copy(update={"ports": [moved]}), ["10.250.0.3"], 3)
    assert agent.sync(grown).ok
    assert agent.stats.ipset_restores == 1 and agent.stats.iptables_restores == 0


def _sink(ns: str, port: int, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, PROBE, "sink", str(port), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_vxlan_from_a_stranger_on_the_underlay_is_dropped(fabric: Fabric) -> None:
    sc = two_ports(fabric)
    h1, wa = fabric.ns("h1"), fabric.workload("h1", "wa")
    stranger = fabric.attach("x", "10.250.0.99")  # on the underlay, but not a host
    vni = sc.docs["h1"].subnets[0].vni

    def inject(count: int) -> None:  # a frame for workload a, as if from its subnet
        sh(
            "ip", "netns", "exec", stranger, sys.executable, PROBE, "send", VTEP["h1"],
            str(vni), sc.a.mac, "02:00:00:99:99:99", "10.77.0.99", sc.a.ip, "7999", str(count),
        )  # fmt: skip

    procs: list[subprocess.Popen[str]] = []
    try:
        procs.append(_sink(wa, 7999, 2.0))
        before = drops(h1)
        inject(5)
        assert wait_for(lambda: drops(h1) >= before + 5), (before, drops(h1))
        out, _ = procs[-1].communicate(timeout=10)
        assert out == ""  # the workload received none of it
        assert ping(wa, sc.b.ip) and ping(fabric.workload("h2", "wb"), sc.a.ip)  # peers do

        # Control: once the document names that address as a VTEP, the very same frames
        # reach the workload, so it was the guard that stopped them.
        assert fabric.agent("h1").sync(with_vteps(sc.docs["h1"], ["10.250.0.99"], 2)).ok
        procs.append(_sink(wa, 7999, 2.0))
        inject(3)
        out, _ = procs[-1].communicate(timeout=10)
        assert "10.77.0.99 probe" in out
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
