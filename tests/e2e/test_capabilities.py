"""Kernel capability detection (issue 12) against this kernel: what the agent reports is
what `ip link add` itself can make."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

if os.geteuid() != 0 or shutil.which("ip") is None:
    pytest.skip("capability probes need root and iproute2", allow_module_level=True)

from workers.agent.drivers.capabilities import CAPABILITIES, detect

KINDS = {
    "vxlan": ["type", "vxlan", "id", "42", "dstport", "4789"],
    "macvlan": ["link", "p0", "type", "macvlan", "mode", "bridge"],
    "8021q": ["link", "p0", "type", "vlan", "id", "42"],
}


@pytest.fixture
def scratch() -> Iterator[str]:
    name = f"vpcd-cap-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def ip_can_make(netns: str) -> set[str]:
    subprocess.run(
        ["ip", "-n", netns, "link", "add", "p0", "type", "veth", "peer", "name", "p1"], check=True
    )
    made = set()
    for i, (cap, args) in enumerate(KINDS.items()):
        r = subprocess.run(["ip", "-n", netns, "link", "add", f"c{i}", *args], capture_output=True)
        if r.returncode == 0:
            made.add(cap)
    return made


def test_detect_agrees_with_iproute2(scratch: str) -> None:
    """The probe's namespace is anonymous (unshare in its own thread), never under
    /run/netns, so it cannot leak a named namespace; links are made only inside it."""
    found = detect()
    assert list(found) == [c for c in CAPABILITIES if c in found]  # stable order
    assert {c for c in found if c in KINDS} == ip_can_make(scratch)
    assert ("br_netfilter" in found) == os.path.exists("/proc/sys/net/bridge")
    assert detect() == found  # repeatable: nothing the first probe made is in the way
