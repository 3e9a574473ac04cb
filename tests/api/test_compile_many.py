"""Hosts compiled together (issue 13): each gets exactly the document it would get
compiled alone, over random sequences of changes; the statements a batch issues do not
grow with its hosts; a host poked again after a push covered it is not compiled again.
"""

from __future__ import annotations

import random
from contextlib import AbstractContextManager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from models import desired as q
from models import hoststate as hs
from tests.api import helpers as h
from tests.conftest import Tenant
from workers.bus import APPLY
from workers.controller import metrics, tasks
from workers.controller.compile import compile_hosts
from workers.protocol import SECTIONS, SECTIONS_L2

NETWORK = ["n1", "n2"]  # network hosts: routers, DHCP/DNS and load balancers land here
COMPUTE = ["c1", "c2", "c3", "c4", "old"]  # "old" speaks the L2 sections only


def _register() -> list[str]:
    for i, name in enumerate(NETWORK):
        tasks.heartbeat(name, f"198.18.1.{i + 1}", ["compute", "network"], sections=list(SECTIONS))
    for i, name in enumerate(COMPUTE):
        sections = list(SECTIONS_L2 if name == "old" else SECTIONS)
        tasks.heartbeat(name, f"198.18.2.{i + 1}", ["compute"], sections=sections)
    return NETWORK + COMPUTE


def _documents(client: TestClient, hosts: list[str]) -> set[str]:
    """Every host's document compiled in one batch equals the one compiled alone;
    returns the sections some document filled."""
    with h.rolled_back_session(client) as session:
        together = compile_hosts(session, hosts)
    for host in hosts:
        with h.rolled_back_session(client) as session:
            alone = compile_hosts(session, [host])[host]
        got = together[host]
        assert got.wire() == alone.wire(), host
        assert (got.sections, got.unsent) == (alone.sections, alone.unsent), host
    return {k for c in together.values() for k, v in c.wire().items() if v and isinstance(v, list)}


class _World:
    """Random changes through the API, as tenants make them."""

    def __init__(self, client: TestClient, tenant: Tenant, rng: random.Random) -> None:
        self.c, self.t, self.rng = client, tenant, rng
        self.vpc = h.vpc(client, tenant)
        self.subnets: list[dict[str, Any]] = []
        self.ports: list[dict[str, Any]] = []
        self.groups: list[dict[str, Any]] = []
        self.routers: list[dict[str, Any]] = []
        self.log: list[str] = []

    def step(self) -> str:
        first = ["subnet", "subnet", "group", "port", "group", "router", "acl"]  # then anything
        actions = ["subnet", "port", "port", "port", "delete_port", "group", "router", "acl"]
        done = len(self.log)
        action = first[done] if done < len(first) else self.rng.choice(actions)
        getattr(self, action)()
        self.log.append(action)
        return action

    def subnet(self) -> None:
        n = len(self.subnets) + 1
        self.subnets.append(h.subnet(self.c, self.t, self.vpc["id"], cidr=f"10.0.{n}.0/24"))

    def port(self) -> None:
        groups = self.rng.sample(self.groups, k=min(len(self.groups), self.rng.randint(0, 2)))
        body: dict[str, Any] = {"host": self.rng.choice(COMPUTE + NETWORK)}
        body["netns"] = f"ns{len(self.ports)}"
        if groups:
            body["security_group_ids"] = [g["id"] for g in groups]
        if self.rng.random() < 0.5:
            body["dns_name"] = f"vm{len(self.ports)}"
        subnet = self.rng.choice(self.subnets)
        self.ports.append(h.port(self.c, self.t, subnet["id"], **body))

    def delete_port(self) -> None:
        if self.ports:
            port = self.ports.pop(self.rng.randrange(len(self.ports)))
            r = self.c.delete(f"/v1/ports/{port['id']}", headers=self.t.headers)
            assert r.status_code == 204, r.text

    def group(self) -> None:
        g = h.group(self.c, self.t, self.vpc["id"], name=f"g{len(self.groups)}")
        remote = self.rng.choice([None, *self.groups, g])
        if remote is None:
            h.rule(self.c, self.t, g["id"], remote_cidr="10.9.0.0/16")
        else:
            h.rule(self.c, self.t, g["id"], remote_group_id=remote["id"])
        self.groups.append(g)

    def router(self) -> None:
        if not self.routers:
            self.routers.append(h.router(self.c, self.t, self.vpc["id"]))
        attached = {i for r in self.routers for i in r.get("attached", [])}
        free = [s for s in self.subnets if s["id"] not in attached]
        if free:
            subnet = self.rng.choice(free)
            h.attach(self.c, self.t, self.routers[0]["id"], subnet["id"])
            self.routers[0].setdefault("attached", []).append(subnet["id"])

    def acl(self) -> None:
        acl = h.create(self.c, "/v1/network-acls", self.t, vpc_id=self.vpc["id"])
        h.create(
            self.c, "/v1/network-acl-entries", self.t, network_acl_id=acl["id"], rule_number=100,
            direction="ingress", action="allow", protocol="any", cidr="0.0.0.0/0",
        )  # fmt: skip
        subnet = self.rng.choice(self.subnets)
        r = self.c.patch(
            f"/v1/subnets/{subnet['id']}", json={"network_acl_id": acl["id"]},
            headers=self.t.headers,
        )  # fmt: skip
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_hosts_compiled_together_get_the_document_each_gets_alone(
    client: TestClient, tenant: Tenant, sent: list[Any], seed: int
) -> None:
    hosts = _register()
    world = _World(client, tenant, random.Random(seed))
    filled: set[str] = set()
    for _ in range(20):
        world.step()
        filled |= _documents(client, hosts)
    assert set(world.log) >= {"port", "group", "router", "subnet", "acl"}
    assert filled >= {"subnets", "ports", "security_groups", "routers", "dhcp_dns", "network_acls"}


