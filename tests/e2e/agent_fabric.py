"""The fabric the agent's kernel tests run on: two throwaway host namespaces on a
private underlay, an Agent per host, and helpers that read the kernel with iproute2.

The underlay is a bridge in its own namespace (10.250.0.0/24, which exists only inside
these namespaces); hosts, and any extra namespace a test attaches, hang off it with a
veth. Everything carries a unique prefix and is removed in the fixture's finally, also
when the test fails; it then checks that no namespace is left and that the root
namespace's links are exactly as before.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers.agent.agent import Agent
from workers.protocol import HostState, PortState, RemotePort, SubnetState

VTEP = {"h1": "10.250.0.1", "h2": "10.250.0.2"}


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

    def attach(self, name: str, address: str) -> str:
        """Put namespace `name` (made if missing) on the underlay as u0 with `address`."""
        ns = self.ns(name)
        if ns not in netns_list():
            sh("ip", "netns", "add", ns)
        under = self.ns("u")
        sh(
            "ip",
            "-n",
            under,
            "link",
            "add",
            name,
            "type",
            "veth",
            "peer",
            "name",
            "u0",
            "netns",
            ns,
        )
        sh("ip", "-n", under, "link", "set", name, "master", "br0", "up")
        sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "u0")
        sh("ip", "-n", ns, "link", "set", "u0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        return ns


@contextlib.contextmanager
def build_fabric(tmp_path: Path) -> Iterator[Fabric]:
    """The fabric for one test (each test module wraps it in its `fabric` fixture)."""
    prefix = f"vt{uuid.uuid4().hex[:6]}"
    before = root_links()
    fab = Fabric(prefix, tmp_path)
    try:
        under = fab.ns("u")
        sh("ip", "netns", "add", under)
        sh("ip", "-n", under, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", under, "link", "set", "br0", "up")
        for host, address in VTEP.items():
            fab.attach(host, address)
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
