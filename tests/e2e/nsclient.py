"""Ask an identity server (echo.py identity) from inside a sandbox namespace, in-process.

A throwaway thread setns()es into the namespace and connects from there, so a probe
costs a TCP round trip, not a Python start under `ip netns exec` (≈100 ms): what the
floating-IP move and the association benchmark time is then the data plane, not the
prober. The thread dies after the probe, so no thread of the caller stays inside.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def ask_in(netns: str, address: str, port: int, timeout: float = 0.5) -> str | None:
    """The server's answer ("NAME CALLER"), or None if nothing answered in `timeout`."""
    box: dict[str, str | None] = {"answer": None}

    def run() -> None:
        fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
        try:
            if _libc.setns(fd, _CLONE_NEWNET) != 0:
                return
        finally:
            os.close(fd)
        try:
            with socket.create_connection((address, port), timeout=timeout) as s:
                s.sendall(b"who")
                box["answer"] = s.recv(64).decode() or None
        except OSError:
            return

    thread = threading.Thread(target=run, name="vpcd-nsclient")
    thread.start()
    thread.join()
    return box["answer"]
