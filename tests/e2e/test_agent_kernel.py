"""The agent against the real kernel, without the control plane.

Each test gets two throwaway "host" namespaces joined by a veth pair (underlay
10.250.0.0/24, which exists only inside them) and an Agent per host operating on its
host namespace by name, as in the sandbox. Everything a test makes carries a unique
prefix and is removed in a finally, also when the test fails; the fixture then checks
that no namespace is left and that the root namespace's links are exactly as before.
Traffic is real ICMP between workload namespaces and never leaves them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

if os.geteuid() != 0 or not (shutil.which("ip") and shutil.which("ping")):
    pytest.skip("needs root, iproute2 and ping", allow_module_level=True)

from workers.agent import names
from workers.agent.agent import Agent
from workers.protocol import HostState, PortState, RemotePort, SubnetState

pytestmark = pytest.mark.e2e

VTEP = {"h1": "10.250.0.1", "h2": "10.250.0.2"}
BENCH_PORTS = int(os.environ.get("VPCD_BENCH_PORTS", "200"))


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command from an argument list (never a shell)."""
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=30)


def netns_list() -> set[str]:
    return {line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines() if line}


def root_links() -> set[str]:
    return {line.split(":")[1].strip() for line in sh("ip", "-o", "link").stdout.splitlines()}


def links(ns: str) -> dict[str, dict[str, Any]]:
    return {
        link["ifname"]: link for link in json.loads(sh("ip", "-n", ns, "-j", "-d", "link").stdout)
    }


def fdb(ns: str, device: str) -> set[tuple[str, str]]:
    out = json.loads(sh("bridge", "-n", ns, "-j", "fdb", "show", "dev", device).stdout)
    return {(e["mac"], e["dst"]) for e in out if "dst" in e}


def ping(ns: str, address: str, tries: int = 3) -> bool:
    for _ in range(tries):
        if (
            sh(
                "ip", "netns", "exec", ns, "ping", "-n", "-c1", "-W1", address, check=False
            ).returncode
            == 0
        ):
            return True
    return False


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@dataclass
class Fabric:
    prefix: str
    state_dir: Path
    agents: dict[str, Agent] = field(default_factory=dict)

    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def workload(self, host: str, netns: str) -> str:
        return f"{self.ns(host)}-{netns}"

    def agent(self, host: str) -> Agent:
        if host not in self.agents:
            self.agents[host] = Agent(
                host, self.ns(host), f"{self.ns(host)}-", self.state_dir / host
            )
        return self.agents[host]

    def restart(self, host: str) -> Agent:
        self.agents.pop(host).close()
        return self.agent(host)


@pytest.fixture
def fabric(tmp_path: Path) -> Iterator[Fabric]:
    prefix = f"vt{uuid.uuid4().hex[:6]}"
    before = root_links()
    fab = Fabric(prefix, tmp_path)
    try:
        h1, h2 = fab.ns("h1"), fab.ns("h2")
        sh("ip", "netns", "add", h1)
        sh("ip", "netns", "add", h2)
        sh("ip", "-n", h1, "link", "add", "u0", "type", "veth", "peer", "name", "u0", "netns", h2)
        for host, ns in (("h1", h1), ("h2", h2)):
            sh("ip", "-n", ns, "addr", "add", f"{VTEP[host]}/24", "dev", "u0")
            sh("ip", "-n", ns, "link", "set", "u0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield fab
    finally:
        for agent in fab.agents.values():
            agent.close()
        for ns in sorted(netns_list()):
            if ns.startswith(prefix):
                sh("ip", "netns", "del", ns, check=False)
    left = [ns for ns in netns_list() if ns.startswith(prefix)]
    assert not left, f"namespaces left behind: {left}"
    assert root_links() == before, "the root namespace's links changed"


# ------------------------------------------------------------------ states


def subnet_id() -> str:
    return str(uuid.uuid4())


def port(sid: str, netns: str, n: int, **kw: Any) -> PortState:
    return PortState(
        id=str(uuid.uuid4()),
        revision=1,
        subnet_id=sid,
        netns=netns,
        mac=f"02:00:00:{n >> 16 & 255:02x}:{n >> 8 & 255:02x}:{n & 255:02x}",
        ip=f"10.77.{n >> 8 & 255}.{n & 255}",
        prefixlen=16,
        **kw,
    )


def subnet(sid: str, vni: int, remotes: dict[str, list[PortState]], **kw: Any) -> SubnetState:
    return SubnetState(
        id=sid,
        revision=1,
        vni=vni,
        cidr="10.77.0.0/16",
        gateway_ip="10.77.0.1",
        remote_vteps=sorted(VTEP[h] for h in remotes),
        remote_ports=[
            RemotePort(mac=p.mac, ip=p.ip, vtep_ip=VTEP[h]) for h, ps in remotes.items() for p in ps
        ],
        **kw,
    )


def states(
    sid: str, vni: int, ports: dict[str, list[PortState]], revision: int = 1
) -> dict[str, HostState]:
    """Each host's document, as the controller would compile it."""
    out = {}
    for host in VTEP:
        mine = ports.get(host, [])
        remotes = {h: ps for h, ps in ports.items() if h != host and ps}
        out[host] = HostState(
            host=host,
            revision=revision,
            vtep_ip=VTEP[host],
            subnets=[subnet(sid, vni, remotes, routed=True)] if mine else [],
            ports=mine,
        )
    return out


@dataclass
class Scenario:
    sid: str
    a: PortState
    b: PortState
    docs: dict[str, HostState]


def two_ports(fab: Fabric) -> Scenario:
    sid = subnet_id()
    a, b = port(sid, "wa", 10), port(sid, "wb", 20)
    docs = states(sid, 4000 + int(sid[:4], 16), {"h1": [a], "h2": [b]})
    for host, doc in docs.items():
        report = fab.agent(host).sync(doc)
        assert report.ok, report
        assert {(r.kind, r.ok) for r in report.results} == {("subnet", True), ("port", True)}
    return Scenario(sid, a, b, docs)


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
