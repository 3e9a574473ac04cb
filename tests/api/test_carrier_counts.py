"""carrier_hosts: the trigger-kept count of workload ports per (subnet or group, host).

The carrier lookup each port create makes reads these counts instead of every port of the
subnet and of its group (issue 14: creates slowed as a subnet filled). They must equal a
recount whatever writes the ports (ORM, bulk SQL, foreign-key cascades), in any order, and
under concurrency; and the lookup must read no port per port.
"""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api.services.port_allocation import set_groups
from models import Port, PortSecurityGroup
from models.carriers import carriers, membership_hosts
from tests.api import helpers as h
from tests.conftest import Tenant

HOSTS = ("host-a", "host-b", "host-c", None)


def counts(session: Session) -> dict[tuple[str, str, str], int]:
    rows = session.execute(sa.text("SELECT kind, resource_id, host, ports FROM carrier_hosts"))
    return {(k, r, hh): n for k, r, hh, n in rows}


def recount(session: Session) -> dict[tuple[str, str, str], int]:
    """The counts from scratch: every workload port, one by one."""
    out: dict[tuple[str, str, str], int] = {}
    memberships = session.execute(
        sa.select(PortSecurityGroup.port_id, PortSecurityGroup.security_group_id)
    ).all()
    rows = session.execute(sa.select(Port.id, Port.subnet_id, Port.host, Port.netns)).all()
    for port_id, subnet_id, host, netns in rows:
        if host is None or netns is None:
            continue
        keys = [("subnet", subnet_id, host)]
        keys += [("security_group", g, host) for p, g in memberships if p == port_id]
        for key in keys:
            out[key] = out.get(key, 0) + 1
    return out


def _world(client: TestClient, t: Tenant) -> tuple[str, list[str], list[str]]:
    vpc = h.vpc(client, t, cidr="10.0.0.0/16")
    subnets = [h.subnet(client, t, vpc["id"], cidr=f"10.0.{i}.0/24")["id"] for i in (1, 2)]
    groups = [h.group(client, t, vpc["id"], name=f"g{i}")["id"] for i in range(3)]
    return t.id, subnets, groups


class Ports:
    """Random port writes the way the code makes them (ORM) and the way bulk SQL does."""

    def __init__(self, tenant: str, subnets: list[str], groups: list[str], seed: int) -> None:
        self.tenant, self.subnets, self.groups = tenant, subnets, groups
        self.rng = random.Random(seed)
        self.made = seed * 40  # addresses: distinct per generator (seeds 40 apart)

    def placement(self) -> dict[str, Any]:
        host = self.rng.choice(HOSTS)
        netns = self.rng.choice(("ns1", "ns2", None)) if host else None
        return {"host": host, "netns": netns}

    def create(self, session: Session) -> None:
        n = self.made = self.made + 1
        i = self.rng.randrange(len(self.subnets))
        port = Port(
            tenant_id=self.tenant,
            subnet_id=self.subnets[i],
            ip_address=f"10.0.{i + 1}.{n % 250 + 2}",
            mac_address=f"fa:16:3e:00:{n >> 8 & 255:02x}:{n & 255:02x}",
            **self.placement(),
        )
        set_groups(port, self.rng.sample(self.groups, self.rng.randint(0, len(self.groups))))
        session.add(port)

    def step(self, session: Session, ports: list[Port]) -> None:
        """One random change of one random port (or a new one)."""
        if not ports or self.rng.random() < 0.35:
            self.create(session)
            return
        port = self.rng.choice(ports)
        action = self.rng.randrange(6)
        if action == 0:  # a move (host, netns or both), ORM
            for key, value in self.placement().items():
                setattr(port, key, value)
        elif action == 1:  # groups replaced (delete-orphan, maybe rows switched)
            set_groups(port, self.rng.sample(self.groups, self.rng.randint(0, len(self.groups))))
        elif action == 2:  # deleted by the ORM: its group rows go first
            session.delete(port)
        elif action == 3:  # deleted by SQL: the foreign key cascades its group rows
            session.execute(sa.delete(Port).where(Port.id == port.id))
            session.expunge(port)
        elif action == 4:  # moved by bulk SQL (as router placement moves legs)
            session.execute(sa.update(Port).where(Port.id == port.id).values(**self.placement()))
            session.expire(port)
        else:  # one membership row deleted by SQL
            session.execute(
                sa.delete(PortSecurityGroup).where(
                    PortSecurityGroup.port_id == port.id,
                    PortSecurityGroup.security_group_id == self.rng.choice(self.groups),
                )
            )
            session.expire(port)


