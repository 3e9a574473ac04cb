"""A tiny TCP/UDP echo that answers with its own name, to prove *which* workload replied.

python echo.py serve tcp|udp PORT NAME
python echo.py ask tcp|udp ADDRESS PORT   -> prints the server's name
"""

from __future__ import annotations

import socket
import sys


def serve(proto: str, port: int, name: str) -> None:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        if proto == "tcp":
            s.listen(16)
        print("ready", flush=True)
        while True:
            if proto == "tcp":
                conn, _ = s.accept()
                with conn:
                    conn.recv(64)
                    conn.sendall(name.encode())
            else:
                _, peer = s.recvfrom(64)
                s.sendto(name.encode(), peer)


def ask(proto: str, address: str, port: int) -> str:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.settimeout(1.0)
        if proto == "tcp":
            s.connect((address, port))
            s.sendall(b"who")
            return s.recv(64).decode()
        s.sendto(b"who", (address, port))
        return s.recvfrom(64)[0].decode()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        print(ask(sys.argv[2], sys.argv[3], int(sys.argv[4])))
