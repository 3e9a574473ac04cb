"""A tiny TCP/UDP echo that answers with its own name, to prove *which* workload replied.

python echo.py serve tcp|udp PORT NAME
python echo.py ask tcp|udp ADDRESS PORT   -> prints the server's name
python echo.py identity PORT NAME          TCP; answers every message with "NAME CALLER-IP"
python echo.py hold ADDRESS PORT           one TCP connection, a question every 0.2 s:
                                           prints each answer, then "cut" when it breaks
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time


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


def identity(port: int, name: str) -> None:
    """Who am I, who are you: proves which workload answered and whose address it saw."""

    def talk(conn: socket.socket, peer: str) -> None:
        with conn, contextlib.suppress(OSError):  # a cut connection (the test's point)
            while conn.recv(64):
                conn.sendall(f"{name} {peer}".encode())

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(64)
        print("ready", flush=True)
        while True:
            conn, (peer, _) = s.accept()
            threading.Thread(target=talk, args=(conn, peer), daemon=True).start()


def hold(address: str, port: int) -> None:
    """Keep one connection talking until it breaks (at most 120 s)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        s.connect((address, port))
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline:
                s.sendall(b"who")
                answer = s.recv(64).decode()
                if not answer:
                    break
                print(answer, flush=True)
                time.sleep(0.2)
        except OSError:
            pass
    print("cut", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "identity":
        identity(int(sys.argv[2]), sys.argv[3])
    elif sys.argv[1] == "hold":
        hold(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        print(ask(sys.argv[2], sys.argv[3], int(sys.argv[4])))
