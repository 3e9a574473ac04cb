"""Run inside a workload namespace by bench/dhcp_dns.py: DNS queries over UDP, timed in
process (no process start per query), and a UDP echo server for the baseline.

    python dns_probe.py query SERVER NAME COUNT     -> one latency (s) per line, "-" if none
    python dns_probe.py wait SERVER NAME TIMEOUT    -> the CLOCK_MONOTONIC time it resolved
    python dns_probe.py echo PORT                   -> echoes UDP datagrams until killed
"""

from __future__ import annotations

import secrets
import socket
import struct
import sys
import time


def query_packet(name: str) -> tuple[int, bytes]:
    ident = secrets.randbelow(1 << 16)
    header = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return ident, header + labels + struct.pack("!HH", 1, 1)


def ask(sock: socket.socket, server: str, port: int, name: str) -> tuple[float, bool]:
    """(seconds, answered with at least one record)."""
    ident, packet = query_packet(name)
    started = time.monotonic()
    sock.sendto(packet, (server, port))
    while True:
        data = sock.recv(4096)
        if data == packet:  # the echo baseline
            return time.monotonic() - started, True
        if len(data) >= 12 and struct.unpack("!H", data[:2])[0] == ident:
            answers = struct.unpack("!H", data[6:8])[0]
            return time.monotonic() - started, answers > 0


def main() -> None:
    mode = sys.argv[1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1.0)
    if mode == "echo":
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.bind(("0.0.0.0", int(sys.argv[2])))
        print("ready", flush=True)
        while True:
            data, peer = server.recvfrom(4096)
            server.sendto(data, peer)
    server_ip, name = sys.argv[2], sys.argv[3]
    port = 53
    if ":" in server_ip:
        server_ip, port_text = server_ip.split(":")
        port = int(port_text)
    if mode == "query":
        for _ in range(int(sys.argv[4])):
            try:
                seconds, ok = ask(sock, server_ip, port, name)
                print(f"{seconds:.6f}" if ok else "-", flush=True)
            except TimeoutError:
                print("-", flush=True)
    elif mode == "wait":
        print("ready", flush=True)
        deadline = time.monotonic() + float(sys.argv[4])
        while time.monotonic() < deadline:
            try:
                if ask(sock, server_ip, port, name)[1]:
                    print(f"{time.monotonic():.6f}", flush=True)
                    return
            except TimeoutError:
                pass
            time.sleep(0.005)
        print("timeout", flush=True)


if __name__ == "__main__":
    main()
