"""L2 across hosts with real packets: connectivity, isolation, status, repair, teardown.

All traffic stays inside namespaces the sandbox made (tenant 10.x addresses, underlay
198.18.0.0/24); nothing is sent anywhere else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from cli import sandbox as sbx
from tests.e2e.conftest import RESYNC, Box
from workers.agent import names

pytestmark = pytest.mark.e2e


def test_ports_on_two_hosts_talk_icmp_tcp_udp(box: Box) -> None:
    _t, _s, a, b = box.connected_pair(("h1", "a"), ("h2", "b"))
    ns_a, ns_b = box.workload("h1", "a"), box.workload("h2", "b")
    assert box.ping(ns_b, a["ip_address"])
    box.serve(ns_b, "tcp", 7001, "b-tcp")
    box.serve(ns_b, "udp", 7002, "b-udp")
    assert box.ask(ns_a, "tcp", b["ip_address"], 7001) == "b-tcp"
    assert box.ask(ns_a, "udp", b["ip_address"], 7002) == "b-udp"
    # the workload end is what the API said: MAC, address, MTU 1450, named interface_name
    out = box.run(ns_a, "ip", "-o", "addr", "show", "dev", "eth0").stdout
    assert f"{a['ip_address']}/24" in out
    link = box.run(ns_a, "ip", "-o", "link", "show", "dev", "eth0").stdout
    assert a["mac_address"] in link and "mtu 1450" in link


def test_two_tenants_same_addresses_each_reach_only_their_own(box: Box) -> None:
    x, y = box.tenant(), box.tenant()
    (sx,) = box.network(x)
    (sy,) = box.network(y)
    ports = {
        ("x", "cli"): box.port(x, sx, "h1", "xc", ip_address="10.0.1.10"),
        ("x", "srv"): box.port(x, sx, "h2", "xs", ip_address="10.0.1.20"),
        ("y", "cli"): box.port(y, sy, "h1", "yc", ip_address="10.0.1.10"),
        ("y", "srv"): box.port(y, sy, "h3", "ys", ip_address="10.0.1.20"),
    }
    for (who, _), p in ports.items():
        box.wait_status(x if who == "x" else y, p)
    box.serve(box.workload("h2", "xs"), "tcp", 7100, "server-of-x")
    box.serve(box.workload("h3", "ys"), "tcp", 7100, "server-of-y")
    box.serve(box.workload("h2", "xs"), "udp", 7101, "server-of-x")
    box.serve(box.workload("h3", "ys"), "udp", 7101, "server-of-y")
    box.wait_ping(box.workload("h1", "xc"), "10.0.1.20")
    box.wait_ping(box.workload("h1", "yc"), "10.0.1.20")
    for _ in range(5):
        assert box.ask(box.workload("h1", "xc"), "tcp", "10.0.1.20", 7100) == "server-of-x"
        assert box.ask(box.workload("h1", "yc"), "tcp", "10.0.1.20", 7100) == "server-of-y"
        assert box.ask(box.workload("h1", "xc"), "udp", "10.0.1.20", 7101) == "server-of-x"
        assert box.ask(box.workload("h1", "yc"), "udp", "10.0.1.20", 7101) == "server-of-y"
    # different VNIs, so even the shared host h1 keeps them apart
    assert sx["vni"] != sy["vni"]


def test_two_subnets_without_router_do_not_talk(box: Box) -> None:
    t = box.tenant()
    s1, s2 = box.network(t, subnets=("10.0.1.0/24", "10.0.2.0/24"))
    a = box.port(t, s1, "h1", "n1")
    b = box.port(t, s2, "h2", "n2")
    c = box.port(t, s1, "h2", "n3")
    for p in (a, b, c):
        box.wait_status(t, p)
    box.wait_ping(box.workload("h1", "n1"), c["ip_address"])  # the fabric works...
    assert not box.ping(box.workload("h1", "n1"), b["ip_address"], count=3)  # ...no crossing
    assert not box.ping(box.workload("h2", "n2"), a["ip_address"], count=3)
    # even a hand-added route through the (absent) gateway does not cross: no router
    box.run(box.workload("h1", "n1"), "ip", "route", "add", "10.0.2.0/24", "via", "10.0.1.1")
    assert not box.ping(box.workload("h1", "n1"), b["ip_address"], count=2)


def test_agent_failure_reports_error_with_detail(box: Box) -> None:
    t = box.tenant()
    (s,) = box.network(t)
    ns = box.workload("h3", "taken")
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:  # an interface the agent does not own already holds the name it must use
        subprocess.run(["ip", "-n", ns, "link", "add", "eth0", "type", "bridge"], check=True)
        p = box.port(t, s, "h3", "taken")
        bad = box.wait_status(t, p, want="error")
        assert bad["status_detail"] and "eth0" in bad["status_detail"]
        good = box.port(t, s, "h3", "fine")
        box.wait_status(t, good)  # one failed port does not stop the others
        # the foreign interface was never touched
        link = subprocess.run(
            ["ip", "-n", ns, "-d", "-o", "link", "show", "eth0"], capture_output=True, text=True
        ).stdout
        assert "bridge" in link and p["mac_address"] not in link
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)


def test_agent_sigkill_and_restart_restores_without_duplicates(box: Box) -> None:
    t, s, _a, b = box.connected_pair(("h1", "k1"), ("h2", "k2"))
    before = sorted(box.links("h2"))
    state = sbx.Sandbox.load(box.name)
    assert state is not None
    pid = state.pids["agent-h2"]
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while sbx.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    sbx.respawn(box.name, "agent-h2")
    c = box.port(t, s, "h2", "k3")  # a change while it restarts is picked up too
    box.wait_status(t, c)
    box.wait_ping(box.workload("h1", "k1"), b["ip_address"])
    box.wait_ping(box.workload("h1", "k1"), c["ip_address"])
    after = sorted(box.links("h2"))
    assert after == sorted([*before, names.host_veth_name(c["id"])])  # nothing duplicated


def test_drift_is_repaired_within_the_resync_interval(box: Box) -> None:
    _t, s, _a, b = box.connected_pair(("h1", "d1"), ("h2", "d2"))
    ns_a = box.workload("h1", "d1")
    h1 = box.sb.host("h1")["netns"]
    h2 = box.sb.host("h2")["netns"]
    subprocess.run(["ip", "-n", h2, "link", "del", names.bridge_name(s["id"])], check=True)
    subprocess.run(["ip", "-n", h2, "link", "del", names.host_veth_name(b["id"])], check=True)
    subprocess.run(
        ["bridge", "-n", h1, "fdb", "flush", "dev", names.vxlan_name(s["id"])], check=False
    )
    for entry in subprocess.run(
        ["bridge", "-n", h1, "fdb", "show", "dev", names.vxlan_name(s["id"])],
        capture_output=True,
        text=True,
    ).stdout.splitlines():
        if "dst" in entry:
            subprocess.run(
                [
                    "bridge",
                    "-n",
                    h1,
                    "fdb",
                    "del",
                    *entry.split()[:1],
                    "dev",
                    names.vxlan_name(s["id"]),
                    "dst",
                    entry.split("dst")[1].split()[0],
                ],
                check=False,
            )
    assert not box.ping(ns_a, b["ip_address"], wait=0.5)
    start = time.monotonic()
    box.wait_ping(ns_a, b["ip_address"], timeout=RESYNC * 3 + 5)
    assert time.monotonic() - start < RESYNC * 3 + 5


def test_deleting_ports_removes_interfaces_bridges_and_flood_entries(box: Box) -> None:
    t, s, _a, b = box.connected_pair(("h1", "r1"), ("h3", "r2"))
    h1_ns, h3_ns = box.sb.host("h1")["netns"], box.sb.host("h3")["netns"]
    vtep3 = box.sb.host("h3")["vtep_ip"]
    flood = subprocess.run(
        ["bridge", "-n", h1_ns, "fdb", "show", "dev", names.vxlan_name(s["id"])],
        capture_output=True,
        text=True,
    ).stdout
    assert f"00:00:00:00:00:00 dst {vtep3}" in flood
    r = box.http.delete(f"/v1/ports/{b['id']}", headers=t)
    assert r.status_code == 204
    deadline = time.monotonic() + 20
    gone = False
    while time.monotonic() < deadline and not gone:
        links = box.links("h3")
        flood = subprocess.run(
            ["bridge", "-n", h1_ns, "fdb", "show", "dev", names.vxlan_name(s["id"])],
            capture_output=True,
            text=True,
        ).stdout
        gone = (
            names.host_veth_name(b["id"]) not in links
            and names.bridge_name(s["id"]) not in links
            and names.vxlan_name(s["id"]) not in links
            and f"dst {vtep3}" not in flood
            and box.workload("h3", "r2") not in sbx.existing_namespaces()
        )
        time.sleep(0.1)
    assert gone, (links, flood)
    assert names.bridge_name(s["id"]) in box.links("h1")  # h1 still carries the subnet
    assert h3_ns in sbx.existing_namespaces()


def test_agents_hold_no_database_credentials(box: Box) -> None:
    state = sbx.Sandbox.load(box.name)
    assert state is not None
    for label, pid in state.pids.items():
        environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")  # noqa: SIM115
        has_db = any(e.startswith(b"DATABASE_URL=") for e in environ)
        assert has_db == (not label.startswith("agent-")), label
