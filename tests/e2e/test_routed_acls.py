"""Network ACLs on a routed subnet (issue 12: "security groups and ACLs apply as on any
port"), through real agents on the 3-host sandbox: an ACL denying TCP 7001 in blocks it
between two hosts' routed ports while ICMP (and the port's other service) still works;
the hosts hook the routed veths by name, the ACL before the groups; dissociating the ACL
restores TCP and leaves no ACL chain; deleting everything leaves nothing."""

from __future__ import annotations

import subprocess

import pytest

from tests.e2e.conftest import Box
from tests.e2e.test_network_acls import entry, wait_acl, wait_until
from tests.e2e.test_network_types import _nothing_left
from workers.agent.planners import nacls, typed_fw
from workers.agent.typed_state import routed_veth_name

pytestmark = pytest.mark.e2e


def _filter(box: Box, short: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", box.sb.host(short)["netns"], "iptables-save", "-t", "filter"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def _forward_hooks(saved: str) -> list[str]:
    """Our jumps from FORWARD, in the kernel's order."""
    return [line for line in saved.splitlines() if line.startswith("-A FORWARD -j vpcd-")]


def test_acl_on_a_routed_subnet_between_hosts(box: Box) -> None:
    r = box.http.post("/v1/address-scopes", json={"cidr": "100.67.0.0/16"}, headers=box.admin)
    assert r.status_code == 201, r.text
    scope = r.json()
    t = box.tenant()
    vpc = box.post("/v1/vpcs", t, cidr="100.67.0.0/16")
    s = box.post("/v1/subnets", t, vpc_id=vpc["id"], cidr="100.67.1.0/24", network_type="routed")
    a = box.port(t, s, "h1", "raa")  # both in the VPC's default group: members talk
    b = box.port(t, s, "h2", "rab")
    src, dst = box.workload("h1", "raa"), box.workload("h2", "rab")
    acl: dict[str, str] = {}
    try:
        for p in (a, b):
            box.wait_status(t, p)
        ip_b = b["ip_address"]
        box.serve(dst, "tcp", 7001, "rab")
        box.serve(dst, "tcp", 7003, "rab")
        box.wait_ping(src, ip_b)
        wait_until("tcp before the ACL", lambda: box.ask(src, "tcp", ip_b, 7001) == "rab")

        acl = box.post("/v1/network-acls", t, vpc_id=vpc["id"], name="routed-edge")
        entry(
            box, t, acl["id"], 100, "ingress", "deny", protocol="tcp", port_min=7001, port_max=7001
        )
        entry(box, t, acl["id"], 200, "ingress", "allow")
        entry(box, t, acl["id"], 100, "egress", "allow")
        r = box.http.patch(f"/v1/subnets/{s['id']}", json={"network_acl_id": acl["id"]}, headers=t)
        assert r.status_code == 200, r.text
        wait_acl(box, t, acl["id"])
        wait_until("tcp 7001 denied", lambda: box.ask(src, "tcp", ip_b, 7001) is None)
        assert box.ping(src, ip_b)  # the allow at 200, and the egress allow for replies
        assert box.ask(src, "tcp", ip_b, 7003) == "rab"
        # h2 hooks b's veth by name, the ACL's hook before the groups' (as on AWS).
        saved = _filter(box, "h2")
        veth = routed_veth_name(b["id"])
        assert f"-A {nacls.ROUTED_CHAIN} -o {veth} -j {nacls.ingress_chain(acl['id'])}" in saved
        hooks = _forward_hooks(saved)
        acl_hook = f"-A FORWARD {nacls.ROUTED_HOOK[1]}"
        sg_hook = f"-A FORWARD {typed_fw.ROUTED_HOOK[1]}"
        assert hooks.index(acl_hook) < hooks.index(sg_hook), hooks

        r = box.http.patch(f"/v1/subnets/{s['id']}", json={"network_acl_id": None}, headers=t)
        assert r.status_code == 200, r.text
        wait_until("tcp 7001 back", lambda: box.ask(src, "tcp", ip_b, 7001) == "rab")
        for short in ("h1", "h2"):
            wait_until(
                f"no ACL chain on {short}", lambda h=short: "vpcd-ni-" not in _filter(box, h)
            )
            assert nacls.ROUTED_CHAIN not in _filter(box, short)
    finally:
        box.stop_servers()
        box.http.patch(f"/v1/subnets/{s['id']}", json={"network_acl_id": None}, headers=t)
        if acl:
            box.http.delete(f"/v1/network-acls/{acl['id']}", headers=t)
        for p in (a, b):
            box.http.delete(f"/v1/ports/{p['id']}", headers=t)
        box.http.delete(f"/v1/subnets/{s['id']}", headers=t)
        box.http.delete(f"/v1/vpcs/{vpc['id']}", headers=t)
        box.http.delete(f"/v1/address-scopes/{scope['id']}", headers=box.admin)
    _nothing_left(box, {src, dst})
    assert box.http.get(f"/v1/subnets/{s['id']}", headers=t).status_code == 404
    scopes = box.http.get("/v1/address-scopes", headers=box.admin).json()["items"]
    assert scope["id"] not in {x["id"] for x in scopes}
