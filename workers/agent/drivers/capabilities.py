"""Kernel capabilities, detected for real (DESIGN §4): each link kind is made once in a
throwaway network namespace that dies with the probing thread, so nothing the host owns is
touched and a module the kernel can autoload counts as present.

- vxlan, macvlan, 8021q: the kernel accepts a link of that kind (vlan and macvlan on a
  veth parent, since `dummy` may itself be missing);
- br_netfilter: /proc/sys/net/bridge exists (the module's sysctls);
- ipset: the netfilter ipset netlink subsystem answers (/proc/net/ip_set or the module).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from workers.agent.drivers.base import _CLONE_NEWNET, _libc
from workers.agent.drivers.nsthread import _check, _in_thread

CAPABILITIES = ("vxlan", "macvlan", "8021q", "br_netfilter", "ipset")


def _link_kinds() -> set[str]:
    """In a fresh private namespace (this thread only): which link kinds the kernel makes."""
    _check(_libc.unshare(_CLONE_NEWNET), "unshare")
    found: set[str] = set()
    with IPRoute() as ipr:
        ipr.link("add", ifname="cap0", kind="veth", peer={"ifname": "cap1"})
        parent = ipr.link_lookup(ifname="cap0")[0]
        attempts: dict[str, dict[str, Any]] = {
            "vxlan": {"ifname": "capvx", "kind": "vxlan", "vxlan_id": 42, "vxlan_port": 4789},
            "macvlan": {
                "ifname": "capmv",
                "kind": "macvlan",
                "link": parent,
                "macvlan_mode": "bridge",
            },
            "8021q": {"ifname": "capvl", "kind": "vlan", "link": parent, "vlan_id": 42},
        }
        for name, spec in attempts.items():
            try:
                ipr.link("add", **spec)
            except NetlinkError:
                continue
            found.add(name)
    return found


def _exists(*paths: str) -> Callable[[], bool]:
    return lambda: any(os.path.exists(p) for p in paths)


FILE_PROBES: dict[str, Callable[[], bool]] = {
    "br_netfilter": _exists("/proc/sys/net/bridge/bridge-nf-call-iptables"),
    "ipset": _exists("/proc/net/ip_set", "/sys/module/ip_set"),
}


def detect() -> list[str]:
    """The capabilities this kernel has, in CAPABILITIES order."""
    kinds = _in_thread(_link_kinds)
    found = kinds | {name for name, probe in FILE_PROBES.items() if probe()}
    return [c for c in CAPABILITIES if c in found]
