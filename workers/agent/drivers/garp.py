"""Gratuitous ARP: one raw Ethernet frame announcing IP -> MAC on an interface in a
namespace, so neighbours (the external gateway, other hosts) update their caches at
once when a floating IP appears or moves. A raw AF_PACKET socket opened in a throwaway
thread setns()ed into the namespace: no shell, no arping binary."""

from __future__ import annotations

import ipaddress
import os
import socket

from workers.agent.drivers.base import _CLONE_NEWNET, _libc
from workers.agent.drivers.netns import netns_path
from workers.agent.drivers.nsthread import _check, _in_thread

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6


def frame(mac: bytes, address: str) -> bytes:
    """An ARP request whose sender and target are both `address` (RFC 5227 announce)."""
    ip = ipaddress.IPv4Address(address).packed
    eth = BROADCAST + mac + ETH_P_ARP.to_bytes(2, "big")
    arp = (
        (1).to_bytes(2, "big")  # Ethernet
        + (0x0800).to_bytes(2, "big")  # IPv4
        + bytes([6, 4])
        + (1).to_bytes(2, "big")  # request
        + mac
        + ip
        + b"\x00" * 6
        + ip
    )
    return eth + arp


def announce(netns: str, ifname: str, address: str, count: int = 2) -> None:
    """Send `count` gratuitous ARPs for `address` from `ifname` in `netns`."""

    def send() -> None:
        fd = os.open(netns_path(netns), os.O_RDONLY)
        try:
            _check(_libc.setns(fd, _CLONE_NEWNET), f"setns {netns}")
        finally:
            os.close(fd)
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as s:
            s.bind((ifname, ETH_P_ARP))
            mac = s.getsockname()[4]
            for _ in range(count):
                s.send(frame(mac, address))

    _in_thread(send)
