"""The agent against the real kernel, without the control plane.

Each test gets two throwaway "host" namespaces on a private underlay and an Agent per
host operating on its host namespace by name, as in the sandbox (tests/e2e/agent_fabric.py,
which also removes everything a test made, even when it fails). Traffic is real ICMP
between workload namespaces and never leaves them.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

if os.geteuid() != 0 or not (shutil.which("ip") and shutil.which("ping")):
    pytest.skip("needs root, iproute2 and ping", allow_module_level=True)

from tests.e2e.agent_fabric import (
    VTEP,
    Fabric,
    build_fabric,
    fdb,
    links,
    netns_list,
    ping,
    port,
    sh,
    states,
    subnet_id,
    two_ports,
    wait_for,
)
from workers.agent import names
from workers.protocol import HostState

pytestmark = pytest.mark.e2e

BENCH_PORTS = int(os.environ.get("VPCD_BENCH_PORTS", "200"))


@pytest.fixture
def fabric(tmp_path: Path) -> Iterator[Fabric]:
    with build_fabric(tmp_path) as fab:
        yield fab


# ------------------------------------------------------------------- tests


def test_ports_on_two_hosts_ping_and_kernel_matches_the_document(fabric: Fabric) -> None:
    sc = two_ports(fabric)
    wa, wb = fabric.workload("h1", "wa"), fabric.workload("h2", "wb")
    assert ping(wa, sc.b.ip) and ping(wb, sc.a.ip)

    h1 = links(fabric.ns("h1"))
    br, vx, ve = names.bridge_name(sc.sid), names.vxlan_name(sc.sid), names.host_veth_name(sc.a.id)
    info = h1[vx]["linkinfo"]["info_data"]
    assert info["id"] == sc.docs["h1"].subnets[0].vni
    assert info["local"] == VTEP["h1"] and info["port"] == 4789 and info["learning"] is False
    assert h1[vx]["mtu"] == 1450 and h1[vx]["master"] == br
    assert h1[ve]["master"] == br and h1[ve]["mtu"] == 1450 and "UP" in h1[ve]["flags"]
    assert fdb(fabric.ns("h1"), vx) == {
        ("00:00:00:00:00:00", VTEP["h2"]),
        (sc.b.mac, VTEP["h2"]),
    }
    eth0 = links(wa)["eth0"]
    assert eth0["address"] == sc.a.mac and eth0["mtu"] == 1450 and "UP" in eth0["flags"]
    addrs = json.loads(sh("ip", "-n", wa, "-j", "addr", "show", "dev", "eth0").stdout)[0]
    assert {(a["local"], a["prefixlen"]) for a in addrs["addr_info"] if a["family"] == "inet"} == {
        (sc.a.ip, 16)
    }
    assert "default via 10.77.0.1 dev eth0" in sh("ip", "-n", wa, "route").stdout

    # After an apply a fresh plan is empty, on both hosts.
    for host, doc in sc.docs.items():
        assert fabric.agent(host).pending(doc) == []


def test_stale_poke_is_a_noop_and_full_sync_repairs_drift(fabric: Fabric) -> None:
    sc = two_ports(fabric)
    h1, h2 = fabric.ns("h1"), fabric.ns("h2")
    wa = fabric.workload("h1", "wa")
    vx1 = names.vxlan_name(sc.sid)
    sh("ip", "-n", h1, "link", "del", names.bridge_name(sc.sid))
    sh("ip", "-n", h2, "link", "del", names.host_veth_name(sc.b.id))
    for mac, dst in fdb(h1, vx1):
        sh("bridge", "-n", h1, "fdb", "del", mac, "dev", vx1, "dst", dst)
    sh("ip", "-n", wa, "link", "set", "eth0", "mtu", "1400")
    sh("ip", "-n", wa, "route", "del", "default")
    # h2's workload namespace deleted by hand (the agent's cached socket must not keep
    # the old one, with its veth, alive: the repair recreates both).
    sh("ip", "netns", "del", fabric.workload("h2", "wb"))
    assert not ping(wa, sc.b.ip, tries=1)

    # The same revision again, not full: a stale poke, nothing happens.
    report = fabric.agent("h1").sync(sc.docs["h1"])
    assert "not newer" in (report.detail or "")
    assert fabric.agent("h1").stats.skipped
    assert names.bridge_name(sc.sid) not in links(h1)

    for host, doc in sc.docs.items():
        report = fabric.agent(host).sync(doc, full=True)
        assert report.ok, report
        assert fabric.agent(host).stats.ops > 0
        stats = fabric.agent(host).stats  # every op went through, counted by type
        assert sum(stats.applied.values()) == stats.ops and stats.errors == 0
        assert fabric.agent(host).pending(doc) == []
    assert names.bridge_name(sc.sid) in links(h1)
    assert names.host_veth_name(sc.b.id) in links(h2)
    assert fdb(h1, vx1) == {("00:00:00:00:00:00", VTEP["h2"]), (sc.b.mac, VTEP["h2"])}
    assert links(wa)["eth0"]["mtu"] == 1450
    assert "default via 10.77.0.1 dev eth0" in sh("ip", "-n", wa, "route").stdout
    assert fabric.workload("h2", "wb") in netns_list()
    assert ping(wa, sc.b.ip) and ping(fabric.workload("h2", "wb"), sc.a.ip)


def test_port_change_and_removal_clean_up_what_the_agent_made(fabric: Fabric) -> None:
    sc = two_ports(fabric)
    h1, h2 = fabric.ns("h1"), fabric.ns("h2")
    # A netns the agent did not create, used by a port on h2, and foreign objects on h1.
    precreated = fabric.workload("h2", "wc")
    sh("ip", "netns", "add", precreated)
    sh("ip", "-n", h1, "link", "add", "br-foreign", "type", "bridge")
    c = port(sc.sid, "wc", 30)
    moved_a = sc.a.model_copy(update={"ip": "10.77.0.11", "revision": 2})
    docs = states(sc.sid, sc.docs["h1"].subnets[0].vni, {"h1": [moved_a], "h2": [sc.b, c]}, 2)
    for host, doc in docs.items():
        assert fabric.agent(host).sync(doc).ok
        assert fabric.agent(host).stats.full is False  # incremental: only the delta observed
        assert fabric.agent(host).pending(doc) == []
    assert ping(fabric.workload("h1", "wa"), c.ip) and ping(precreated, "10.77.0.11")

    # h2 drops its ports: bridge, vxlan, veths and the netns it made go; wc stays (not ours).
    docs = states(sc.sid, docs["h1"].subnets[0].vni, {"h1": [moved_a]}, 3)
    for host, doc in docs.items():
        assert fabric.agent(host).sync(doc).ok
    assert not [n for n in links(h2) if names.is_owned_link(n)]
    assert fabric.workload("h2", "wb") not in netns_list()
    assert precreated in netns_list() and "eth0" not in links(precreated)
    # ...and the agent holds nothing that keeps wc alive once its owner deletes it: a
    # veth from h2 into wc dies with the namespace only if no socket pins it.
    sh(
        "ip",
        "-n",
        h2,
        "link",
        "add",
        "pin0",
        "type",
        "veth",
        "peer",
        "name",
        "pin1",
        "netns",
        precreated,
    )
    sh("ip", "netns", "del", precreated)
    assert wait_for(lambda: "pin0" not in links(h2)), "a deleted namespace is still pinned"
    # h1 keeps its subnet but no longer floods towards h2.
    assert fdb(h1, names.vxlan_name(sc.sid)) == set()

    # Last port gone on h1 too: nothing of ours left; foreign objects untouched.
    docs = states(sc.sid, 1, {}, 4)
    assert fabric.agent("h1").sync(docs["h1"]).ok
    assert [n for n in links(h1) if names.is_owned_link(n)] == []
    assert fabric.workload("h1", "wa") not in netns_list()
    assert "br-foreign" in links(h1)


def test_a_failing_port_is_reported_and_the_rest_applied(fabric: Fabric) -> None:
    sid = subnet_id()
    # The workload netns already holds an eth0 that is not ours.
    taken = fabric.workload("h1", "busy")
    sh("ip", "netns", "add", taken)
    sh("ip", "-n", taken, "link", "add", "eth0", "type", "veth", "peer", "name", "other")
    good, bad = port(sid, "ok", 10), port(sid, "busy", 11)
    doc = states(sid, 4242, {"h1": [good, bad]})["h1"]
    report = fabric.agent("h1").sync(doc)
    results = {r.id: r for r in report.results}
    assert not report.ok
    assert results[good.id].ok and results[sid].ok
    assert not results[bad.id].ok and "eth0 already exists" in (results[bad.id].detail or "")
    assert fabric.agent("h1").stats.errors == 1  # the one op that failed, counted
    assert fabric.agent("h1").needs_full  # a failure makes the next sync full
    assert links(taken)["eth0"]["linkinfo"]["info_kind"] == "veth"  # the foreign eth0 survives
    assert "other" in links(taken)
    report = fabric.agent("h1").sync(doc)
    assert fabric.agent("h1").stats.full and not report.ok


def test_agent_restart_adopts_what_exists_and_still_owns_its_netns(fabric: Fabric) -> None:
    sc = two_ports(fabric)
    agent = fabric.restart("h1")
    report = agent.sync(sc.docs["h1"])
    assert report.ok and agent.stats.full and agent.stats.ops == 0
    assert ping(fabric.workload("h1", "wa"), sc.b.ip)
    # The ledger survived the restart: the netns it created before is removed now.
    assert agent.sync(states(sc.sid, 1, {}, 2)["h1"]).ok
    assert fabric.workload("h1", "wa") not in netns_list()


def test_benchmark_build_and_change_with_many_ports(fabric: Fabric) -> None:
    """Benchmark figures (printed, not asserted tightly): one host, BENCH_PORTS ports."""
    sid = subnet_id()
    ports = [port(sid, f"w{i}", i + 2) for i in range(BENCH_PORTS)]
    agent = fabric.agent("h1")
    doc = states(sid, 4343, {"h1": ports})["h1"]
    figures: dict[str, float] = {}

    def timed(label: str, state: HostState, full: bool = False) -> None:
        t = time.perf_counter()
        report = agent.sync(state, full=full)
        figures[label] = time.perf_counter() - t
        assert report.ok, report.detail
        print(f"{label:<40} {figures[label] * 1000:9.1f} ms  {agent.stats}")

    timed(f"full build, {BENCH_PORTS} ports", doc)
    timed("full resync, nothing to do", doc, full=True)
    assert agent.stats.ops == 0 and agent.stats.sockets_opened == 0  # sockets are reused
    changed = [*ports[:-1], ports[-1].model_copy(update={"ip": "10.77.250.1", "revision": 2})]
    timed(
        f"one port changed, {BENCH_PORTS - 1} in place",
        doc.model_copy(update={"revision": 2, "ports": changed}),
    )
    assert agent.stats.ops == 1 and not agent.stats.full
    extra = port(sid, "extra", 60000)
    timed("one port added", doc.model_copy(update={"revision": 3, "ports": [*changed, extra]}))
    timed("one port removed", doc.model_copy(update={"revision": 4, "ports": changed}))
    agent = fabric.restart("h1")
    timed(
        "full resync after agent restart", doc.model_copy(update={"revision": 4, "ports": changed})
    )
    assert agent.stats.ops == 0
    assert ping(fabric.workload("h1", "w0"), changed[1].ip)
    timed(
        "teardown of all ports", doc.model_copy(update={"revision": 5, "ports": [], "subnets": []})
    )
    assert not [ns for ns in netns_list() if ns.startswith(fabric.workload("h1", ""))]
