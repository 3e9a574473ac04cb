"""Security groups against the real kernel: two agents on the throwaway fabric of
tests/e2e/agent_fabric.py, workloads talking across hosts (VXLAN) and on one host.

Documents are built by hand, as the controller would compile them; everything lives in
the fabric's namespaces, removed by its fixture even when a test fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

if os.geteuid() != 0 or not all(
    shutil.which(t) for t in ("ip", "ping", "iptables-save", "ipset", "conntrack", "sysctl")
):
    pytest.skip("needs root, iproute2, iptables, ipset and conntrack", allow_module_level=True)

from tests.e2e.agent_fabric import Fabric, build_fabric, port, sh, states, subnet_id
from workers.agent.planners.secgroups import group_set
from workers.protocol import (
    HostState,
    NetworkAclState,
    PortState,
    SecurityGroupRuleState,
    SecurityGroupState,
)

pytestmark = pytest.mark.e2e

ECHO = str(Path(__file__).with_name("echo.py"))


@pytest.fixture
def fabric(tmp_path: Path) -> Iterator[Fabric]:
    with build_fabric(tmp_path) as fab:
        yield fab


def rule(direction: str, protocol: str = "any", **kw: object) -> SecurityGroupRuleState:
    return SecurityGroupRuleState(
        id=str(uuid.uuid4()),
        direction=direction,  # type: ignore[arg-type]
        protocol=protocol,  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


class World:
    """Three ports (a on h1; b and c on h2) of one subnet, and their groups."""

    def __init__(self, fab: Fabric) -> None:
        self.fab = fab
        self.sid = subnet_id()
        self.vni = 5000 + int(self.sid[:3], 16)
        self.ports = {
            "a": port(self.sid, "wa", 10),
            "b": port(self.sid, "wb", 20),
            "c": port(self.sid, "wc", 30),
        }
        self.where = {"a": "h1", "b": "h2", "c": "h2"}
        self.groups: dict[str, SecurityGroupState] = {}
        self.membership: dict[str, list[str] | None] = dict.fromkeys(self.ports)
        self.acl: NetworkAclState | None = None  # the subnet's network ACL
        self.revision = 0

    def group(self, gid: str, *rules: SecurityGroupRuleState) -> None:
        old = self.groups.get(gid)
        self.groups[gid] = SecurityGroupState(
            id=gid, revision=(old.revision + 1) if old else 1, rules=list(rules)
        )

    def docs(self) -> dict[str, HostState]:
        self.revision += 1
        ports: dict[str, list[PortState]] = {"h1": [], "h2": []}
        for name, p in self.ports.items():
            ports[self.where[name]].append(
                p.model_copy(update={"security_group_ids": self.membership[name]})
            )
        out = states(self.sid, self.vni, ports, self.revision)
        for host, doc in out.items():
            used = {g for p in doc.ports for g in p.security_group_ids or ()}
            named = {
                r.remote_group_id
                for g in used
                for r in self.groups[g].rules
                if r.remote_group_id is not None
            }
            groups = []
            for gid in sorted(used | named):
                members = [
                    self.ports[n].ip for n, gs in self.membership.items() if gid in (gs or ())
                ]
                groups.append(
                    self.groups[gid].model_copy(
                        update={
                            "members": sorted(members) if gid in named else [],
                            "rules": self.groups[gid].rules if gid in used else [],
                        }
                    )
                )
            acls = [self.acl] if self.acl is not None and doc.subnets else []
            out[host] = doc.model_copy(update={"security_groups": groups, "network_acls": acls})
        return out

    def sync(self, full: bool = False) -> dict[str, HostState]:
        docs = self.docs()
        for host, doc in docs.items():
            report = self.fab.agent(host).sync(doc, full=full)
            assert report.ok, report
        return docs

    def ns(self, name: str) -> str:
        return self.fab.workload(self.where[name], self.ports[name].netns)

    def ping(self, src: str, dst: str) -> bool:
        done = sh(
            "ip", "netns", "exec", self.ns(src), "ping", "-n", "-c1", "-W1",
            self.ports[dst].ip, check=False,
        )  # fmt: skip
        return done.returncode == 0

    def ask(self, src: str, dst: str, proto: str, number: int) -> bool:
        done = sh(
            "ip", "netns", "exec", self.ns(src), sys.executable, ECHO, "ask", proto,
            self.ports[dst].ip, str(number), check=False,
        )  # fmt: skip
        return done.returncode == 0 and done.stdout.strip() == dst


@pytest.fixture
def world(fabric: Fabric) -> Iterator[World]:
    w = World(fabric)
    servers: list[subprocess.Popen[str]] = []

    def serve(name: str, proto: str, number: int) -> None:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", w.ns(name), sys.executable, ECHO, "serve", proto,
             str(number), name],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        servers.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    w.serve = serve  # type: ignore[attr-defined]
    try:
        yield w
    finally:
        for proc in servers:
            proc.kill()
            proc.wait(timeout=10)


def test_unfiltered_ports_talk_and_no_group_denies_ingress(world: World) -> None:
    world.sync()
    assert world.ping("a", "b") and world.ping("b", "c")
    world.membership["b"] = []  # b: no group -> all ingress denied, all egress allowed
    world.sync()
    assert not world.ping("a", "b") and not world.ping("c", "b")
    assert world.ping("b", "a") and world.ping("b", "c")  # replies come back (stateful)
    assert sh("ip", "netns", "exec", world.fab.ns("h2"), "sysctl", "-n",
              "net.bridge.bridge-nf-call-iptables").stdout.strip() == "1"  # fmt: skip


def test_protocols_ports_and_cidrs(world: World) -> None:
    world.group(
        "web",
        rule("ingress", "tcp", port_min=8000, port_max=8100),
        rule("ingress", "udp", port_min=5353, port_max=5353, remote_cidr=world.ports["a"].ip),
    )
    world.membership["b"] = ["web"]
    world.sync()
    for name, proto, number in (("b", "tcp", 8080), ("b", "tcp", 9000), ("b", "udp", 5353)):
        world.serve(name, proto, number)  # type: ignore[attr-defined]
    assert world.ask("a", "b", "tcp", 8080)  # in the range
    assert not world.ask("a", "b", "tcp", 9000)  # outside it
    assert world.ask("a", "b", "udp", 5353)  # from a's /32
    assert not world.ask("c", "b", "udp", 5353)  # c is not in that CIDR (same host as b)
    assert not world.ping("a", "b")  # no icmp rule
    world.group("web", rule("ingress", "icmp"))
    world.sync()
    assert world.ping("a", "b") and world.ping("c", "b")
    assert not world.ask("a", "b", "tcp", 8080)


def test_remote_group_members_change_sets_only(world: World) -> None:
    world.group("db", rule("ingress", "icmp", remote_group_id="app"))
    world.group("app", rule("egress"))  # a group without egress rules sends nothing
    world.membership.update(a=[], b=["db"], c=["app"])
    world.sync()
    assert world.ping("c", "b") and not world.ping("a", "b")
    h2 = world.fab.agent("h2")
    world.membership["a"] = ["app"]  # a (on h1) joins: on h2 only the set changes
    world.sync()
    assert h2.stats.iptables_restores == 0 and h2.stats.ipset_restores == 1
    assert world.ping("a", "b")
    world.membership["a"] = []  # and leaves
    world.sync()
    assert h2.stats.iptables_restores == 0 and h2.stats.ipset_restores == 1
    assert h2.stats.conntrack_deletes == 2  # flows from and to the member that went
    assert not world.ping("a", "b") and world.ping("c", "b")
    members = sh("ip", "netns", "exec", world.fab.ns("h2"), "ipset", "list", group_set("app"))
    assert world.ports["c"].ip in members.stdout and world.ports["a"].ip not in members.stdout


def test_several_groups_are_a_union(world: World) -> None:
    world.group("icmp", rule("ingress", "icmp"))
    world.group("ssh", rule("ingress", "tcp", port_min=22, port_max=22))
    world.membership["b"] = ["icmp"]
    world.sync()
    world.serve("b", "tcp", 22)  # type: ignore[attr-defined]
    assert world.ping("a", "b") and not world.ask("a", "b", "tcp", 22)
    world.membership["b"] = ["icmp", "ssh"]
    world.sync()
    assert world.ping("a", "b") and world.ask("a", "b", "tcp", 22)


def test_egress_rules_and_spoofing(world: World) -> None:
    world.group("out", rule("egress", "icmp", remote_cidr=world.ports["b"].ip))
    world.membership["a"] = ["out"]
    world.sync()
    assert world.ping("a", "b") and not world.ping("a", "c")
    # Spoofed source IP: a takes c's address by hand; its packets no longer leave.
    ns = world.ns("a")
    sh("ip", "-n", ns, "addr", "add", f"{world.ports['c'].ip}/32", "dev", "eth0")
    done = sh("ip", "netns", "exec", ns, "ping", "-n", "-c1", "-W1", "-I",
              world.ports["c"].ip, world.ports["b"].ip, check=False)  # fmt: skip
    assert done.returncode != 0
    sh("ip", "-n", ns, "addr", "del", f"{world.ports['c'].ip}/32", "dev", "eth0")
    assert world.ping("a", "b")
    # Spoofed MAC: a changes its MAC by hand; its frames are dropped.
    sh("ip", "-n", ns, "link", "set", "eth0", "address", "02:00:00:99:99:01")
    sh("ip", "-n", ns, "neigh", "flush", "all")
    assert not world.ping("a", "b")


def test_rule_deletion_cuts_an_established_connection(world: World) -> None:
    world.group("web", rule("ingress", "tcp", port_min=7000, port_max=7000))
    world.membership["b"] = ["web"]
    world.sync()
    listener = subprocess.Popen(
        ["ip", "netns", "exec", world.ns("b"), sys.executable, "-c",
         "import socket,sys\n"
         "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
         "s.bind(('0.0.0.0',7000));s.listen(1);print('ready',flush=True)\n"
         "c,_=s.accept()\n"
         "while True:\n d=c.recv(64)\n if not d: break\n c.sendall(d)\n"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    client = subprocess.Popen(
        ["ip", "netns", "exec", world.ns("a"), sys.executable, "-c",
         "import socket,sys\n"
         f"s=socket.create_connection(({world.ports['b'].ip!r},7000),timeout=2)\n"
         "for line in sys.stdin:\n"
         " try:\n  s.sendall(b'x');ok=s.recv(8)==b'x'\n"
         " except OSError: ok=False\n"
         " print('ok' if ok else 'cut',flush=True)\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
        assert client.stdin is not None and client.stdout is not None

        def echo() -> str:
            assert client.stdin is not None and client.stdout is not None
            client.stdin.write("go\n")
            client.stdin.flush()
            return client.stdout.readline().strip()

        assert echo() == "ok"
        world.group("web")  # the rule goes
        world.sync()
        assert world.fab.agent("h2").stats.conntrack_deletes >= 1
        assert echo() == "cut"
    finally:
        for proc in (client, listener):
            proc.kill()
            proc.wait(timeout=10)


def test_drift_is_repaired_and_teardown_leaves_nothing(world: World) -> None:
    world.group("db", rule("ingress", "icmp", remote_group_id="app"))
    world.group("app", rule("egress"))  # a group without egress rules sends nothing
    world.membership.update(a=["app"], b=["db"])
    docs = world.sync()
    h2 = world.fab.ns("h2")

    def ours() -> list[str]:
        saved = sh("ip", "netns", "exec", h2, "iptables-save", "-t", "filter").stdout
        return [line for line in saved.splitlines() if "-A vpcd-" in line]

    built = ours()
    chain = next(line.split()[1] for line in built if line.startswith("-A vpcd-i-"))
    sh("ip", "netns", "exec", h2, "iptables", "-D", chain, "1")
    sh("ip", "netns", "exec", h2, "ipset", "del", group_set("app"), world.ports["a"].ip)
    sh("ip", "netns", "exec", h2, "iptables", "-A", "FORWARD", "-s", "10.98.0.0/16", "-j", "DROP")
    assert not world.ping("a", "b") and ours() != built
    assert world.fab.agent("h2").sync(docs["h2"], full=True).ok  # the periodic resync
    assert ours() == built and world.ping("a", "b")
    saved = sh("ip", "netns", "exec", h2, "iptables-save").stdout
    assert "-A FORWARD -s 10.98.0.0/16 -j DROP" in saved  # foreign rule untouched
    world.ports = {}
    world.membership = {}
    world.sync()
    for host in ("h1", "h2"):
        ns = world.fab.ns(host)
        saved = sh("ip", "netns", "exec", ns, "iptables-save").stdout
        assert "vpcd-" not in saved
        assert "vpcd-" not in sh("ip", "netns", "exec", ns, "ipset", "save").stdout


ARP_SPOOF = """
import socket, struct, sys
ifname, target_mac, target_ip, claimed_ip, my_mac = sys.argv[1:6]
mac = lambda m: bytes.fromhex(m.replace(':', ''))
ip = socket.inet_aton
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
frame = mac(target_mac) + mac(my_mac) + struct.pack('!H', 0x0806)
frame += struct.pack('!HHBBH', 1, 0x0800, 6, 4, 2)  # an ARP reply
frame += mac(my_mac) + ip(claimed_ip) + mac(target_mac) + ip(target_ip)
for _ in range(3):
    s.send(frame)
