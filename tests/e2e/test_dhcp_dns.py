"""DHCP and DNS inside every VPC, with real packets (issue 10): a workload's own DHCP
client, tenants with the same CIDR and MACs, names per VPC, renames, forwarding to an
upstream resolver, a dnsmasq killed by hand, and a subnet deleted without leftovers.

Routers are not realised by agents on main yet, so the upstream resolver runs in a
workload namespace on the same subnet rather than in `outside` (the forwarding path in
dnsmasq is the same). All traffic stays inside namespaces the sandbox made.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cli import netns_cleanup
from cli import sandbox as sbx
from tests.e2e.conftest import Box
from workers.agent import dnsmasq, names

pytestmark = pytest.mark.e2e
IPV4 = re.compile(r"\d{1,3}(\.\d{1,3}){3}")

LEASE_SCRIPT = """#!/bin/sh
# Apply a udhcpc lease the way a distribution's default script would, and record it.
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    [ -n "$router" ] && ip route replace default via "$router" dev "$interface"
    set -- $staticroutes
    while [ $# -ge 2 ]; do
      [ "$1" = 0.0.0.0/0 ] || ip route replace "$1" via "$2" dev "$interface"
      shift 2
    done
    printf 'ip=%s\\nmask=%s\\nrouter=%s\\nmtu=%s\\ndns=%s\\ndomain=%s\\nroutes=%s\\n' \\
      "$ip" "$mask" "$router" "$mtu" "$dns" "$domain" "$staticroutes" > "{out}"
    ;;
esac
exit 0
"""


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")


def udhcpc(box: Box, ns: str, tmp: Path) -> dict[str, str] | None:
    """Run busybox's DHCP client once in the workload; the lease it applied, or None."""
    out = tmp / f"lease-{ns}"
    out.unlink(missing_ok=True)
    script = tmp / f"udhcpc-{ns}.sh"
    script.write_text(LEASE_SCRIPT.replace("{out}", str(out)))
    script.chmod(0o755)
    argv = ["busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "4", "-T", "1"]
    argv += ["-O", "mtu", "-O", "staticroutes", "-s", str(script)]
    r = box.run(ns, *argv, timeout=30)
    if r.returncode != 0 or not out.exists():
        return None
    return dict(line.split("=", 1) for line in out.read_text().splitlines())


def dig(box: Box, ns: str, server: str, name: str) -> list[str]:
    """The A records dig got (its error lines, such as a timeout, are no answer)."""
    r = box.run(ns, "dig", "+short", "+time=1", "+tries=2", f"@{server}", name, "A")
    return [line for line in r.stdout.splitlines() if IPV4.fullmatch(line.strip())]


NETWORK_HOSTS = ("h1", "h2")  # the e2e sandbox's network hosts (tests/e2e/conftest.py)


def dhcp_short(box: Box, subnet: dict[str, Any]) -> str:
    """The short name (h1, h2) of the network host the subnet's DHCP/DNS service runs on."""
    (short,) = [h for h in NETWORK_HOSTS if box.host(h) == subnet["dhcp_host"]]
    return short


def service_pid(box: Box, subnet_id: str) -> int | None:
    token = names.service_token(subnet_id)
    for short in NETWORK_HOSTS:
        path = box.sb.dir / "agents" / short / "pids" / f"{dnsmasq.daemon_name(token)}.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(path.read_text())
            if Path(f"/proc/{pid}").exists():
                return pid
    return None


def runs_as(pid: int) -> int | None:
    """The effective uid of a process (None once it is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[2])
    return None


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts itself (an upstream resolver); killed by PID afterwards."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def network(
    box: Box, who: dict[str, str], name: str = "shop", **subnet: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A VPC and a subnet whose DHCP/DNS service (on a network host) is running."""
    vpc = box.post("/v1/vpcs", who, cidr="10.0.0.0/16", name=name)
    s = box.post("/v1/subnets", who, vpc_id=vpc["id"], cidr="10.0.1.0/24", **subnet)
    assert s["dhcp_host"] in {box.host(h) for h in NETWORK_HOSTS} and s["dhcp_address"]
    ports = box.http.get(f"/v1/ports?subnet_id={s['id']}", headers=who).json()["items"]
    (service,) = [p for p in ports if p["device_owner"] == "network:dhcp"]
    box.wait_status(who, service)  # with no port of the user yet
    return vpc, s


def test_a_dhcp_workload_gets_its_ipam_lease_and_reaches_a_static_port(
    box: Box, tmp_path: Path
) -> None:
    t = box.tenant()
    routes = [{"destination": "192.168.77.0/24", "nexthop": "10.0.1.9"}]
    _vpc, s = network(box, t, host_routes=routes)
    router = box.post("/v1/routers", t, vpc_id=_vpc["id"])
    box.post(f"/v1/routers/{router['id']}/interfaces", t, subnet_id=s["id"])  # "routed"
    try:
        _dhcp_lease_and_ping(box, t, s, tmp_path)
    finally:  # the router is realised on a network host: leave no router namespace behind
        box.http.delete(f"/v1/routers/{router['id']}/interfaces/{s['id']}", headers=t)
        box.http.delete(f"/v1/routers/{router['id']}", headers=t)


def _dhcp_lease_and_ping(box: Box, t: dict[str, str], s: dict[str, Any], tmp_path: Path) -> None:
    client = box.port(t, s, "h2", "dc", ip_config="dhcp")
    static = box.port(t, s, "h3", "st")
    box.wait_status(t, client)
    box.wait_status(t, static)
    ns = box.workload("h2", "dc")
    assert "inet " not in box.run(ns, "ip", "-o", "addr", "show", "dev", "eth0").stdout
    lease = wait_for("a DHCP lease", lambda: udhcpc(box, ns, tmp_path))
    assert lease["ip"] == client["ip_address"]  # exactly what IPAM allocated
    assert (lease["mask"], lease["router"], lease["mtu"]) == ("24", s["gateway_ip"], "1450")
    assert lease["dns"].split() == [s["dhcp_address"]]
    assert lease["domain"] == "shop.vpc.internal"
    assert lease["routes"].split() == ["0.0.0.0/0", s["gateway_ip"], "192.168.77.0/24", "10.0.1.9"]
    shown = box.run(ns, "ip", "route", "show", "192.168.77.0/24").stdout
    assert "via 10.0.1.9" in shown
    assert "mtu 1450" in box.run(ns, "ip", "-o", "link", "show", "dev", "eth0").stdout
    box.wait_ping(ns, static["ip_address"])
    # The agent leaves the client's address alone across a full resync.
    time.sleep(4)
    assert f"{client['ip_address']}/24" in box.run(ns, "ip", "-o", "addr").stdout


def test_same_cidr_and_macs_in_two_tenants_never_cross(box: Box, tmp_path: Path) -> None:
    leases = {}
    for label, address in (("x", "10.0.1.30"), ("y", "10.0.1.40")):
        who = box.tenant()
        _vpc, s = network(box, who)
        p = box.port(
            who,
            s,
            "h3",
            f"o{label}",
            ip_config="dhcp",
            ip_address=address,
            mac_address="fa:16:3e:aa:bb:cc",
        )
        box.wait_status(who, p)
        leases[label] = s
    for label, address in (("x", "10.0.1.30"), ("y", "10.0.1.40")):
        ns = box.workload("h3", f"o{label}")
        for _ in range(3):
            lease = wait_for("a lease", lambda ns=ns: udhcpc(box, ns, tmp_path))
            assert lease["ip"] == address
            assert lease["dns"].split() == [leases[label]["dhcp_address"]]


def test_names_resolve_in_their_vpc_only_and_follow_a_rename(box: Box) -> None:
    a, b = box.tenant(), box.tenant()
    va, sa = network(box, a)
    vb, sb = network(box, b, name="other")
    web = box.port(a, sa, "h2", "wa", dns_name="web")
    cli_a = box.port(a, sa, "h3", "ca")
    other_web = box.port(b, sb, "h2", "wb", dns_name="web", ip_address="10.0.1.99")
    cli_b = box.port(b, sb, "h3", "cb")
    for who, p in ((a, web), (a, cli_a), (b, other_web), (b, cli_b)):
        box.wait_status(who, p)
    ns_a, ns_b = box.workload("h3", "ca"), box.workload("h3", "cb")
    fqdn = f"web.{va['dns_domain']}"
    assert wait_for("web resolves", lambda: dig(box, ns_a, sa["dhcp_address"], fqdn)) == [
        web["ip_address"]
    ]
    # Through the namespace's resolv.conf, as any program in it would.
    resolv = Path("/etc/netns") / ns_a / "resolv.conf"
    assert f"nameserver {sa['dhcp_address']}" in resolv.read_text()
    got = box.run(ns_a, "getent", "hosts", fqdn).stdout.split()
    assert got[:1] == [web["ip_address"]]
    assert box.run(ns_a, "getent", "hosts", "web").stdout.split()[:1] == [web["ip_address"]]
    # Another VPC: A's name is not there, its own "web" is.
    assert dig(box, ns_b, sb["dhcp_address"], fqdn) == []
    own = f"web.{vb['dns_domain']}"
    assert wait_for("b's web", lambda: dig(box, ns_b, sb["dhcp_address"], own)) == ["10.0.1.99"]
    # A rename resolves within 2 s; the old name stops resolving.
    r = box.http.patch(f"/v1/ports/{web['id']}", json={"dns_name": "www"}, headers=a)
    assert r.status_code == 200, r.text
    started = time.monotonic()
    new = f"www.{va['dns_domain']}"
    wait_for("www resolves", lambda: dig(box, ns_a, sa["dhcp_address"], new), timeout=10)
    assert time.monotonic() - started < 2.0
    assert dig(box, ns_a, sa["dhcp_address"], fqdn) == []


def test_other_names_go_to_the_upstream_resolver(
    box: Box, spawned: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """The VPC resolver forwards other names to `dns_nameservers`: here a resolver in the
    sandbox's `outside` namespace (203.0.113.1), reached through the router's SNAT."""
    t = box.tenant()
    outside = f"{box.name}-outside"
    ext = box.post(
        "/v1/external-networks",
        box.admin,
        cidr="203.0.113.0/24",
        gateway_ip="203.0.113.1",
        allocation_pools=[{"start": "203.0.113.10", "end": "203.0.113.250"}],
    )
    made: list[tuple[str, dict[str, str]]] = [(f"/v1/external-networks/{ext['id']}", box.admin)]
    try:
        vpc, s = network(box, t, name="fwd", dns_nameservers=["203.0.113.1"])
        made.append((f"/v1/vpcs/{vpc['id']}", t))
        made.append((f"/v1/subnets/{s['id']}", t))
        r = box.post("/v1/routers", t, vpc_id=vpc["id"], external_network_id=ext["id"])
        made.append((f"/v1/routers/{r['id']}", t))
        box.post(f"/v1/routers/{r['id']}/interfaces", t, subnet_id=s["id"])
        made.append((f"/v1/routers/{r['id']}/interfaces/{s['id']}", t))
        cli = box.port(t, s, "h3", "uc")
        made.append((f"/v1/ports/{cli['id']}", t))
        box.wait_status(t, cli)
        log = tmp_path / "upstream.log"
        argv = ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts"]
        argv += ["--bind-interfaces", "--listen-address=203.0.113.1", "--log-queries"]
        argv += [f"--log-facility={log}", "--address=/ext.example.org/192.0.2.80"]
        argv += [f"--pid-file={tmp_path}/upstream.pid", "--conf-file=/dev/null"]
        spawned.append(
            subprocess.Popen(["ip", "netns", "exec", outside, *argv], start_new_session=True)
        )
        ns = box.workload("h3", "uc")
        got = wait_for(
            "forwarded", lambda: dig(box, ns, s["dhcp_address"], "ext.example.org"), timeout=60
        )
        assert got == ["192.0.2.80"]
        router = box.http.get(f"/v1/routers/{r['id']}", headers=t).json()
        # the query left the VPC through the router: outside saw its external address
        assert f"query[A] ext.example.org from {router['external_ip']}" in log.read_text()
        # without upstreams nothing is forwarded (the reload also empties the cache)
        p = box.http.patch(f"/v1/subnets/{s['id']}", json={"dns_nameservers": []}, headers=t)
        assert p.status_code == 200, p.text
        wait_for("no forwarding", lambda: dig(box, ns, s["dhcp_address"], "ext.example.org") == [])
        assert dig(box, ns, s["dhcp_address"], "other.example.org") == []
        assert "other.example.org" not in log.read_text()
    finally:
        for path, who in reversed(made):
            d = box.http.delete(path, headers=who)
            assert d.status_code in (204, 404), (path, d.text)


def test_a_dnsmasq_killed_by_hand_is_restarted(box: Box, tmp_path: Path) -> None:
    t = box.tenant()
    vpc, s = network(box, t)
    client = box.port(t, s, "h2", "kc", ip_config="dhcp", dns_name="kc")
    box.wait_status(t, client)
    pid = wait_for("dnsmasq running", lambda: service_pid(box, s["id"]))
    assert runs_as(pid) == pwd.getpwnam(dnsmasq.USER).pw_uid  # never root
    os.kill(pid, signal.SIGKILL)  # a process our agent started, by its PID
    wait_for(
        "dnsmasq gone",
        lambda: (
            not Path(f"/proc/{pid}/cmdline").exists()
            or Path(f"/proc/{pid}/cmdline").read_bytes() == b""
        ),
    )
    new = wait_for("dnsmasq restarted", lambda: (p := service_pid(box, s["id"])) != pid and p)
    assert new != pid
    wait_for("the new one dropped root", lambda: runs_as(new) == pwd.getpwnam(dnsmasq.USER).pw_uid)
    ns = box.workload("h2", "kc")
    lease = wait_for("a lease again", lambda: udhcpc(box, ns, tmp_path))
    assert lease["ip"] == client["ip_address"]
    name = f"kc.{vpc['dns_domain']}"
    assert wait_for("name again", lambda: dig(box, ns, s["dhcp_address"], name)) == [
        client["ip_address"]
    ]


def existing_netns() -> set[str]:
    listed = subprocess.run(["ip", "netns"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


def test_the_service_moves_off_a_network_host_that_fails(box: Box, tmp_path: Path) -> None:
    """Like a router: the sweep moves the service to the other network host, with its
    address and MAC; leases and names work again from there; the healed host drops its
    stale copy."""
    t = box.tenant()
    vpc, s = network(box, t, name="move")
    client = box.port(t, s, "h3", "mv", ip_config="dhcp", dns_name="mv")  # h3: no network host
    box.wait_status(t, client)
    old = dhcp_short(box, s)
    ns = box.workload("h3", "mv")
    assert wait_for("a lease", lambda: udhcpc(box, ns, tmp_path))["ip"] == client["ip_address"]
    sbx.fail(box.name, old)
    try:

        def moved() -> dict[str, Any] | None:
            got = box.http.get(f"/v1/subnets/{s['id']}", headers=t).json()
            return got if got["dhcp_host"] not in (None, box.host(old)) else None

        now = wait_for("the service moved", moved, timeout=120)
        assert now["dhcp_address"] == s["dhcp_address"]
        lease = wait_for("a lease from the new host", lambda: udhcpc(box, ns, tmp_path), timeout=60)
        assert lease["ip"] == client["ip_address"]
        name = f"mv.{vpc['dns_domain']}"
        got = wait_for("the name", lambda: dig(box, ns, s["dhcp_address"], name), timeout=30)
        assert got == [client["ip_address"]]
    finally:
        sbx.heal(box.name, old)
        box.sb = sbx.load(box.name)  # the healed agent's new PID
    stale = names.service_netns(f"{box.host(old)}-", names.service_token(s["id"]))
    wait_for("the stale copy gone", lambda: stale not in existing_netns(), timeout=60)
    for path in (f"/v1/ports/{client['id']}", f"/v1/subnets/{s['id']}", f"/v1/vpcs/{vpc['id']}"):
        assert box.http.delete(path, headers=t).status_code == 204, path


def test_deleting_the_subnet_leaves_nothing_behind(box: Box) -> None:
    t = box.tenant()
    _vpc, s = network(box, t)
    p = box.port(t, s, "h2", "gone", dns_name="gone")
    box.wait_status(t, p)
    token = names.service_token(s["id"])
    short = dhcp_short(box, s)
    service_ns = names.service_netns(f"{box.host(short)}-", token)
    directory = box.sb.dir / "agents" / short / dnsmasq.SERVICE_DIR / token
    resolv = Path("/etc/netns") / box.workload("h2", "gone")
    pid = wait_for("running", lambda: service_pid(box, s["id"]))
    assert directory.is_dir() and resolv.is_dir()
    assert netns_cleanup.pids_in(service_ns) == [pid]
    assert box.http.delete(f"/v1/ports/{p['id']}", headers=t).status_code == 204
    assert box.http.delete(f"/v1/subnets/{s['id']}", headers=t).status_code == 204

    def existing() -> set[str]:
        listed = subprocess.run(["ip", "netns"], capture_output=True, text=True).stdout
        return set(listed.split())

    wait_for("service namespace gone", lambda: service_ns not in existing())
    wait_for("dnsmasq gone", lambda: not Path(f"/proc/{pid}").exists())
    wait_for("files gone", lambda: not directory.exists())
    wait_for("resolv.conf gone", lambda: not resolv.exists())
    assert service_pid(box, s["id"]) is None
    assert names.leg_name(s["id"]) not in box.links(short)
