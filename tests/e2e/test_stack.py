"""`vpcctl plan / apply / destroy` in the real sandbox: a two-tier stack up, changed, gone.

The real `vpcctl` program talks to the sandbox's API over HTTP. Once applied, traffic goes
through what the stack made: web to db across the router, a tier out to `outside` by SNAT,
and `outside` in to a web workload through its floating IP. Every packet stays between
namespaces the sandbox made; the external network (203.0.113.0/24, TEST-NET-3) is the
sandbox's own `outside` segment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli import sandbox as sbx
from tests.e2e.conftest import ECHO, Box

pytestmark = pytest.mark.e2e

VPCCTL = str(Path(sys.executable).with_name("vpcctl"))
OUTSIDE = "203.0.113.1"  # the sandbox's `outside` namespace, on the external segment
WAIT = 90.0  # generous: the machine is shared

STACK = """\
stack: {name}
vpcs:
  main: {{cidr: 10.30.0.0/16, description: "{description}"}}
security_groups:
  web:
    vpc: main
    rules:
      - {{direction: ingress, protocol: tcp, port_min: 80, port_max: 80, remote_cidr: 0.0.0.0/0}}
      - {{direction: ingress, protocol: any, remote_group: web}}
      - {{direction: ingress, protocol: icmp, remote_cidr: 0.0.0.0/0}}
      - {{direction: egress, protocol: any, remote_cidr: 0.0.0.0/0}}
  db:
    vpc: main
    rules:
      - {{direction: ingress, protocol: any, remote_group: web}}
      - {{direction: egress, protocol: any, remote_cidr: 0.0.0.0/0}}
subnets:
  web: {{vpc: main, cidr: 10.30.1.0/24}}
  db: {{vpc: main, cidr: 10.30.2.0/24}}
routers:
  edge: {{vpc: main, external_network: {external}, enable_snat: true, interfaces: [web, db]}}
ports:
  web1: {{subnet: web, host: {h1}, netns: web1, ip_address: 10.30.1.11, security_groups: [web]}}
  web2: {{subnet: web, host: {h2}, netns: web2, ip_address: 10.30.1.12, security_groups: [web]}}
  db1: {{subnet: db, host: {h3}, netns: db1, ip_address: 10.30.2.11, security_groups: [db]}}
{extra}floating_ips:
  web1: {{external_network: {external}, port: web1}}
