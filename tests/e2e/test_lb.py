"""Load balancers on a real sandbox (issue 9): three members on three hosts, each an
identity server, behind one load balancer on a network host; a client on h2.

Security groups as in Octavia: the VIP port is the service's (no user group filters it;
only the listeners' ports answer in the load balancer's namespace), while the members
keep their own groups, which must admit the load balancer's traffic: it comes from the
VIP address (haproxy connects from it, UDP is SNATed to it). The members here are in
their VPC's default group, which admits only its own members, so the module adds one
rule to it: ingress from the VIP.

Order matters (one load balancer for the module, built once): balance checks first, then
failure and recovery, draining, a haproxy killed by hand, `outside` through a floating IP,
and the cascade delete, after which no namespace, process or file of the load balancer
may remain.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cli import sandbox as sbx
from tests.e2e.conftest import Box

pytestmark = pytest.mark.e2e

IDENTITY = str(Path(__file__).with_name("identity.py"))
DELAY, FALL, RISE = 1, 2, 2
MEMBERS = {"m1": "h1", "m2": "h2", "m3": "h3"}
GHOST = "10.0.1.250"  # an address of the members' subnet that no port has
PORTS = {"rr": 80, "weighted": 81, "source": 82, "http": 83, "udp": 84}


class Lb:
    """The module's load balancer, its tenant, its members' servers and the client."""

    def __init__(self, box: Box) -> None:
        self.box = box
        self.who = box.tenant()
        (self.subnet,) = box.network(self.who)
        self.client_ns = box.workload("h2", "lbclient")
        self.client = box.port(self.who, self.subnet, "h2", "lbclient")
        self.ports = {
            name: box.port(self.who, self.subnet, host, f"lb{name}")
            for name, host in MEMBERS.items()
        }
        for port in [self.client, *self.ports.values()]:
            box.wait_status(self.who, port)
        self.servers: dict[tuple[str, str], subprocess.Popen[str]] = {}
        for name in MEMBERS:
            for proto, port in (("tcp", 8080), ("http", 8081), ("udp", 8053)):
                self.serve(name, proto, port)
        self.body = box.post("/v1/load-balancers", self.who, **self.tree())
        self.id = self.body["id"]
        self.vip = self.body["vip_address"]
        self.admit_vip()

    def admit_vip(self) -> None:
        """The members' group (their VPC's default one) admits the load balancer's
        traffic: from its VIP, to the members' ports (and its PING checks)."""
        vpc = self.get(f"/v1/vpcs/{self.subnet['vpc_id']}")
        for protocol, ports in (("tcp", (8080, 8081)), ("udp", (8053, 8053)), ("icmp", None)):
            span = {"port_min": ports[0], "port_max": ports[1]} if ports else {}
            self.box.post(
                "/v1/security-group-rules",
                self.who,
                security_group_id=vpc["default_security_group_id"],
                direction="ingress",
                protocol=protocol,
                remote_cidr=f"{self.vip}/32",
                **span,
            )

    def ns(self, member: str) -> str:
        return self.box.workload(MEMBERS[member], f"lb{member}")

    def exec(self, member: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(member), sys.executable, IDENTITY]

    def serve(self, member: str, proto: str, port: int) -> None:
        proc = subprocess.Popen(
            [*self.exec(member), "serve", proto, str(port), member],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.box.servers.append(proc)  # the box stops them whatever happens
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        self.servers[(member, proto)] = proc

    def kill(self, member: str, proto: str) -> None:
        proc = self.servers.pop((member, proto))
        proc.kill()
        proc.wait(timeout=5)

    def members(self, port: int, weights: tuple[int, ...] = (1, 1, 1)) -> list[dict[str, Any]]:
        return [
            {"address": self.ports[name]["ip_address"], "protocol_port": port, "weight": w}
            for name, w in zip(MEMBERS, weights, strict=True)
        ]

    def tree(self) -> dict[str, Any]:
        monitor = {"type": "TCP", "delay": DELAY, "timeout": 1, "max_retries": RISE}
        monitor["max_retries_down"] = FALL

        def listener(key: str, protocol: str, algorithm: str, **pool: Any) -> dict[str, Any]:
            return {
                "protocol": protocol,
                "protocol_port": PORTS[key],
                "name": key,
                "default_pool": {"protocol": protocol, "lb_algorithm": algorithm, **pool},
            }

        return {
            "vip_subnet_id": self.subnet["id"],
            "listeners": [
                listener(
                    "rr", "TCP", "ROUND_ROBIN", members=self.members(8080), healthmonitor=monitor
                ),
                listener("weighted", "TCP", "ROUND_ROBIN", members=self.members(8080, (2, 1, 1))),
                listener("source", "TCP", "SOURCE_IP", members=self.members(8080)),
                listener(
                    "http",
                    "HTTP",
                    "ROUND_ROBIN",
                    members=self.members(8081),
                    healthmonitor={**monitor, "type": "HTTP", "url_path": "/health"},
                ),
                listener(
                    "udp",
                    "UDP",
                    "ROUND_ROBIN",
                    members=self.members(8053),
                    healthmonitor={**monitor, "type": "UDP-CONNECT"},
                ),
            ],
        }

    def at(self, key: str) -> list[str]:
        return [self.vip, str(PORTS[key])]

    def count(
        self, proto: str, key: str, n: int, ns: str = "", address: str = ""
    ) -> dict[str, int]:
        r = self.box.run(
            ns or self.client_ns,
            sys.executable,
            IDENTITY,
            "count",
            proto,
            address or self.vip,
            str(PORTS[key]),
            str(n),
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        return dict(json.loads(r.stdout))

    def get(self, path: str) -> dict[str, Any]:
        r = self.box.http.get(path, headers=self.who)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def member_url(self, key: str, member: str) -> str:
        listener = next(
            x
            for x in self.get(f"/v1/load-balancers/{self.id}")["listeners"]
            if x["protocol_port"] == PORTS[key]
        )
        pool = listener["default_pool_id"]
        address = self.ports[member]["ip_address"]
        items = self.get(f"/v1/pools/{pool}/members?address={address}")["items"]
        return f"/v1/pools/{pool}/members/{items[0]['id']}"

    def wait(self, path: str, check: Callable[[dict[str, Any]], bool], timeout: float) -> float:
        """Seconds until GET path satisfies check."""
        start = time.monotonic()
        body: dict[str, Any] = {}
        while time.monotonic() - start < timeout:
            body = self.get(path)
            if check(body):
                return time.monotonic() - start
            time.sleep(0.2)
        raise AssertionError(f"{path} not as wanted after {timeout}s: {body}")

    @property
    def host(self) -> str:
        """The network host the load balancer runs on (its sandbox name)."""
        return str(self.get(f"/v1/load-balancers/{self.id}")["host"])

    @property
    def state_dir(self) -> Path:
        short = next(h["short"] for h in self.box.sb.hosts if h["name"] == self.host)
        return self.box.sb.dir / "agents" / short

    def haproxy_pid(self, state_dir: Path | None = None) -> int | None:
        state_dir = state_dir or self.state_dir
        try:
            pid = int((state_dir / "pids" / f"haproxy-{self.id}.pid").read_text())
        except (OSError, ValueError):
            return None
        cmd = Path(f"/proc/{pid}/cmdline")
        return pid if cmd.exists() and cmd.read_bytes().startswith(b"haproxy\0") else None


@pytest.fixture(scope="module")
def lb(box: Box) -> Iterator[Lb]:
    made = Lb(box)
    try:
        made.wait(
            f"/v1/load-balancers/{made.id}",
            lambda b: b["provisioning_status"] == "active" and b["operating_status"] == "ONLINE",
            90,
        )
        yield made
    finally:
        box.http.delete(f"/v1/load-balancers/{made.id}?cascade=true", headers=made.who)


def test_round_robin_spreads_99_requests_evenly(lb: Lb) -> None:
    counts = lb.count("tcp", "rr", 99)
    assert set(counts) == set(MEMBERS), counts
    assert max(counts.values()) - min(counts.values()) <= 1, counts


def test_weights_and_source_affinity(lb: Lb) -> None:
    counts = lb.count("tcp", "weighted", 100)
    for name, share in (("m1", 50), ("m2", 25), ("m3", 25)):
        assert abs(counts.get(name, 0) - share) <= 10, counts
    sticky = lb.count("tcp", "source", 30)
    assert len(sticky) == 1 and "!fail" not in sticky, sticky


def test_http_listener_adds_x_forwarded_for(lb: Lb) -> None:
    r = lb.box.run(
        lb.client_ns, sys.executable, IDENTITY, "ask", "http", lb.vip, str(PORTS["http"])
    )
    name, xff = r.stdout.split()
    assert name in MEMBERS and xff == lb.client["ip_address"], r.stdout


def test_udp_listener_balances_datagrams(lb: Lb) -> None:
    counts = lb.count("udp", "udp", 60)
    assert set(counts) == set(MEMBERS), counts
    assert max(counts.values()) - min(counts.values()) <= 1, counts


def test_a_udp_member_failing_its_probes_leaves_rotation(lb: Lb) -> None:
    url = lb.member_url("udp", "m3")
    lb.kill("m3", "udp")
    lb.wait(url, lambda b: b["operating_status"] == "OFFLINE", 60)
    counts = lb.count("udp", "udp", 30)
    assert "!fail" not in counts and "m3" not in counts, counts
    lb.serve("m3", "udp", 8053)
    lb.wait(url, lambda b: b["operating_status"] == "ONLINE", 60)
    assert "m3" in lb.count("udp", "udp", 9)


def test_a_failed_member_leaves_rotation_and_comes_back(lb: Lb) -> None:
    url = lb.member_url("rr", "m2")
    lb.kill("m2", "tcp")
    took = lb.wait(url, lambda b: b["operating_status"] == "OFFLINE", 60)
    # haproxy's own detection is delay * fall (+ one delay); the rest is the heartbeat
    print(f"member OFFLINE in the API {took:.1f}s after its server died")
    lb.wait(f"/v1/load-balancers/{lb.id}", lambda b: b["operating_status"] == "DEGRADED", 30)
    counts = lb.count("tcp", "rr", 30)
    assert "!fail" not in counts and "m2" not in counts, counts
    lb.serve("m2", "tcp", 8080)
    lb.wait(url, lambda b: b["operating_status"] == "ONLINE", 60)
    lb.wait(f"/v1/load-balancers/{lb.id}", lambda b: b["operating_status"] == "ONLINE", 30)
    assert "m2" in lb.count("tcp", "rr", 9)


def test_draining_keeps_open_connections(lb: Lb) -> None:
    holder = subprocess.Popen(
        ["ip", "netns", "exec", lb.client_ns, sys.executable, IDENTITY, "hold", *lb.at("rr")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    lb.box.servers.append(holder)
    try:
        assert holder.stdout is not None and holder.stdin is not None
        member = holder.stdout.readline().strip()
        url = lb.member_url("rr", member)
        r = lb.box.http.patch(url, json={"admin_state_up": False}, headers=lb.who)
        assert r.status_code == 200, r.text
        lb.wait(url, lambda b: b["provisioning_status"] == "active", 60)
        counts = lb.count("tcp", "rr", 30)
        assert member not in counts and "!fail" not in counts, counts
        holder.stdin.write("still-here\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "still-here"
        r = lb.box.http.patch(url, json={"admin_state_up": True}, headers=lb.who)
        lb.wait(url, lambda b: b["provisioning_status"] == "active", 60)
    finally:
        holder.kill()
        holder.wait(timeout=5)


@pytest.mark.parametrize(
    ("protocol", "port", "member_port"), [("TCP", 85, 8080), ("UDP", 86, 8053)]
)
def test_a_ping_monitor_takes_an_unreachable_member_out(
    lb: Lb, protocol: str, port: int, member_port: int
) -> None:
    """PING: haproxy's external check on a TCP pool, the agent's ICMP prober on a UDP one."""
    box, who = lb.box, lb.who
    listener = box.post(
        "/v1/listeners", who, load_balancer_id=lb.id, protocol=protocol, protocol_port=port
    )
    pool = box.post(
        "/v1/pools", who, listener_id=listener["id"], protocol=protocol, lb_algorithm="ROUND_ROBIN"
    )
    try:
        path = f"/v1/pools/{pool['id']}/members"
        address = lb.ports["m1"]["ip_address"]
        real = box.post(path, who, address=address, protocol_port=member_port)
        ghost = box.post(path, who, address=GHOST, protocol_port=member_port)  # no one there
        box.post(
            "/v1/health-monitors",
            who,
            pool_id=pool["id"],
            type="PING",
            delay=DELAY,
            timeout=1,
            max_retries=RISE,
            max_retries_down=FALL,
        )
        lb.wait(f"{path}/{ghost['id']}", lambda b: b["operating_status"] == "OFFLINE", 60)
        lb.wait(f"{path}/{real['id']}", lambda b: b["operating_status"] == "ONLINE", 60)
        # Once the checks settled, every request goes to the real member. A ping of the real
        # member lost under load may take it out for one check: then ask again.
        counts: list[dict[str, int]] = []
        deadline = time.monotonic() + 60
        while not counts or (counts[-1] != {"m1": 6} and time.monotonic() < deadline):
            argv = (sys.executable, IDENTITY, "count", protocol.lower(), lb.vip, str(port), "6")
            r = box.run(lb.client_ns, *argv, timeout=60)
            counts.append(json.loads(r.stdout))
        assert counts[-1] == {"m1": 6}, counts
    finally:
        box.http.delete(f"/v1/pools/{pool['id']}", headers=who)
        box.http.delete(f"/v1/listeners/{listener['id']}", headers=who)
    lb.wait(
        f"/v1/load-balancers/{lb.id}",
        lambda b: b["provisioning_status"] == "active" and b["operating_status"] == "ONLINE",
        60,
    )


def test_a_haproxy_killed_by_hand_is_restarted(lb: Lb) -> None:
    pid = lb.haproxy_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60  # the resync interval, plus a loaded machine
    while time.monotonic() < deadline:
        again = lb.haproxy_pid()
        if again is not None and again != pid:
            break
        time.sleep(0.3)
    else:
        raise AssertionError("haproxy was not restarted")
    counts = lb.count("tcp", "rr", 9)
    assert "!fail" not in counts, counts


def test_the_load_balancer_moves_when_its_network_host_fails(lb: Lb) -> None:
    box = lb.box
    old = lb.host
    short = next(h["short"] for h in box.sb.hosts if h["name"] == old)
    old_ns = f"{old}-lb-{lb.id}"
    # a client on h3, which is no network host (it stays up); the member on the failed
    # host is out of reach until it heals
    client_ns = box.workload("h3", "lbclient3")
    box.wait_status(lb.who, box.port(lb.who, lb.subnet, "h3", "lbclient3"))
    survivors = {m for m, h in MEMBERS.items() if box.host(h) != old}
    sbx.fail(box.name, short)
    start = time.monotonic()
    try:
        counts: dict[str, int] = {}
        while time.monotonic() - start < 180:
            counts = lb.count("tcp", "rr", 12, ns=client_ns)
            if counts and set(counts) <= survivors:
                break
            time.sleep(1)
        print(f"load balancer failover: {old} failed, served again after "
              f"{time.monotonic() - start:.1f}s")  # fmt: skip
        assert counts and set(counts) <= survivors, counts
        assert lb.host != old
    finally:
        sbx.heal(box.name, short)
        box.sb = sbx.load(box.name)  # the healed agent's new PID
    deadline = time.monotonic() + 90
    while old_ns in sbx.existing_namespaces():  # the healed host drops its stale copy
        assert time.monotonic() < deadline, f"the stale copy {old_ns} is still there"
        time.sleep(0.5)
    lb.wait(
        f"/v1/load-balancers/{lb.id}",
        lambda b: b["provisioning_status"] == "active" and b["operating_status"] == "ONLINE",
        90,
    )
    assert set(lb.count("tcp", "rr", 9, ns=client_ns)) == set(MEMBERS)


def test_outside_reaches_the_vip_through_a_floating_ip(lb: Lb) -> None:
    box, who = lb.box, lb.who
    made: list[tuple[str, dict[str, str]]] = []  # deleted in reverse, whatever happens

    def make(path: str, as_whom: dict[str, str], **body: Any) -> dict[str, Any]:
        obj = box.post(path, as_whom, **body)
        made.append((f"{path}/{obj['id']}", as_whom))
        return obj

    try:
        ext = make(
            "/v1/external-networks",
            box.admin,
            cidr="203.0.113.0/24",
            gateway_ip="203.0.113.1",
            allocation_pools=[{"start": "203.0.113.10", "end": "203.0.113.250"}],
        )
        vpc_id = lb.subnet["vpc_id"]
        router = make("/v1/routers", who, vpc_id=vpc_id, external_network_id=ext["id"])
        box.post(f"/v1/routers/{router['id']}/interfaces", who, subnet_id=lb.subnet["id"])
        made.append((f"/v1/routers/{router['id']}/interfaces/{lb.subnet['id']}", who))
        # the VIP port is made by the service, and takes a floating IP like any port
        fip = make(
            "/v1/floating-ips",
            who,
            external_network_id=ext["id"],
            port_id=lb.body["vip_port_id"],
        )
        lb.wait(f"/v1/floating-ips/{fip['id']}", lambda b: b["status"] == "active", 90)
        outside = f"{box.name}-outside"
        deadline = time.monotonic() + 60
        counts: dict[str, int] = {}
        while time.monotonic() < deadline:  # the router's NAT and the VIP's route settle
            counts = lb.count("tcp", "rr", 30, ns=outside, address=fip["address"])
            if "!fail" not in counts:
                break
            time.sleep(0.5)
        assert set(counts) == set(MEMBERS), counts
        assert max(counts.values()) - min(counts.values()) <= 1, counts
        # HTTP: the members see the outside client's own address in X-Forwarded-For
        r = box.run(outside, sys.executable, IDENTITY, "ask", "http", fip["address"], "83")
        name, xff = r.stdout.split()
        assert name in MEMBERS and xff == "203.0.113.1", r.stdout
    finally:
        for path, as_whom in reversed(made):
            r = box.http.delete(path, headers=as_whom)
            assert r.status_code in (204, 404), (path, r.text)


def test_cascade_delete_leaves_nothing_behind(lb: Lb) -> None:
    state_dir = lb.state_dir  # the API forgets the host with the load balancer
    pid = lb.haproxy_pid(state_dir)
    netns = f"{lb.host}-lb-{lb.id}"
    r = lb.box.http.delete(f"/v1/load-balancers/{lb.id}?cascade=true", headers=lb.who)
    assert r.status_code == 204, r.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        alive = pid is not None and Path(f"/proc/{pid}").exists()
        files = list((state_dir / "lb").glob("*")) if (state_dir / "lb").exists() else []
        if netns not in names and not alive and not files and lb.haproxy_pid(state_dir) is None:
            return
        time.sleep(0.3)
    raise AssertionError(f"left behind: netns {netns in names}, haproxy {alive}, files {files}")
