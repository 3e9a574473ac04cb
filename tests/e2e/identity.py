"""Identity servers and clients for the load-balancer e2e tests and benchmark: every
server answers with its own name, so a client can count who served it.

python identity.py serve tcp|udp|http PORT NAME
    tcp: on connect, sends NAME + newline, then echoes until the client closes (so a
         held connection shows which member it reached and that it is still up)
    udp: answers each datagram with NAME
    http: answers GET with "NAME XFF" (XFF: the X-Forwarded-For header, "-" if none)
python identity.py count tcp|udp|http ADDRESS PORT N   -> JSON {name: count}, "!fail" too
python identity.py hold ADDRESS PORT                    -> prints the name, then on each
    stdin line sends it and prints the echo (the connection stays open until stdin ends)
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _tcp_client(conn: socket.socket, name: str) -> None:
    with conn:
        try:
            conn.sendall(name.encode() + b"\n")
            while data := conn.recv(4096):
                conn.sendall(data)
        except OSError:
            pass


def serve(proto: str, port: int, name: str) -> None:
    if proto == "http":

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = f"{name} {self.headers.get('X-Forwarded-For', '-')}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
        print("ready", flush=True)
        server.serve_forever()
        return
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        if proto == "tcp":
            s.listen(128)
        print("ready", flush=True)
        while True:
            if proto == "tcp":
                conn, _ = s.accept()
                threading.Thread(target=_tcp_client, args=(conn, name), daemon=True).start()
            else:
                _, peer = s.recvfrom(64)
                s.sendto(name.encode(), peer)


def ask(proto: str, address: str, port: int) -> str:
    """One request on a new connection (a new source port for UDP)."""
    if proto == "http":
        with urllib.request.urlopen(f"http://{address}:{port}/", timeout=5) as r:
            return str(r.read().decode())
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.settimeout(5.0)
        if proto == "tcp":
            s.connect((address, port))
            return s.makefile().readline().strip()
        s.sendto(b"who", (address, port))
        return s.recvfrom(64)[0].decode()


def count(proto: str, address: str, port: int, n: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _ in range(n):
        try:
            name = ask(proto, address, port).split(" ")[0]
        except OSError:
            name = "!fail"
        counts[name] = counts.get(name, 0) + 1
    return counts


def hold(address: str, port: int) -> None:
    with socket.create_connection((address, port), timeout=30) as s:
        f = s.makefile("rwb")
        print(f.readline().decode().strip(), flush=True)
        for line in sys.stdin:
            f.write(line.encode())
            f.flush()
            print(f.readline().decode().strip(), flush=True)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif cmd == "count":
        print(json.dumps(count(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))))
    elif cmd == "ask":
        print(ask(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    else:
        hold(sys.argv[2], int(sys.argv[3]))
