"""Kernel-side witnesses for the converge bench (root only).

- `Watch`: rtnetlink notification sockets in a set of namespaces (links, FDB/neighbours,
  IPv4 addresses and routes): every change the kernel makes there is one message, so
  `count()` after a window is the number of kernel writes seen in it, independent of
  what the agent says it did. iptables/ipset rulesets are compared as text.
- `floor`: the same run's cost of the kernel work a port needs (a namespace, a veth
  into it on a bridge), done as cheaply as Python can (raw netlink, no agent): the
  baseline the agent's cold build is compared against.
"""

from __future__ import annotations

import ctypes
import os
import re
import socket
import struct
import subprocess
import threading
import time
from typing import Any

_CLONE_NEWNET = 0x40000000
_GROUPS = 0x1 | 0x4 | 0x10 | 0x40  # RTMGRP_LINK | NEIGH | IPV4_IFADDR | IPV4_ROUTE
_RTM_NEWNEIGH, _RTM_DELNEIGH, _NUD_PERMANENT = 28, 29, 0x80
_libc = ctypes.CDLL(None, use_errno=True)


def _in_netns(names: list[str], make: Any) -> dict[str, Any]:
    """Call make() inside each namespace, on a throwaway thread; skip vanished ones."""
    out: dict[str, Any] = {}

    def run() -> None:
        for name in names:
            try:
                fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    continue
            finally:
                os.close(fd)
            out[name] = make()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return out


def _monitor() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    sock.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE: no overflow
    sock.bind((0, _GROUPS))
    sock.setblocking(False)
    return sock


class Watch:
    def __init__(self, namespaces: list[str]) -> None:
        self.sockets: dict[str, socket.socket] = _in_netns(namespaces, _monitor)
        self.rulesets = {ns: rules(ns) for ns in namespaces[:1]}  # the host namespace

    def count(self) -> dict[str, Any]:
        """Kernel notifications since the watch began, and whether rulesets changed.

        `writes` counts what a write by the agent would cause: link, address and route
        changes, and static (permanent) neighbour/FDB entries. What the kernel does on
        its own (a bridge learning a MAC, ARP or neighbour states ageing) is counted
        apart as `learned`."""
        events, overflows, learned = 0, 0, 0
        by_type: dict[int, int] = {}
        for sock in self.sockets.values():
            while True:
                try:
                    data = sock.recv(1 << 20)
                except BlockingIOError:
                    break
                except OSError:  # ENOBUFS: more than the buffer held
                    overflows += 1
                    break
                offset = 0
                while offset + 16 <= len(data):
                    length, kind = struct.unpack_from("=IH", data, offset)
                    if kind in (_RTM_NEWNEIGH, _RTM_DELNEIGH):
                        (state,) = struct.unpack_from("=H", data, offset + 16 + 8)
                        if not state & _NUD_PERMANENT:
                            learned += 1
                            offset += max(16, (length + 3) & ~3)
                            continue
                    events += 1
                    by_type[kind] = by_type.get(kind, 0) + 1
                    offset += max(16, (length + 3) & ~3)
        changed = [ns for ns, text in self.rulesets.items() if rules(ns) != text]
        return {
            "namespaces_watched": len(self.sockets),
            "writes": events,
            "writes_by_rtm_type": by_type,
            "learned": learned,
            "overflows": overflows,
            "rulesets_changed": changed,
        }

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()


def rules(ns: str) -> str:
    """iptables and ipset state of a namespace, counters stripped."""
    out = []
    for argv in (["iptables-save"], ["ipset", "save"]):
        done = subprocess.run(
            ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, check=False
        )
        out.append(re.sub(r"\[\d+:\d+\]", "", done.stdout))
    return "\n".join(line for line in "\n".join(out).splitlines() if not line.startswith("#"))


def floor(count: int, prefix: str = "bkf") -> dict[str, float]:
    """ms per namespace and per veth (host end on a bridge, peer created in the netns) on
    this machine now, via `ip` batch mode (one process, one netlink socket)."""
    host = f"{prefix}-host"
    names = [f"{prefix}-{i}" for i in range(count)]
    subprocess.run(["ip", "netns", "add", host], check=True)
    try:
        subprocess.run(["ip", "-n", host, "link", "add", "br0", "type", "bridge"], check=True)
        t0 = time.monotonic()
        batch = "".join(f"netns add {n}\n" for n in names)
        subprocess.run(["ip", "-batch", "-"], input=batch, text=True, check=True)
        t1 = time.monotonic()
        batch = "".join(
            f"link add v{i} master br0 up type veth peer name eth0 netns {n}\n"
            for i, n in enumerate(names)
        )
        subprocess.run(["ip", "-n", host, "-batch", "-"], input=batch, text=True, check=True)
        t2 = time.monotonic()
    finally:
        batch = "".join(f"netns del {n}\n" for n in names)
        subprocess.run(["ip", "-force", "-batch", "-"], input=batch, text=True, check=False)
        subprocess.run(["ip", "netns", "del", host], check=False)
    return {
        "netns_ms": (t1 - t0) * 1000 / count,
        "veth_ms": (t2 - t1) * 1000 / count,
        "per_port_ms": (t2 - t0) * 1000 / count,
    }
