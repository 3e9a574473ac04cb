"""Shared parts of a batch's documents (issue 13): a subnet's remote ports sorted once,
a security group built once, each item serialised once. Over random topologies every
host's document built from the shared parts is the one built from its own rows alone,
its wire body is `HostState.wire`, and its digest changes exactly when that body does."""

from __future__ import annotations

import random
from typing import Any

import pytest

from models import Port, SecurityGroup, SecurityGroupRule, Subnet
from workers.controller import wiring
from workers.controller.compile import Inputs, build
from workers.controller.remotes import SubnetRemotes
from workers.protocol import SECTIONS, SECTIONS_L2, HostState


def _subnet(sid: str, kind: str, n: int) -> Subnet:
    return Subnet(
        id=sid, revision=n + 1, vni=100 + n, cidr=f"10.{n}.0.0/24", gateway_ip=f"10.{n}.0.1",
        host_routes=[], allocation_pools=[], vpc_id="v", tenant_id="t", network_type=kind,
        network_acl_id=None,
    )  # fmt: skip


def _fleet(rng: random.Random) -> dict[str, Any]:
    hosts = [f"h{i}" for i in range(rng.randint(2, 7))]
    vteps = {h: f"198.18.0.{rng.randint(1, 4)}" for h in hosts}  # some share a VTEP
    vteps[hosts[0]] = ""  # a host with no VTEP: no flood entry, no routed route
    subnets = [
        _subnet(f"s{n}", rng.choice(["vxlan", "vxlan", "routed"]), n)
        for n in range(rng.randint(1, 4))
    ]
    ports = []
    for n in range(rng.randint(1, 40)):
        s = rng.choice(subnets)
        ports.append(
            Port(
                id=f"p{rng.randrange(10**6):06d}-{n}",
                revision=rng.randint(1, 3),
                subnet_id=s.id,
                ip_address=f"{s.cidr[:-4]}{n + 2}",
                mac_address=f"FA:16:3e:00:00:{rng.randint(0, 9):02x}",  # repeats: ties
                host=rng.choice(hosts),
                netns=f"ns{n}",
                interface_name="eth0",
                tenant_id="t",
                device_owner="",
            )
        )
    groups = [SecurityGroup(id=f"g{n}", revision=n + 1) for n in range(3)]
    rules = [
        SecurityGroupRule(
            id=f"r{n}",
            security_group_id=f"g{n % 3}",
            direction="ingress",
            protocol="tcp",
            port_min=None,
            port_max=None,
            remote_cidr=None,
            remote_group_id=f"g{rng.randrange(3)}" if rng.random() < 0.5 else None,
        )
        for n in range(5)
    ]
    port_groups = {p.id: sorted(rng.sample(["g0", "g1", "g2"], rng.randint(0, 2))) for p in ports}
    members = {
        g.id: sorted(p.ip_address for p in ports if g.id in port_groups[p.id]) for g in groups
    }
    return {
        "hosts": hosts, "vteps": vteps, "subnets": subnets, "ports": ports, "groups": groups,
        "rules": rules, "port_groups": port_groups, "members": members,
    }  # fmt: skip


