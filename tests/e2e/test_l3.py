"""L3 for real (issue 7): routers, SNAT and floating IPs on the sandbox's network hosts,
proven from `outside` (203.0.113.1), whose identity server answers with its name and the
caller's address. Every packet stays inside the sandbox's namespaces.

The scenarios share one module fixture (an external network and the identity server)
and run in file order; the last one deletes everything and checks nothing is left.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cli import sandbox as sbx
from tests.e2e.conftest import ECHO, Box
from tests.e2e.nsclient import ask_in
from workers.agent import names

pytestmark = pytest.mark.e2e
ID_PORT = 7070
WAIT = 60.0  # generous: the machine is shared


class L3:
    """What the scenarios share, and everything they made (deleted at the end)."""

    def __init__(self, box: Box) -> None:
        self.box = box
        self.outside = f"{box.name}-outside"
        self.ext = box.post(
            "/v1/external-networks",
            box.admin,
            cidr="203.0.113.0/24",
            gateway_ip="203.0.113.1",
            allocation_pools=[{"start": "203.0.113.10", "end": "203.0.113.250"}],
        )
        self.made: list[tuple[str, dict[str, str]]] = []  # (path, who), deleted in reverse
        self.groups: dict[str, str] = {}  # vpc id -> its open security group
        self.procs: list[subprocess.Popen[str]] = []

    def make(self, path: str, who: dict[str, str], **body: Any) -> dict[str, Any]:
        obj = self.box.post(path, who, **body)
        self.made.append((f"{path}/{obj['id']}", who))
        return obj

    def identity(self, ns: str, name: str) -> None:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, ECHO, "identity", str(ID_PORT), name],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def ask(self, ns: str, address: str) -> tuple[str, str] | None:
        """(server name, the address it saw us come from), or None if nothing answered."""
        got = self.box.ask(ns, "tcp", address, ID_PORT)
        if not got:
            return None
        name, _, caller = got.partition(" ")
        return name, caller

    def wait_ask(self, ns: str, address: str, timeout: float = WAIT) -> tuple[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.ask(ns, address)
            if got is not None:
                return got
            time.sleep(0.2)
        raise AssertionError(f"{ns} got no answer from {address}:{ID_PORT} in {timeout}s")

    def wait(self, path: str, who: dict[str, str], want: str = "active") -> dict[str, Any]:
        deadline = time.monotonic() + WAIT
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            body = self.box.http.get(path, headers=who).json()
            if body.get("status") == want:
                return body
            time.sleep(0.2)
        raise AssertionError(f"{path} not {want} in {WAIT}s: {body}")

    def vpc(
        self, who: dict[str, str], cidr: str, subnets: list[str]
    ) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
        """A VPC, its subnets, and a router with a gateway attached to all of them."""
        vpc = self.make("/v1/vpcs", who, cidr=cidr)
        subs = [self.make("/v1/subnets", who, vpc_id=vpc["id"], cidr=c) for c in subnets]
        r = self.make("/v1/routers", who, vpc_id=vpc["id"], external_network_id=self.ext["id"])
        for s in subs:
            self.box.post(f"/v1/routers/{r['id']}/interfaces", who, subnet_id=s["id"])
            self.made.append((f"/v1/routers/{r['id']}/interfaces/{s['id']}", who))
        return vpc, subs, r

    def workload(
        self, who: dict[str, str], subnet: dict[str, Any], host: str, ns: str, **kw: Any
    ) -> dict[str, Any]:
        kw.setdefault("security_group_ids", [self.open_group(who, subnet["vpc_id"])])
        port = self.make(
            "/v1/ports", who, subnet_id=subnet["id"], host=self.box.host(host), netns=ns, **kw
        )
        self.box.wait_status(who, port, timeout=WAIT)
        self.identity(self.box.workload(host, ns), ns)
        return port

    def open_group(self, who: dict[str, str], vpc_id: str) -> str:
        """A security group letting everything in and out (one per VPC): these scenarios
        test routing and NAT, so the workloads' own firewall must not be what drops."""
        if vpc_id not in self.groups:
            g = self.make("/v1/security-groups", who, vpc_id=vpc_id, name="l3-open")
            for direction in ("ingress", "egress"):
                self.make(
                    "/v1/security-group-rules",
                    who,
                    security_group_id=g["id"],
                    direction=direction,
                    protocol="any",
                )
            self.groups[vpc_id] = g["id"]
        return self.groups[vpc_id]

    def router_netns(self, r: dict[str, Any]) -> str:
        host = self.box.http.get(f"/v1/routers/{r['id']}", headers=self.box.admin).json()["host"]
        return names.router_netns(f"{host}-", r["id"])

    def cleanup(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(timeout=5)
        self.procs.clear()
        for path, who in reversed(self.made):
            r = self.box.http.delete(path, headers=who)
            assert r.status_code in (204, 404), (path, r.text)
        self.made.clear()
        self.groups.clear()


@pytest.fixture(scope="module")
def l3(box: Box) -> Iterator[L3]:
    world = L3(box)
    world.identity(world.outside, "outside")
    try:
        yield world
    finally:
        world.cleanup()
        box.http.delete(f"/v1/external-networks/{world.ext['id']}", headers=box.admin)


@pytest.fixture(scope="module")
def net(l3: L3, box: Box) -> dict[str, Any]:
    """Tenant A: one VPC, two subnets, a router; a workload on each subnet (h3, h1)."""
    t = box.tenant()
    vpc, (s1, s2), r = l3.vpc(t, "10.70.0.0/16", ["10.70.1.0/24", "10.70.2.0/24"])
    a = l3.workload(t, s1, "h3", "l3a")
    b = l3.workload(t, s2, "h1", "l3b")
    r = l3.wait(f"/v1/routers/{r['id']}", t)
    return {"t": t, "vpc": vpc, "s1": s1, "s2": s2, "router": r, "a": a, "b": b}


def ns_of(box: Box, host: str, netns: str) -> str:
    return box.workload(host, netns)


def test_routing_between_subnets_and_never_between_vpcs(
    l3: L3, box: Box, net: dict[str, Any]
) -> None:
    a_ns, b_ns = ns_of(box, "h3", "l3a"), ns_of(box, "h1", "l3b")
    box.wait_ping(a_ns, net["b"]["ip_address"], timeout=WAIT)
    assert l3.wait_ask(a_ns, net["b"]["ip_address"]) == ("l3b", net["a"]["ip_address"])
    assert l3.wait_ask(b_ns, net["a"]["ip_address"]) == ("l3a", net["b"]["ip_address"])

    # another tenant's VPC with its own router: no path, even with hand-added routes
    t2 = box.tenant()
    _, (o1,), r2 = l3.vpc(t2, "10.71.0.0/16", ["10.71.1.0/24"])
    c = l3.workload(t2, o1, "h3", "l3c")
    r2 = l3.wait(f"/v1/routers/{r2['id']}", t2)
    c_ns = ns_of(box, "h3", "l3c")
    r1_ns = l3.router_netns(net["router"])
    r2_ns = l3.router_netns(r2)
    box.run(a_ns, "ip", "route", "replace", "10.71.1.0/24", "via", net["s1"]["gateway_ip"])
    box.run(r1_ns, "ip", "route", "replace", "10.71.1.0/24", "via", r2["external_ip"])
    box.run(r2_ns, "ip", "route", "replace", "10.70.0.0/16", "via", net["router"]["external_ip"])
    try:
        assert not box.ping(a_ns, c["ip_address"], count=2, wait=1)
        assert not box.ping(c_ns, net["a"]["ip_address"], count=2, wait=1)
        assert l3.ask(a_ns, c["ip_address"]) is None
    finally:
        box.run(r1_ns, "ip", "route", "del", "10.71.1.0/24")
        box.run(r2_ns, "ip", "route", "del", "10.70.0.0/16")
        box.run(a_ns, "ip", "route", "del", "10.71.1.0/24")


def test_snat_outside_sees_the_routers_external_ip(l3: L3, box: Box, net: dict[str, Any]) -> None:
    got = l3.wait_ask(ns_of(box, "h3", "l3a"), "203.0.113.1")
    assert got == ("outside", net["router"]["external_ip"])


def test_fip_into_the_right_workload_and_its_egress(l3: L3, box: Box, net: dict[str, Any]) -> None:
    t = net["t"]
    fip = l3.make("/v1/floating-ips", t, external_network_id=l3.ext["id"], port_id=net["b"]["id"])
    net["fip"] = fip
    l3.wait(f"/v1/floating-ips/{fip['id']}", t)
    # from outside, the FIP reaches b (its identity server answers with its own name)
    assert l3.wait_ask(l3.outside, fip["address"]) == ("l3b", "203.0.113.1")
    # b's own traffic leaves as the FIP, not as the router's address
    assert l3.wait_ask(ns_of(box, "h1", "l3b"), "203.0.113.1") == ("outside", fip["address"])
    # a (no FIP) still leaves as the router
    assert l3.ask(ns_of(box, "h3", "l3a"), "203.0.113.1") == (
        "outside",
        net["router"]["external_ip"],
    )


def test_hairpin_a_workload_reaches_another_through_its_fip(
    l3: L3, box: Box, net: dict[str, Any]
) -> None:
    got = l3.wait_ask(ns_of(box, "h3", "l3a"), net["fip"]["address"])
    assert got[0] == "l3b"
    # b reaches itself through its own FIP too (same subnet hairpin)
    assert l3.wait_ask(ns_of(box, "h1", "l3b"), net["fip"]["address"])[0] == "l3b"


def test_move_reaches_the_new_port_within_a_second(l3: L3, box: Box, net: dict[str, Any]) -> None:
    fip, t = net["fip"], net["t"]
    r = box.http.patch(f"/v1/floating-ips/{fip['id']}", json={"port_id": net["a"]["id"]}, headers=t)
    assert r.status_code == 200, r.text
    start = time.monotonic()
    got = None
    while time.monotonic() - start < 10:
        got = ask_in(l3.outside, fip["address"], ID_PORT, timeout=0.2)
        if got is not None and got.startswith("l3a "):
            break
    took = time.monotonic() - start
    print(f"floating IP move: first answer from the new port after {took * 1000:.0f} ms")
    assert got is not None and got.startswith("l3a ")
    assert took < 1.0, f"the move took {took:.2f}s"
    # and back, for the scenarios that follow
    box.http.patch(
        f"/v1/floating-ips/{fip['id']}", json={"port_id": net["b"]["id"]}, headers=t
    ).raise_for_status()
    l3.wait(f"/v1/floating-ips/{fip['id']}", t)
    deadline = time.monotonic() + WAIT
    while l3.wait_ask(l3.outside, fip["address"])[0] != "l3b":
        assert time.monotonic() < deadline


def test_disassociation_cuts_an_established_connection(
    l3: L3, box: Box, net: dict[str, Any]
) -> None:
    fip, t = net["fip"], net["t"]
    hold = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            l3.outside,
            sys.executable,
            ECHO,
            "hold",
            fip["address"],
            str(ID_PORT),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert hold.stdout is not None
        assert hold.stdout.readline().startswith("l3b")  # established and talking
        r = box.http.patch(f"/v1/floating-ips/{fip['id']}", json={"port_id": None}, headers=t)
        assert r.status_code == 200, r.text
        out, _ = hold.communicate(timeout=WAIT)
        assert out.strip().splitlines()[-1] == "cut"
    finally:
        if hold.poll() is None:
            hold.kill()
            hold.wait(timeout=5)
    ns = l3.router_netns(net["router"])
    gw = box.run(ns, "ip", "-4", "-o", "addr", "show").stdout
    assert f"{fip['address']}/32" not in gw  # the address went
    assert l3.ask(l3.outside, fip["address"]) is None  # and new connections fail
    box.http.patch(
        f"/v1/floating-ips/{fip['id']}", json={"port_id": net["b"]["id"]}, headers=t
    ).raise_for_status()
    l3.wait(f"/v1/floating-ips/{fip['id']}", t)


def test_overlapping_tenants_with_routers_on_one_host(l3: L3, box: Box) -> None:
    made: list[tuple[dict[str, str], dict[str, Any], dict[str, Any]]] = []
    host: str | None = None
    for i in range(2):
        t = box.tenant()
        vpc = l3.make("/v1/vpcs", t, cidr="10.90.0.0/16")
        s = l3.make("/v1/subnets", t, vpc_id=vpc["id"], cidr="10.90.1.0/24")
        # routers go to the least-loaded network host: a probe router shows where the next
        # one goes; one that lands elsewhere stays (a filler) until the next goes to `host`
        for _ in range(4):
            probe = box.post("/v1/routers", t, vpc_id=vpc["id"])
            if host is None or probe["host"] == host:
                assert box.http.delete(f"/v1/routers/{probe['id']}", headers=t).status_code == 204
                break
            l3.made.append((f"/v1/routers/{probe['id']}", t))
        r = l3.make("/v1/routers", t, vpc_id=vpc["id"], external_network_id=l3.ext["id"])
        host = host or r["host"]
        assert r["host"] == host
        box.post(f"/v1/routers/{r['id']}/interfaces", t, subnet_id=s["id"])
        l3.made.append((f"/v1/routers/{r['id']}/interfaces/{s['id']}", t))
        p = l3.workload(t, s, "h3", f"ov{i}", ip_address="10.90.1.50")
        f = l3.make("/v1/floating-ips", t, external_network_id=l3.ext["id"], port_id=p["id"])
        made.append((t, p, f))
    assert made[0][1]["ip_address"] == made[1][1]["ip_address"]  # identical, two tenants
    for i, (t, _, f) in enumerate(made):
        l3.wait(f"/v1/floating-ips/{f['id']}", t)
        assert l3.wait_ask(l3.outside, f["address"])[0] == f"ov{i}"
        assert l3.wait_ask(ns_of(box, "h3", f"ov{i}"), "203.0.113.1") == ("outside", f["address"])


def test_drift_a_deleted_nat_rule_and_router_leg_are_repaired(
    l3: L3, box: Box, net: dict[str, Any]
) -> None:
    ns = l3.router_netns(net["router"])
    box.run(ns, "iptables", "-t", "nat", "-F", "vpcd-POSTROUTING")
    leg = names.router_host_leg_name(
        box.http.get(
            f"/v1/routers/{net['router']['id']}/interfaces/{net['s1']['id']}", headers=net["t"]
        ).json()["port_id"]
    )
    host = box.http.get(f"/v1/routers/{net['router']['id']}", headers=box.admin).json()["host"]
    subprocess.run(["ip", "-n", host, "link", "del", leg], check=True)
    start = time.monotonic()
    assert l3.wait_ask(ns_of(box, "h3", "l3a"), "203.0.113.1") == (
        "outside",
        net["router"]["external_ip"],
    )
    print(f"drift repaired after {time.monotonic() - start:.1f}s")
    rules = box.run(ns, "iptables", "-t", "nat", "-S", "vpcd-POSTROUTING").stdout
    assert "SNAT" in rules
    assert leg in box.links(next(h["short"] for h in box.sb.hosts if h["name"] == host))


def test_failover_to_another_network_host(l3: L3, box: Box, net: dict[str, Any]) -> None:
    r, t = net["router"], net["t"]
    old = box.http.get(f"/v1/routers/{r['id']}", headers=box.admin).json()["host"]
    short = next(h["short"] for h in box.sb.hosts if h["name"] == old)
    old_ns = names.router_netns(f"{old}-", r["id"])
    a_ns = ns_of(box, "h3", "l3a")  # h3 is no network host: it stays up
    assert l3.wait_ask(a_ns, "203.0.113.1") is not None
    sbx.fail(box.name, short)
    start = time.monotonic()
    try:
        deadline = start + 120
        got = None
        while got is None and time.monotonic() < deadline:
            got = l3.ask(a_ns, "203.0.113.1")
        took = time.monotonic() - start
        print(f"failover: {old} failed, outside reached again after {took:.1f}s")
        assert got is not None and got[0] == "outside"
        now = box.http.get(f"/v1/routers/{r['id']}", headers=box.admin).json()
        assert now["host"] != old
        assert got[1] == now["external_ip"]
    finally:
        sbx.heal(box.name, short)
        box.sb = sbx.load(box.name)  # the healed agent's new PID
    deadline = time.monotonic() + WAIT
    while old_ns in sbx.existing_namespaces():
        assert time.monotonic() < deadline, f"the stale copy {old_ns} is still there"
        time.sleep(0.5)
    l3.wait(f"/v1/routers/{r['id']}", t)


def test_cleanup_leaves_no_router_namespace_veth_or_chain(l3: L3, box: Box) -> None:
    routers = box.http.get("/v1/routers", headers=box.admin).json()["items"]
    spaces = {names.router_netns(f"{r['host']}-", r["id"]) for r in routers if r["host"]}
    l3.cleanup()
    deadline = time.monotonic() + WAIT
    while True:
        left_ns = [n for n in sbx.existing_namespaces() if n in spaces or "-vpr" in n]
        left_links = [
            link
            for h in box.sb.hosts
            for link in box.links(h["short"])
            if names.link_role(link) in ("leg", "gateway", "external")
        ]
        if not left_ns and not left_links:
            break
        assert time.monotonic() < deadline, (left_ns, left_links)
        time.sleep(0.5)
    for h in box.sb.hosts:  # no vpcd chain of ours in any nat table of the host namespaces
        dump = subprocess.run(
            ["ip", "netns", "exec", h["netns"], "iptables-save", "-t", "nat"],
            capture_output=True,
            text=True,
        ).stdout
        assert "vpcd-" not in dump