"""


class Stack:
    def __init__(self, box: Box, path: Path, token: str) -> None:
        self.box = box
        self.path = path
        self.name = f"e2e-{uuid.uuid4().hex[:8]}"
        self.external = f"public-{uuid.uuid4().hex[:8]}"
        self.env = {**os.environ, "VPCD_URL": box.sb.endpoint, "VPCD_TOKEN": token}
        self.headers = {"Authorization": f"Bearer {token}"}

    def write(self, description: str = "two tiers", extra: str = "") -> None:
        self.path.write_text(
            STACK.format(
                name=self.name,
                description=description,
                external=self.external,
                extra=extra,
                h1=self.box.host("h1"),
                h2=self.box.host("h2"),
                h3=self.box.host("h3"),
            )
        )

    def run(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [VPCCTL, *args, "-f", str(self.path)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
        return r

    def tagged(self, kind: str) -> dict[str, dict[str, Any]]:
        r = self.box.http.get(
            f"/v1/{kind}", params={"tag": f"stack:{self.name}", "limit": 1000}, headers=self.headers
        )
        assert r.status_code == 200, r.text
        return {item.get("name") or item["id"]: item for item in r.json()["items"]}

    def wait_active(self, kind: str, names: set[str], timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        seen: dict[str, str] = {}
        while time.monotonic() < deadline:
            seen = {n: r["status"] for n, r in self.tagged(kind).items() if n in names}
            assert "error" not in seen.values(), self.tagged(kind)
            if set(seen) == names and set(seen.values()) == {"active"}:
                return
            time.sleep(0.3)
        raise AssertionError(f"{kind} {names} not active within {timeout}s: {seen}")

    def identity(self, ns: str, port: int, name: str) -> None:
        """A TCP server in `ns` answering "NAME CALLER-IP" (stopped with the box's servers)."""
        argv = [sys.executable, ECHO, "identity", str(port), name]
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv], stdout=subprocess.PIPE, text=True
        )
        self.box.servers.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def wait_ask(self, ns: str, address: str, port: int) -> tuple[str, str]:
        """(server name, the address it saw us come from), retried until a deadline."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            got = self.box.ask(ns, "tcp", address, port)
            if got:
                name, _, caller = got.partition(" ")
                return name, caller
            time.sleep(0.3)
        raise AssertionError(f"{ns} got no answer from {address}:{port} in {WAIT}s")


@pytest.fixture
def stack(box: Box, tmp_path: Path) -> Iterator[Stack]:
    token = box.tenant()["Authorization"].split()[1]
    s = Stack(box, tmp_path / "stack.yaml", token)
    net = box.post(
        "/v1/external-networks",
        box.admin,
        name=s.external,
        cidr="203.0.113.0/24",
        gateway_ip="203.0.113.1",
    )
    s.write()
    try:
        yield s
    finally:
        subprocess.run(
            [VPCCTL, "destroy", "-f", str(s.path)], env=s.env, capture_output=True, timeout=300
        )
        box.stop_servers()
        box.http.delete(f"/v1/external-networks/{net['id']}", headers=box.admin)


def test_a_two_tier_stack_up_changed_and_destroyed(box: Box, stack: Stack) -> None:
    plan = stack.run("plan", code=2)
    assert "10 to create, 0 to update, 0 to delete" in plan.stdout, plan.stdout
    stack.run("apply", "--no-wait")
    stack.wait_active("subnets", {"web", "db"})
    stack.wait_active("ports", {"web1", "web2", "db1"})
    # traffic through what the stack made: two web ports on different hosts
    box.wait_ping(box.workload("h1", "web1"), "10.30.1.12")
    router = stack.tagged("routers")["edge"]
    assert len(router["subnet_ids"]) == 2
    fip_key, fip = next(iter(stack.tagged("floating-ips").items()))
    assert fip["port_id"] == stack.tagged("ports")["web1"]["id"]
    stack.wait_active("routers", {"edge"})
    stack.wait_active("floating-ips", {fip_key})
    router = stack.tagged("routers")["edge"]
    web1, db1 = box.workload("h1", "web1"), box.workload("h3", "db1")
    # tier to tier through the router: web (10.30.1.0/24) pings db (10.30.2.0/24)
    box.wait_ping(web1, "10.30.2.11", timeout=WAIT)
    box.wait_ping(db1, "10.30.1.11", timeout=WAIT)  # the web group admits ICMP
    # db (no floating IP) reaches outside by SNAT: outside sees the router's address
    stack.identity(f"{box.name}-outside", 7070, "outside")
    box.wait_ping(db1, OUTSIDE, timeout=WAIT)
    assert stack.wait_ask(db1, OUTSIDE, 7070) == ("outside", router["external_ip"])
    # outside reaches web1 through its floating IP (ICMP, and web's port 80), and web1
    # leaves as its floating IP
    stack.identity(web1, 80, "web1")
    box.wait_ping(f"{box.name}-outside", fip["address"], timeout=WAIT)
    assert stack.wait_ask(f"{box.name}-outside", fip["address"], 80) == ("web1", OUTSIDE)
    assert stack.wait_ask(web1, OUTSIDE, 7070) == ("outside", fip["address"])
    box.stop_servers()
    assert stack.run("plan").stdout.splitlines()[-1].startswith("nothing to change")

    # a change: a new port on h3's web tier, a new description; the rest untouched
    before = {n: p["revision"] for n, p in stack.tagged("ports").items()}
    stack.write(
        description="two tiers, three web ports",
        extra=f"  web3: {{subnet: web, host: {box.host('h3')}, netns: web3, "
        "ip_address: 10.30.1.13, security_groups: [web]}\n",
    )
    plan = stack.run("plan", code=2).stdout
    assert "1 to create, 1 to update, 0 to delete" in plan, plan
    assert "    description: 'two tiers' -> 'two tiers, three web ports'" in plan
    stack.run("apply", "--no-wait")
    stack.wait_active("ports", {"web1", "web2", "web3", "db1"})
    box.wait_ping(box.workload("h1", "web1"), "10.30.1.13")
    after = {n: p["revision"] for n, p in stack.tagged("ports").items()}
    assert {n: after[n] for n in before} == before
    stack.run("plan")

    # destroy: nothing tagged is left, and the workloads' namespaces go with their ports
    out = stack.run("destroy").stdout
    assert "11 to delete" in out, out
    for kind in ("vpcs", "subnets", "routers", "ports", "floating-ips", "security-groups"):
        assert stack.tagged(kind) == {}, kind
    workloads = {box.workload(h, n) for h, n in (("h1", "web1"), ("h2", "web2"), ("h3", "web3"))}
    deadline = time.monotonic() + 60
    while workloads & set(sbx.existing_namespaces()) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not workloads & set(sbx.existing_namespaces())
    stack.run("plan", code=2)  # the file would make it all again
