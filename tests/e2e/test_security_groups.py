"""Security groups end to end on the 3-host sandbox: API -> controller -> agents -> kernel.

Kernel-level details (anti-spoofing, conntrack cuts, set-only member changes) are proven
against the bare agents in tests/e2e/test_agent_secgroups.py; here the same rules go
through the API and a real controller, and the "blink" test toggles a rule under a
1 ping/ms flood. All traffic stays inside the sandbox's namespaces.
"""

from __future__ import annotations

import re
import subprocess
import time
from typing import Any

import pytest

from tests.e2e.conftest import RESYNC, Box
from workers.agent.planners.secgroups import egress_chain, group_set, ingress_chain

pytestmark = pytest.mark.e2e


def wait_group(box: Box, who: dict[str, str], gid: str, timeout: float = 30) -> dict[str, Any]:
    """The group once every host carrying one of its ports realised its revision."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = box.http.get(f"/v1/security-groups/{gid}", headers=who).json()
        if body["status"] == "active":
            return body
        time.sleep(0.02)
    raise AssertionError(f"group {gid} not active in {timeout}s: {body}")


def rule(box: Box, who: dict[str, str], gid: str, **kw: Any) -> dict[str, Any]:
    kw.setdefault("direction", "ingress")
    return box.post("/v1/security-group-rules", who, security_group_id=gid, **kw)


def delete(box: Box, who: dict[str, str], path: str) -> None:
    r = box.http.delete(path, headers=who)
    assert r.status_code == 204, r.text


def test_matrix_through_the_api(box: Box) -> None:
    t = box.tenant()
    (s,) = box.network(t)
    vpc = s["vpc_id"]
    web = box.post("/v1/security-groups", t, vpc_id=vpc, name="web")
    client = box.post("/v1/security-groups", t, vpc_id=vpc, name="client")
    rule(box, t, client["id"], direction="egress", protocol="any")
    a = box.port(t, s, "h1", "sga")  # the default group
    b = box.port(t, s, "h2", "sgb", security_group_ids=[web["id"]])
    c = box.port(t, s, "h3", "sgc", security_group_ids=[])  # no group
    d = box.port(t, s, "h3", "sgd", security_group_ids=[client["id"]])
    for p in (a, b, c, d):
        box.wait_status(t, p)
    ns = {n: box.workload(h, f"sg{n}") for n, h in (("a", "h1"), ("b", "h2"), ("c", "h3"))}
    ns["d"] = box.workload("h3", "sgd")
    ip = {n: p["ip_address"] for n, p in zip("abcd", (a, b, c, d), strict=True)}
    box.serve(ns["b"], "tcp", 8080, "b")
    box.serve(ns["b"], "udp", 5353, "b")
    wait_group(box, t, web["id"])
    # web has no rule: nothing gets in; c (no group) takes nothing in but sends anything
    assert not box.ping(ns["a"], ip["b"]) and box.ask(ns["a"], "tcp", ip["b"], 8080) is None
    assert not box.ping(ns["a"], ip["c"])
    # tcp port range from a remote group; udp from a CIDR; icmp from anywhere
    rule(
        box,
        t,
        web["id"],
        protocol="tcp",
        port_min=8000,
        port_max=8100,
        remote_group_id=client["id"],
    )
    rule(
        box, t, web["id"], protocol="udp", port_min=5353, port_max=5353, remote_cidr=f"{ip['c']}/32"
    )
    wait_group(box, t, web["id"])
    assert box.ask(ns["d"], "tcp", ip["b"], 8080) == "b"  # d is in client
    assert box.ask(ns["a"], "tcp", ip["b"], 8080) is None  # a is not
    assert box.ask(ns["c"], "udp", ip["b"], 5353) == "b"  # c's /32
    assert box.ask(ns["d"], "udp", ip["b"], 5353) is None
    assert not box.ping(ns["a"], ip["b"])
    icmp = rule(box, t, web["id"], protocol="icmp")
    wait_group(box, t, web["id"])
    # the group is active: icmp passes (a single echo was once lost in CI right after the
    # report, with the rule in place as the next full sync confirmed: a few tries then)
    box.wait_ping(ns["a"], ip["b"], timeout=5)
    box.wait_ping(ns["c"], ip["b"], timeout=5)
    # a member joins the remote group (a: default + client), then leaves
    r = box.http.patch(
        f"/v1/ports/{a['id']}",
        json={"security_group_ids": [a["security_group_ids"][0], client["id"]]},
        headers=t,
    )
    assert r.status_code == 200, r.text
    box.wait_status(t, a)
    wait_group(box, t, web["id"])
    deadline = time.monotonic() + 10
    while box.ask(ns["a"], "tcp", ip["b"], 8080) != "b":
        assert time.monotonic() < deadline, "a new member of the remote group got no access"
    r = box.http.patch(
        f"/v1/ports/{a['id']}", json={"security_group_ids": a["security_group_ids"]}, headers=t
    )
    box.wait_status(t, a)
    deadline = time.monotonic() + 10
    while box.ask(ns["a"], "tcp", ip["b"], 8080) is not None:
        assert time.monotonic() < deadline, "a member that left kept its access"
    # the default group: a and a second default port talk; its egress is open
    e = box.port(t, s, "h2", "sge")
    box.wait_status(t, e)
    box.wait_ping(ns["a"], e["ip_address"])
    delete(box, t, f"/v1/security-group-rules/{icmp['id']}")
    wait_group(box, t, web["id"])
    assert not box.ping(ns["a"], ip["b"])
    # drift: a set member deleted by hand on h2 comes back within the resync interval
    host_ns = box.sb.host("h2")["netns"]
    sets = subprocess.run(
        ["ip", "netns", "exec", host_ns, "ipset", "save"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    name = group_set(client["id"])
    assert f"add {name} {ip['d']}" in sets
    subprocess.run(["ip", "netns", "exec", host_ns, "ipset", "del", name, ip["d"]], check=True)
    assert box.ask(ns["d"], "tcp", ip["b"], 8080) is None
    deadline = time.monotonic() + 4 * RESYNC + 10
    while box.ask(ns["d"], "tcp", ip["b"], 8080) != "b":
        assert time.monotonic() < deadline, "the deleted member was not put back"
    box.stop_servers()
    for p in (a, b, c, d, e):
        delete(box, t, f"/v1/ports/{p['id']}")
    for g in (web, client):
        delete(box, t, f"/v1/security-groups/{g['id']}")


REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from")


def test_blink_no_reply_while_the_rule_is_realised_as_deny(box: Box) -> None:
    t = box.tenant()
    (s,) = box.network(t)
    g = box.post("/v1/security-groups", t, vpc_id=s["vpc_id"], name="blink")
    a = box.port(t, s, "h1", "bla")
    b = box.port(t, s, "h2", "blb", security_group_ids=[g["id"]])
    box.wait_status(t, a)
    box.wait_status(t, b)
    allow = rule(box, t, g["id"], protocol="icmp")
    wait_group(box, t, g["id"])
    box.wait_ping(box.workload("h1", "bla"), b["ip_address"])
    flood = subprocess.Popen(
        ["ip", "netns", "exec", box.workload("h1", "bla"), "ping", "-n", "-D", "-i", "0.001",
         "-W", "1", b["ip_address"]],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    denied: list[tuple[float, float]] = []  # (realised as deny, allow requested)
    try:
        for _ in range(50):
            delete(box, t, f"/v1/security-group-rules/{allow['id']}")
            wait_group(box, t, g["id"])
            start = time.time()
            time.sleep(0.05)
            end = time.time()
            allow = rule(box, t, g["id"], protocol="icmp")
            denied.append((start, end))
            wait_group(box, t, g["id"])
            time.sleep(0.05)
        box.wait_ping(box.workload("h1", "bla"), b["ip_address"], timeout=10)  # resumed
    finally:
        flood.terminate()
        out, _ = flood.communicate(timeout=10)
    replies = [float(m.group(1)) for m in map(REPLY.match, out.splitlines()) if m]
    leaked = [r for r in replies if any(lo <= r <= hi for lo, hi in denied)]
    assert len(denied) == 50
    assert len(replies) > 500, f"the flood got {len(replies)} replies: it was not flowing"
    assert not leaked, f"{len(leaked)} replies while the rule was realised as deny"
    for p in (a, b):
        delete(box, t, f"/v1/ports/{p['id']}")
    delete(box, t, f"/v1/security-groups/{g['id']}")


def test_cleanup_leaves_no_chain_or_set(box: Box) -> None:
    t = box.tenant()
    (s,) = box.network(t)
    g = box.post("/v1/security-groups", t, vpc_id=s["vpc_id"])
    rule(box, t, g["id"], protocol="icmp", remote_group_id=g["id"])
    p = box.port(t, s, "h3", "cl", security_group_ids=[g["id"]])
    box.wait_status(t, p)
    host_ns = box.sb.host("h3")["netns"]

    def ours() -> list[str]:
        saved = subprocess.run(
            ["ip", "netns", "exec", host_ns, "iptables-save"], capture_output=True, text=True
        ).stdout
        sets = subprocess.run(
            ["ip", "netns", "exec", host_ns, "ipset", "save"], capture_output=True, text=True
        ).stdout
        mine = (ingress_chain(p["id"]), egress_chain(p["id"]), group_set(g["id"]))
        return [x for x in (saved + sets).splitlines() if any(n in x for n in mine)]

    assert ours()
    delete(box, t, f"/v1/ports/{p['id']}")
    delete(box, t, f"/v1/security-groups/{g['id']}")
    deadline = time.monotonic() + 30
    while ours():
        assert time.monotonic() < deadline, ours()
        time.sleep(0.2)