def test_statements_per_batch_do_not_grow_with_its_hosts(
    client: TestClient, tenant: Tenant, sent: list[Any]
) -> None:
    """The hosts share a subnet (every host's document holds every other host's ports):
    compiled one by one, the statements and the rows grew with the hosts, and the rows
    with their square."""
    names = [f"s{i}" for i in range(12)]
    for i, name in enumerate(names):
        tasks.heartbeat(name, f"198.18.3.{i + 1}", ["compute"], sections=list(SECTIONS))
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    g = h.group(client, tenant, v["id"])
    h.rule(client, tenant, g["id"], remote_group_id=g["id"])
    for i, name in enumerate(names):
        h.port(client, tenant, s["id"], host=name, netns=f"a{i}", security_group_ids=[g["id"]])
        h.port(client, tenant, s["id"], host=name, netns=f"b{i}")

    def statements(hosts: list[str]) -> int:
        with h.rolled_back_session(client) as session, _counted(session) as count:
            compiled = compile_hosts(session, hosts)
        assert set(compiled) == set(hosts)
        return len(count)

    assert statements(names[:3]) == statements(names) == statements(names[:1])

    def marking(hosts: list[str]) -> int:  # a change touching them all: as many statements
        with h.rolled_back_session(client) as session, _counted(session) as count:
            assert hs.mark_dirty(session, set(hosts)) == set(hosts)
        return len(count)

    with h.rolled_back_session(client) as session:
        hs.clear_dirty(session, names)
        session.commit()
    assert marking(names[:2]) == marking(names)


def test_a_hosts_compile_reads_only_the_port_rows_and_columns_its_document_needs(
    client: TestClient, tenant: Tenant, sent: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14: a one-port change on a 1000-port host recompiled the whole document, and
    a third of reading its ports was decoding columns no document carries (tags as
    JSONB), and its own ports were read a second time as candidate remote ports. No
    statement of a compile reads those columns, the statements do not grow with the
    host's ports (a column left out is never loaded port by port), and a host compiled
    alone reads none of its own ports as remote ones."""
    remote: list[int] = []
    original = q.remote_ports_all

    def counted(*args: Any, **kwargs: Any) -> Any:
        rows = original(*args, **kwargs)
        remote.append(len(rows))
        return rows

    monkeypatch.setattr(q, "remote_ports_all", counted)
    tasks.heartbeat("c1", "198.18.4.1", ["compute"], sections=list(SECTIONS))
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    g = h.group(client, tenant, v["id"])

    def compiled(ports: int) -> tuple[int, list[str]]:
        for i in range(ports):
            h.port(
                client, tenant, s["id"], host="c1", netns=f"t{ports}-{i}", tags=["a", "b"],
                name=f"p{i}", description="x" * 200, security_group_ids=[g["id"]],
            )  # fmt: skip
        with h.rolled_back_session(client) as session, _counted(session) as seen:
            doc = compile_hosts(session, ["c1"])["c1"]
        assert doc.wire()["ports"]
        return len(seen), seen

    few, _ = compiled(2)
    many, statements = compiled(20)
    assert few == many
    assert remote and not any(remote)  # none of its own 22 ports read as remote
    port_reads = [x for x in statements if x.startswith("SELECT ports.")]  # ports' own rows
    assert port_reads
    for column in ("ports.tags", "ports.description", "ports.name", "ports.created_at"):
        assert not [x for x in port_reads if column in x], column


def _counted(session: Session) -> AbstractContextManager[list[str]]:
    """The statements `session` issues meanwhile (their text; len() counts them)."""
    return h.recorded_statements(session.get_bind())


def test_a_host_dirtied_twice_is_compiled_once(
    client: TestClient, tenant: Tenant, sent: list[tuple[str, list[Any]]]
) -> None:
    """Two changes before the push, the sweep pushing it, then both pokes arriving late:
    one compile, one document; the pokes find nothing waiting."""
    tasks.heartbeat("d1", "198.18.4.1", ["compute"], first=True, sections=list(SECTIONS))
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    h.port(client, tenant, s["id"], host="d1", netns="a")
    h.port(client, tenant, s["id"], host="d1", netns="b")
    sent.clear()
    compiled = metrics.COMPILED._value.get()
    tasks.sweep()
    tasks.sync_host("d1")
    tasks.sync_host("d1")
    assert metrics.COMPILED._value.get() == compiled + 1
    docs = [a[0] for name, a in sent if name == APPLY]
    assert [d["host"] for d in docs] == ["d1"] and len(docs[0]["ports"]) == 2


def test_a_batcher_compiles_a_host_poked_many_times_once() -> None:
    from workers.controller.batch import Batcher, Want

    batches: list[dict[str, Want]] = []
    batcher = Batcher(batches.append, gather=0)
    for _ in range(3):
        batcher.add("a", Want())
    batcher.add("b", Want(full=True))
    batcher.add("a", Want(resend=True))
    assert batcher.run_once(timeout=1) == 2
    assert batches == [{"a": Want(resend=True), "b": Want(full=True)}]
    assert batcher.run_once(timeout=0.01) == 0


def test_a_batch_that_fails_leaves_its_hosts_to_the_sweeper() -> None:
    from workers.controller.batch import Batcher, Want

    remarked: list[set[str]] = []

    def fail(_: object) -> None:
        raise RuntimeError("database gone")

    batcher = Batcher(fail, remarked.append, gather=0)
    batcher.add("a", Want())
    batcher.add("b", Want())
    assert batcher.run_once(timeout=1) == 2
    assert remarked == [{"a", "b"}]
