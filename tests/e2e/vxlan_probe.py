"""Craft VXLAN by hand, to prove who may inject frames into a tenant's segment.

python vxlan_probe.py send VTEP VNI DST_MAC SRC_MAC SRC_IP DST_IP PORT COUNT
    sends COUNT VXLAN-encapsulated UDP datagrams (payload "probe") to VTEP:4789
python vxlan_probe.py sink PORT SECONDS
    prints "ready", then one line per datagram received on PORT, until SECONDS pass
"""

from __future__ import annotations

import socket
import struct
import sys
import time


def _checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def frame(dst_mac: str, src_mac: str, src_ip: str, dst_ip: str, port: int) -> bytes:
    payload = b"probe"
    udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        1,
        0,
        64,
        socket.IPPROTO_UDP,
        0,
        socket.inet_aton(src_ip),
        socket.inet_aton(dst_ip),
    )
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", ""))
    return eth + b"\x08\x00" + ip + udp


def send(vtep: str, vni: int, inner: bytes, count: int) -> None:
    header = struct.pack("!II", 0x08000000, vni << 8)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(count):
            s.sendto(header + inner, (vtep, 4789))
            time.sleep(0.01)


def sink(port: int, seconds: float) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", port))
        print("ready", flush=True)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                data, peer = s.recvfrom(64)
            except TimeoutError:
                break
            print(f"{peer[0]} {data.decode(errors='replace')}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "send":
        vtep, vni, dst_mac, src_mac, src_ip, dst_ip, port, count = sys.argv[2:10]
        send(vtep, int(vni), frame(dst_mac, src_mac, src_ip, dst_ip, int(port)), int(count))
    else:
        sink(int(sys.argv[2]), float(sys.argv[3]))
