"""Gratuitous ARP: one raw Ethernet frame announcing IP -> MAC on an interface in a
namespace, so neighbours (the external gateway, other hosts) update their caches at
once when a floating IP appears or moves. A raw AF_PACKET socket opened in a throwaway
thread setns()ed into the namespace: no shell, no arping binary."""

from __future__ import annotations

import ipaddress
import socket

from workers.agent.drivers.netns import in_netns

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
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as s:
            s.bind((ifname, ETH_P_ARP))
            mac = s.getsockname()[4]
            for _ in range(count):
                s.send(frame(mac, address))

    in_netns(netns, send)
