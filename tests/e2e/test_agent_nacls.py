"""Network ACLs against the real kernel: stateless, ordered, first match wins, enforced
on each host carrying the subnet (here between ports of one subnet on two hosts, and
on one host). Uses the security-group tests' world (tests/e2e/test_agent_secgroups.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.agent_fabric import build_fabric, sh
from tests.e2e.test_agent_secgroups import World
from workers.protocol import NetworkAclEntryState, NetworkAclState

pytestmark = pytest.mark.e2e


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with build_fabric(tmp_path) as fab:
        yield World(fab)


def entry(number: int, direction: str, action: str, **kw: object) -> NetworkAclEntryState:
    kw.setdefault("protocol", "any")
    kw.setdefault("cidr", "0.0.0.0/0")
    return NetworkAclEntryState(
        rule_number=number,
        direction=direction,  # type: ignore[arg-type]
        action=action,  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def acl(world: World, revision: int, *entries: NetworkAclEntryState) -> NetworkAclState:
    return NetworkAclState(
        id="acl-1", revision=revision, subnet_ids=[world.sid], entries=list(entries)
    )


def test_deny_beats_a_later_allow_and_returns_need_their_own_entry(world: World) -> None:
    a, c = world.ports["a"].ip, world.ports["c"].ip
    world.acl = acl(
        world, 1,
        entry(100, "ingress", "deny", protocol="icmp", cidr=f"{c}/32"),
        entry(200, "ingress", "allow"),
        entry(100, "egress", "allow"),
    )  # fmt: skip
    world.sync()
    assert world.ping("a", "b")  # across hosts: allowed both ways
    assert not world.ping("c", "b")  # deny 100 wins over allow 200 (same host)
    assert not world.ping("c", "a")  # and across hosts
    # Reorder: the allow before the deny lets c in.
    world.acl = acl(
        world, 2,
        entry(300, "ingress", "deny", protocol="icmp", cidr=f"{c}/32"),
        entry(200, "ingress", "allow"),
        entry(100, "egress", "allow"),
    )  # fmt: skip
    world.sync()
    assert world.ping("c", "b") and world.ping("c", "a")
    # Stateless: ingress from a only, no ingress entry for the replies a's peers send back.
    world.acl = acl(
        world, 3,
        entry(100, "ingress", "allow", protocol="icmp", cidr=f"{a}/32"),
        entry(100, "egress", "allow"),
    )  # fmt: skip
    world.sync()
    assert not world.ping("a", "b")  # b gets the request but a never gets the reply
    world.acl = acl(
        world, 4,
        entry(100, "ingress", "allow", protocol="icmp", cidr=f"{a}/32"),
        entry(110, "ingress", "allow", protocol="icmp", cidr=world.ports["b"].ip + "/32"),
        entry(100, "egress", "allow"),
    )  # fmt: skip
    world.sync()
    assert world.ping("a", "b")  # with an entry for the return traffic it works
    assert not world.ping("c", "b")


def test_egress_entries_and_removal(world: World) -> None:
    world.acl = acl(
        world, 1,
        entry(100, "ingress", "allow"),
        entry(100, "egress", "deny", protocol="icmp", cidr=world.ports["b"].ip + "/32"),
        entry(200, "egress", "allow"),
    )  # fmt: skip
    world.sync()
    assert not world.ping("a", "b") and world.ping("a", "c")
    world.acl = None  # no ACL: everything allowed again, and no chain left
    world.sync()
    assert world.ping("a", "b")
    for host in ("h1", "h2"):
        saved = sh("ip", "netns", "exec", world.fab.ns(host), "iptables-save").stdout
        assert "vpcd-n" not in saved and "vpcd-acl" not in saved
