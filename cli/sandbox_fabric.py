"""The sandbox's namespaces and wires, never joined to the machine's network (DESIGN §5).

Layout, for a sandbox named S with N hosts:
  S-fabric    underlay bridge (198.18.0.0/24) and external bridge (203.0.113.0/24)
  S-h1..S-hN  host namespaces: vtep0 on the underlay; network hosts also ext0 on external
  S-outside   203.0.113.1 on the external segment, standing for the internet
  S-physical  192.168.50.1 on the provider segment (each host's `phys0` is on it too),
              standing for a bare-metal machine that flat subnets' workloads meet
Each namespace is recorded in the sandbox's state before it is made, so `down` finds it
even after a crash.
"""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cli.sandbox import Sandbox

UNDERLAY = "198.18.0"  # RFC 2544 benchmarking range: never routed, used only inside netns
EXTERNAL = "203.0.113"  # RFC 5737 TEST-NET-3: the sandbox's "internet"
# The provider segment flat subnets sit on: a fabric bridge with one `phys0` per host (the
# agents' --physical-interface provider=phys0), standing for a physical switch.
PHYSNET, PHYS_IFACE = "provider", "phys0"
# The "physical server" on the provider segment: the gateway a flat subnet on it names.
PROVIDER_CIDR, PHYSICAL_SERVER = "192.168.50.0/24", "192.168.50.1"


def ip(
    *args: str, netns: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def existing_namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def add_netns(sb: Sandbox, name: str) -> None:
    sb.namespaces.append(name)
    sb.save()  # recorded before it exists, so `down` finds it even if we die next
    ip("netns", "add", name)
    ip("link", "set", "lo", "up", netns=name)


def plug(fabric: str, bridge: str, port: str, netns: str, inner: str) -> None:
    """A veth from the fabric's `bridge` (end `port`) into `netns` (end `inner`), both up."""
    ip("link", "add", port, "netns", fabric, "type", "veth", "peer", "name", inner, "netns", netns)
    ip("link", "set", port, "master", bridge, "up", netns=fabric)
    ip("link", "set", inner, "up", netns=netns)


def build_fabric(sb: Sandbox, count: int, network_hosts: int) -> None:
    fabric, outside = f"{sb.name}-fabric", f"{sb.name}-outside"
    add_netns(sb, fabric)
    for bridge in ("underlay", "external", PHYSNET):
        ip("link", "add", bridge, "type", "bridge", netns=fabric)
        ip("link", "set", bridge, "up", netns=fabric)
    add_netns(sb, outside)
    plug(fabric, "external", "out0", outside, "eth0")
    ip("addr", "add", f"{EXTERNAL}.1/24", "dev", "eth0", netns=outside)
    physical = f"{sb.name}-physical"
    add_netns(sb, physical)
    plug(fabric, PHYSNET, "phy0", physical, "eth0")
    ip("addr", "add", f"{PHYSICAL_SERVER}/24", "dev", "eth0", netns=physical)
    for i in range(1, count + 1):
        name = f"{sb.name}-h{i}"
        roles = ["compute", "network"] if i <= network_hosts else ["compute"]
        vtep = f"{UNDERLAY}.{10 + i}"
        links = [f"h{i}u", f"h{i}p", *([f"h{i}x"] if "network" in roles else [])]
        add_netns(sb, name)
        plug(fabric, "underlay", f"h{i}u", name, "vtep0")
        ip("addr", "add", f"{vtep}/24", "dev", "vtep0", netns=name)
        plug(fabric, PHYSNET, f"h{i}p", name, PHYS_IFACE)  # no address: macvlan parent only
        if "network" in roles:
            plug(fabric, "external", f"h{i}x", name, "ext0")
        sb.hosts.append(
            {
                "name": name,
                "short": f"h{i}",
                "netns": name,
                "vtep_ip": vtep,
                "roles": ",".join(roles),
                "links": ",".join(links),
            }
        )
    sb.save()