def _inputs(f: dict[str, Any], host: str, shared: dict[str, Any] | None) -> Inputs:
    """A host's inputs from its own rows alone (`shared` None) or from the batch's."""
    mine = [p for p in f["ports"] if p.host == host]
    kinds = {s.id: s.network_type for s in f["subnets"]}
    carried = {p.subnet_id for p in mine}
    remote = sorted(
        ((p, f["vteps"][p.host]) for p in f["ports"] if p.host != host and p.subnet_id in carried),
        key=lambda r: r[0].id,
    )
    used = {g for p in mine for g in f["port_groups"][p.id]}
    named = {r.remote_group_id for r in f["rules"] if r.security_group_id in used}
    batch: dict[str, Any] = {}
    if shared is not None:
        every = sorted(((p, f["vteps"][p.host], p.host) for p in f["ports"]), key=lambda r: r[0].id)
        if "remotes" not in shared:
            shared["remotes"] = SubnetRemotes.group(every)
            shared["memo"] = {}
        batch = {
            "remote": (),
            "remotes": {s: r for s, r in shared["remotes"].items() if s in carried},
            "shared": shared["memo"],
        }
    return Inputs(
        host=host,
        vtep_ip=f["vteps"][host],
        ports=[p for p in mine if kinds[p.subnet_id] == "vxlan"],
        subnets=[s for s in f["subnets"] if s.id in carried and s.network_type == "vxlan"],
        typed_subnets=[s for s in f["subnets"] if s.id in carried and s.network_type != "vxlan"],
        typed_ports=[p for p in mine if kinds[p.subnet_id] != "vxlan"],
        port_groups={p.id: f["port_groups"][p.id] for p in mine},
        groups=[g for g in f["groups"] if g.id in used | named],
        rules=[r for r in f["rules"] if r.security_group_id in used],
        members={g: f["members"][g] for g in named if g},
        **{"remote": remote, **batch},
    )


def _body(state: HostState, sections: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in state.wire(sections).items() if k != "revision"}


@pytest.mark.parametrize("seed", range(40))
def test_documents_from_shared_parts_are_those_built_alone(seed: int) -> None:
    rng = random.Random(seed)
    f = _fleet(rng)
    shared: dict[str, Any] = {}
    dumps = wiring.Dumps()  # one for the batch, as compile_hosts has
    for host in f["hosts"]:
        alone = build(_inputs(f, host, None))
        together = build(_inputs(f, host, shared))
        for sections in (SECTIONS, SECTIONS_L2):
            assert wiring.wire(together, sections, dumps) == alone.wire(sections), host
            assert wiring.digest(together, sections, dumps) == wiring.digest(alone, sections)


@pytest.mark.parametrize("seed", range(40))
def test_a_digest_changes_exactly_when_the_body_does(seed: int) -> None:
    rng = random.Random(1000 + seed)
    f = _fleet(rng)
    states = [build(_inputs(f, h, None)) for h in f["hosts"]]
    g = _fleet(random.Random(1000 + seed))  # the same fleet, then one random change
    port = rng.choice(g["ports"])
    change = rng.choice(["move", "mac", "revision", "none"])
    if change == "move":
        port.host = rng.choice(g["hosts"])
    elif change == "mac":
        port.mac_address = "fa:16:3e:ff:ff:ff"
    elif change == "revision":
        port.revision += 1
    dumps = wiring.Dumps()
    for before, host in zip(states, f["hosts"], strict=True):
        after = build(_inputs(g, host, {}))
        for sections in (SECTIONS, SECTIONS_L2):
            same = _body(before, sections) == _body(after, sections)
            assert (
                wiring.digest(before, sections) == wiring.digest(after, sections, dumps)
            ) is same


def test_a_host_s_view_leaves_out_its_own_ports_and_its_lone_vtep() -> None:
    s = _subnet("s", "vxlan", 1)
    rows = [
        (Port(id="a", subnet_id="s", mac_address="fa:00:00:00:00:02", ip_address="10.1.0.2"),
         "198.18.0.1", "h1"),
        (Port(id="b", subnet_id="s", mac_address="fa:00:00:00:00:01", ip_address="10.1.0.3"),
         "198.18.0.2", "h2"),
        (Port(id="c", subnet_id="s", mac_address="fa:00:00:00:00:03", ip_address="10.1.0.4"),
         "198.18.0.2", "h3"),  # h3 shares h2's VTEP
    ]  # fmt: skip
    remotes = SubnetRemotes.group(rows)[s.id]
    assert [r.mac[-2:] for r in remotes.l2_ports("h1")] == ["01", "03"]
    assert remotes.vteps("h1") == ["198.18.0.2"]
    assert remotes.vteps("h2") == ["198.18.0.1", "198.18.0.2"]  # h3 is still there
    assert remotes.l2_ports("h9") is remotes.l2_ports("h8")  # no own entry: the shared list
