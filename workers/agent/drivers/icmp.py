"""PING health checks of UDP pools' members, from inside a load balancer's namespace.

One raw ICMP socket (opened in the namespace, as root) sends one echo request to each
member and collects the replies until the monitor's timeout: an answer within it is up,
as in Octavia's PING monitor. Our requests carry one random identifier, so replies to
anyone else's pings on the same host are ignored.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time

from workers.agent.drivers.netns import in_netns

ECHO_REQUEST, ECHO_REPLY = 8, 0


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, payload: bytes = b"vpcd-health") -> bytes:
    header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, checksum(header + payload), ident, seq) + (
        payload
    )


def parse_reply(packet: bytes, ident: int) -> int | None:
    """The sequence number of our echo reply in an IPv4 packet, or None."""
    if len(packet) < 20:
        return None
    start = (packet[0] & 0x0F) * 4
    if len(packet) < start + 8:
        return None
    kind, _, _, got, seq = struct.unpack("!BBHHH", packet[start : start + 8])
    return seq if kind == ECHO_REPLY and got == ident else None


def icmp_probe(netns: str, targets: list[str], timeout: float) -> list[bool]:
    """One echo request to each address; True for those that answered in `timeout`."""
    if not targets:
        return []

    def open_socket() -> int:
        return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).detach()

    sock = socket.socket(fileno=in_netns(netns, open_socket))
    ident = int.from_bytes(os.urandom(2), "big")
    up = [False] * len(targets)
    try:
        for seq, address in enumerate(targets):
            with contextlib.suppress(OSError):  # unreachable at once: stays down
                sock.sendto(echo_request(ident, seq), (address, 0))
        deadline = time.monotonic() + timeout
        while not all(up) and (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                packet, (source, _) = sock.recvfrom(2048)
            except OSError:  # the timeout, or an error report: nothing more to learn
                break
            got = parse_reply(packet, ident)
            if got is not None and got < len(targets) and targets[got] == source:
                up[got] = True
        return up
    finally:
        sock.close()