"""


def neigh_mac(ns: str, address: str) -> str | None:
    out = sh("ip", "-n", ns, "neigh", "show", address).stdout.split()
    return out[out.index("lladdr") + 1] if "lladdr" in out else None


@pytest.mark.parametrize("filtered", [True, False], ids=["filtered", "control"])
def test_arp_replies_for_an_address_not_owned_are_dropped(world: World, filtered: bool) -> None:
    world.group("out", rule("egress"), rule("ingress"))
    world.membership.update(a=["out"] if filtered else None, b=["out"], c=["out"])
    world.sync()
    b_ns, a, b, c = world.ns("b"), world.ports["a"], world.ports["b"], world.ports["c"]
    assert world.ping("b", "c") and neigh_mac(b_ns, c.ip) == c.mac
    time.sleep(1.5)  # past the neighbour entry's locktime: a reply may now override it
    # a (on h1) tells b (on h2) that c's address is at a's MAC
    sh("ip", "netns", "exec", world.ns("a"), sys.executable, "-c", ARP_SPOOF, "eth0",
       b.mac, b.ip, c.ip, a.mac)  # fmt: skip
    time.sleep(0.5)
    poisoned = neigh_mac(b_ns, c.ip) == a.mac
    assert poisoned is not filtered  # the control shows the frame would have worked
