"""Network ACLs end to end on the 3-host sandbox: API -> controller -> agents -> kernel.

First between ports of one subnet on different hosts (the ACL applies on every port's
veth, see README "Network ACLs"), then on routed traffic between two subnets of one VPC
through a router on a network host. All traffic stays inside the sandbox.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import Box

pytestmark = pytest.mark.e2e


def wait_acl(box: Box, who: dict[str, str], acl_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = box.http.get(f"/v1/network-acls/{acl_id}", headers=who).json()
        if body["status"] == "active":
            return
        time.sleep(0.05)
    raise AssertionError(f"network ACL {acl_id} not active in {timeout}s: {body}")


def entry(
    box: Box, who: dict[str, str], acl_id: str, number: int, direction: str, action: str, **kw: Any
) -> dict[str, Any]:
    kw.setdefault("protocol", "any")
    kw.setdefault("cidr", "0.0.0.0/0")
    return box.post(
        "/v1/network-acl-entries", who, network_acl_id=acl_id, rule_number=number,
        direction=direction, action=action, **kw,
    )  # fmt: skip


def test_order_statelessness_and_removal(box: Box) -> None:
    t = box.tenant()
    (s,) = box.network(t)
    a = box.port(t, s, "h1", "nla")
    b = box.port(t, s, "h2", "nlb")
    c = box.port(t, s, "h3", "nlc")
    for p in (a, b, c):
        box.wait_status(t, p)
    ns = {n: box.workload(h, f"nl{n}") for n, h in (("a", "h1"), ("b", "h2"), ("c", "h3"))}
    ip = {"a": a["ip_address"], "b": b["ip_address"], "c": c["ip_address"]}
    box.wait_ping(ns["a"], ip["b"])
    box.wait_ping(ns["c"], ip["b"])
    acl = box.post("/v1/network-acls", t, vpc_id=s["vpc_id"], name="edge")
    entry(box, t, acl["id"], 100, "ingress", "deny", protocol="icmp", cidr=f"{ip['c']}/32")
    entry(box, t, acl["id"], 200, "ingress", "allow")
    out = entry(box, t, acl["id"], 100, "egress", "allow")
    r = box.http.patch(f"/v1/subnets/{s['id']}", json={"network_acl_id": acl["id"]}, headers=t)
    assert r.status_code == 200, r.text
    wait_acl(box, t, acl["id"])
    assert box.ping(ns["a"], ip["b"])  # allowed by 200 both ways
    assert not box.ping(ns["c"], ip["b"], wait=1)  # deny 100 beats the later allow 200
    # stateless: without an egress entry, b's replies never leave
    r = box.http.delete(f"/v1/network-acl-entries/{out['id']}", headers=t)
    assert r.status_code == 204
    wait_acl(box, t, acl["id"])
    assert not box.ping(ns["a"], ip["b"], wait=1)
    # an explicit entry for the return traffic (icmp only) brings a back, c stays out
    entry(box, t, acl["id"], 100, "egress", "allow", protocol="icmp")
    wait_acl(box, t, acl["id"])
    box.wait_ping(ns["a"], ip["b"])
    assert not box.ping(ns["c"], ip["b"], wait=1)
    # dissociated: everything allowed again, and the host keeps no ACL chain
    r = box.http.patch(f"/v1/subnets/{s['id']}", json={"network_acl_id": None}, headers=t)
    assert r.status_code == 200, r.text
    box.wait_ping(ns["c"], ip["b"])
    deadline = time.monotonic() + 30
    while True:
        saved = subprocess.run(
            ["ip", "netns", "exec", box.sb.host("h2")["netns"], "iptables-save"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        if "vpcd-ni-" not in saved:
            break
        assert time.monotonic() < deadline, "the ACL's chains stayed"
        time.sleep(0.2)
    assert box.http.delete(f"/v1/network-acls/{acl['id']}", headers=t).status_code == 204
    for p in (a, b, c):
        assert box.http.delete(f"/v1/ports/{p['id']}", headers=t).status_code == 204


def wait_until(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_routed_traffic_between_two_subnets(box: Box) -> None:
    """An ACL on one subnet filters what a router forwards into and out of it: deny by
    rule number before a later allow, return traffic only with its own entry."""
    t = box.tenant()
    s1, s2 = box.network(t, "10.72.0.0/16", ("10.72.1.0/24", "10.72.2.0/24"))
    made = [f"/v1/vpcs/{s1['vpc_id']}", f"/v1/subnets/{s1['id']}", f"/v1/subnets/{s2['id']}"]
    router = box.post("/v1/routers", t, vpc_id=s1["vpc_id"])
    made.append(f"/v1/routers/{router['id']}")
    try:
        for s in (s1, s2):
            box.post(f"/v1/routers/{router['id']}/interfaces", t, subnet_id=s["id"])
            made.append(f"/v1/routers/{router['id']}/interfaces/{s['id']}")
        a = box.port(t, s1, "h1", "nra")  # both in the VPC's default group: members talk
        made.append(f"/v1/ports/{a['id']}")
        b = box.port(t, s2, "h2", "nrb")
        made.append(f"/v1/ports/{b['id']}")
        for p in (a, b):
            box.wait_status(t, p, timeout=60)
        a_ns, b_ns = box.workload("h1", "nra"), box.workload("h2", "nrb")
        ip_b = b["ip_address"]
        box.wait_ping(a_ns, ip_b, timeout=60)  # routed: 10.72.1.x -> router -> 10.72.2.x
        box.serve(b_ns, "tcp", 8080, "b")
        wait_until("tcp through the router", lambda: box.ask(a_ns, "tcp", ip_b, 8080) == "b")

        acl = box.post("/v1/network-acls", t, vpc_id=s1["vpc_id"], name="routed")
        made.append(f"/v1/network-acls/{acl['id']}")
        # on s2: icmp from s1 denied at 100 before the allow-all at 200; replies go out
        entry(box, t, acl["id"], 100, "ingress", "deny", protocol="icmp", cidr=s1["cidr"])
        entry(box, t, acl["id"], 200, "ingress", "allow", cidr=s1["cidr"])
        out = entry(box, t, acl["id"], 100, "egress", "allow", cidr=s1["cidr"])
        r = box.http.patch(f"/v1/subnets/{s2['id']}", json={"network_acl_id": acl["id"]}, headers=t)
        assert r.status_code == 200, r.text
        wait_acl(box, t, acl["id"])
        assert not box.ping(a_ns, ip_b, count=2, wait=1)  # deny 100 beats allow 200
        assert box.ask(a_ns, "tcp", ip_b, 8080) == "b"  # allowed by 200, replies by egress 100
        # stateless: without the egress entry b's replies never leave s2
        assert box.http.delete(f"/v1/network-acl-entries/{out['id']}", headers=t).status_code == 204
        wait_acl(box, t, acl["id"])
        assert box.ask(a_ns, "tcp", ip_b, 8080) is None
        # the return traffic's own entry (to a's ephemeral ports) lets it through again
        entry(
            box, t, acl["id"], 110, "egress", "allow", protocol="tcp",
            port_min=1024, port_max=65535, cidr=s1["cidr"],
        )  # fmt: skip
        wait_acl(box, t, acl["id"])
        wait_until("tcp with its return entry", lambda: box.ask(a_ns, "tcp", ip_b, 8080) == "b")
        assert not box.ping(a_ns, ip_b, wait=1)  # icmp still denied, and replies have no entry
        # ordered by rule number: a deny at 50 goes before the allow at 110
        deny = entry(box, t, acl["id"], 50, "egress", "deny", protocol="tcp", cidr=s1["cidr"])
        wait_acl(box, t, acl["id"])
        assert box.ask(a_ns, "tcp", ip_b, 8080) is None
        assert (
            box.http.delete(f"/v1/network-acl-entries/{deny['id']}", headers=t).status_code == 204
        )
        wait_acl(box, t, acl["id"])
        wait_until("the deny at 50 removed", lambda: box.ask(a_ns, "tcp", ip_b, 8080) == "b")
        # the other subnet is not associated: b reaches a unfiltered there, but its own
        # subnet's ACL still judges what b sends (icmp has no egress entry on s2)
        assert not box.ping(b_ns, a["ip_address"], wait=1)
        r = box.http.patch(f"/v1/subnets/{s2['id']}", json={"network_acl_id": None}, headers=t)
        assert r.status_code == 200, r.text
        box.wait_ping(b_ns, a["ip_address"], timeout=30)
        box.wait_ping(a_ns, ip_b, timeout=30)
    finally:
        box.stop_servers()
        box.http.patch(f"/v1/subnets/{s2['id']}", json={"network_acl_id": None}, headers=t)
        for path in reversed(made):  # ACL, ports, interfaces, router, subnets, VPC
            r = box.http.delete(path, headers=t)
            assert r.status_code in (204, 404), (path, r.text)