def test_counts_equal_a_recount_after_random_creates_moves_and_deletes(
    app: FastAPI, client: TestClient, tenant: Tenant
) -> None:
    tenant_id, subnets, groups = _world(client, tenant)
    gen = Ports(tenant_id, subnets, groups, seed=0)
    seen_rows = 0
    for _ in range(40):
        with app.state.sessionmaker() as session:
            for _ in range(gen.rng.randint(1, 6)):
                ports = list(session.scalars(sa.select(Port)))
                try:
                    with session.begin_nested():
                        gen.step(session, ports)
                        session.flush()
                except sa.exc.IntegrityError:
                    session.expire_all()  # an address drawn twice: the step did nothing
            session.commit()
            now = counts(session)
            assert now == recount(session)
            assert all(n > 0 for n in now.values())
            seen_rows = max(seen_rows, len(now))
    assert seen_rows >= 6, "the sequence should have spread ports over hosts and groups"


def test_the_lookup_answers_from_the_counts(
    app: FastAPI, client: TestClient, tenant: Tenant
) -> None:
    """carriers() for subnets and groups gives the hosts of their workload ports."""
    tenant_id, subnets, groups = _world(client, tenant)
    with app.state.sessionmaker() as session:
        for i, host in enumerate(("host-a", "host-a", "host-b", None)):
            port = Port(
                tenant_id=tenant_id,
                subnet_id=subnets[0],
                ip_address=f"10.0.1.{10 + i}",
                mac_address=f"fa:16:3e:00:00:{i:02x}",
                host=host,
                netns="ns" if host else None,
            )
            set_groups(port, groups[:1] if i < 2 else groups[1:2])
            session.add(port)
        session.commit()
        assert carriers(session, "subnet", {subnets[0]}) == {
            subnets[0]: {"host-a": "subnets", "host-b": "subnets"}
        }
        assert carriers(session, "subnet", {subnets[1]}) == {}
        assert carriers(session, "security_group", set(groups)) == {
            groups[0]: {"host-a": "security_groups"},
            groups[1]: {"host-b": "security_groups"},
        }


def _ports_read(session: Session) -> int:
    """Rows of `ports` this transaction has read so far (Postgres statistics)."""
    return int(
        session.scalar(
            sa.text(
                "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) "
                "FROM pg_stat_xact_user_tables WHERE relname = 'ports'"
            )
        )
        or 0
    )


def test_the_lookup_reads_no_port_per_port(
    app: FastAPI, client: TestClient, tenant: Tenant
) -> None:
    """300 workload ports on 3 hosts: asking which hosts carry their subnet and group
    reads a handful of port rows (the subnet's service and leg ports), not 300."""
    if app.state.engine.dialect.name != "postgresql":
        pytest.skip("rows read are counted by Postgres's statistics")
    tenant_id = tenant.id
    vpc = h.vpc(client, tenant, cidr="10.8.0.0/16")
    big = h.subnet(client, tenant, vpc["id"], cidr="10.8.0.0/22")["id"]
    group = h.group(client, tenant, vpc["id"], name="big")["id"]
    with app.state.sessionmaker() as session:
        for i in range(300):
            port = Port(
                tenant_id=tenant_id,
                subnet_id=big,
                ip_address=f"10.8.{1 + i // 250}.{2 + i % 250}",
                mac_address=f"fa:16:3e:01:{i >> 8:02x}:{i & 255:02x}",
                host=HOSTS[i % 3],
                netns="ns",
            )
            set_groups(port, [group])
            session.add(port)
        session.commit()
    with app.state.sessionmaker() as session:
        session.execute(sa.text("ANALYZE ports"))
        session.commit()
        before = _ports_read(session)
        subnet_hosts = carriers(session, "subnet", {big})
        group_hosts = carriers(session, "security_group", {group})
        read = _ports_read(session) - before
    assert set(subnet_hosts[big]) == set(group_hosts[group]) == set(HOSTS[:3])
    assert read < 10, f"the lookup read {read} port rows for 300 ports"


def test_concurrent_changes_keep_the_counts_exact(
    app: FastAPI, client: TestClient, tenant: Tenant
) -> None:
    """Creates, moves (in opposite directions too), group changes and deletes from 6
    threads at once, each in transactions of its own: the counts equal a recount."""
    if app.state.engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one writer at a time")
    tenant_id, subnets, groups = _world(client, tenant)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        gen = Ports(tenant_id, subnets, groups, seed)
        try:
            for _ in range(25):
                with app.state.sessionmaker() as session:
                    ports = list(session.scalars(sa.select(Port)))
                    try:
                        gen.step(session, ports)
                        session.commit()
                    except (sa.exc.IntegrityError, sa.orm.exc.StaleDataError):
                        session.rollback()  # a collision or a port deleted meanwhile
                    except sa.exc.OperationalError as exc:
                        if getattr(exc.orig, "sqlstate", None) != "40P01":
                            raise
                        session.rollback()  # a deadlock is retried by the API; not here
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    with app.state.sessionmaker() as session:
        assert counts(session) == recount(session)
        assert len(recount(session)) > 0


def test_the_migration_backfills_the_counts(
    app: FastAPI, client: TestClient, tenant: Tenant, db_url: str
) -> None:
    """Counts of ports made before the table existed come from the upgrade itself."""
    from migrations.runner import downgrade, upgrade

    tenant_id, subnets, groups = _world(client, tenant)
    gen = Ports(tenant_id, subnets, groups, seed=0)
    with app.state.sessionmaker() as session:
        for _ in range(12):
            gen.create(session)
        session.commit()
        made = recount(session)
    assert made
    app.state.engine.dispose()
    downgrade(db_url, "0020")
    upgrade(db_url)
    with app.state.sessionmaker() as session:
        assert counts(session) == made == recount(session)


def test_a_membership_change_touches_enforcing_and_remote_group_hosts_in_one_query(
    app: FastAPI, client: TestClient, tenant: Tenant
) -> None:
    """Group A's ports are on host-a; group B (ports on host-b) has a rule naming A as its
    remote group, so host-b holds A's members too; host-c has only group C."""
    tenant_id, subnets, (a, b, c) = _world(client, tenant)
    h.rule(client, tenant, b, remote_group_id=a)
    with app.state.sessionmaker() as session:
        for i, (host, group) in enumerate((("host-a", a), ("host-b", b), ("host-c", c))):
            port = Port(
                tenant_id=tenant_id,
                subnet_id=subnets[0],
                ip_address=f"10.0.1.{10 + i}",
                mac_address=f"fa:16:3e:00:01:{i:02x}",
                host=host,
                netns="ns",
            )
            set_groups(port, [group])
            session.add(port)
        session.commit()
        statements: list[str] = []

        def seen(*args: Any) -> None:
            statements.append(args[2])

        engine = session.get_bind()
        sa.event.listen(engine, "before_cursor_execute", seen)
        try:
            assert membership_hosts(session, {a}) == {"host-a", "host-b"}
        finally:
            sa.event.remove(engine, "before_cursor_execute", seen)
        assert len([s for s in statements if s.startswith("SELECT")]) == 1, statements
        assert membership_hosts(session, {c}) == {"host-c"}
        assert membership_hosts(session, set()) == set()
