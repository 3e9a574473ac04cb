"""A fleet of simulated hosts around real controllers, on real Postgres and Redis (issue 13).

Shared by bench/fanout.py (1000 hosts) and tests/api/test_fanout.py (50 hosts): seeds a
topology (tenants, VPCs and subnets through the API; the bulk of the ports and the
hosts as rows, which would take minutes through the API), starts controller processes
(`vpcd controller`, optionally with ring ids) and processes of simulated agents
(`workers.agent.simulated`), all on one bus namespace of their own, and reads what the
agents counted: documents received per host and when each host last reported.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
SYNC_HOST = "vpcd.controller.sync_host"


@dataclass
class Topology:
    hosts: list[str]
    wide_subnet: str  # tenant 0's subnet, one port on each of the first `span` hosts
    subnets: list[str]  # per tenant (index 0 is the wide one)
    tokens: list[dict[str, str]]  # per tenant: its auth header
    vpcs: list[str] = field(default_factory=list)


def host_name(i: int) -> str:
    return f"sim{i:04d}"


def seed(
    client: Any, admin: dict[str, str], db_url: str, *, hosts: int, ports_per_host: int,
    tenants: int, span: int,
) -> Topology:  # fmt: skip
    """Tenants, a VPC and a /20 subnet each through the API; hosts and ports as rows.

    Tenant 0's subnet has one port on each of the first `span` hosts. The other tenants'
    ports fill the hosts two at a time, each tenant on a run of consecutive hosts, so a
    subnet spans about `ports per tenant / 2` hosts and a host carries several subnets.
    """
    from models import Host
    from models.base import utcnow
    from models.db import engine_for, session_factory
    from models.network import Port, PortSecurityGroup, Vpc
    from workers.agent.service import SUPPORTED_SECTIONS
    from workers.agent.simulated import vtep_of

    names = [host_name(i) for i in range(hosts)]
    topo = Topology(hosts=names, wide_subnet="", subnets=[], tokens=[])
    for t in range(tenants):
        r = client.post("/v1/tenants", json={"name": f"fan-{t}"}, headers=admin)
        r.raise_for_status()
        tid = r.json()["id"]
        client.patch(f"/v1/tenants/{tid}/quotas", json={"ports": 100000}, headers=admin)
        token = client.post(f"/v1/tenants/{tid}/tokens", headers=admin).json()["token"]
        who = {"Authorization": f"Bearer {token}"}
        cidr = f"10.{t // 16}.{(t % 16) * 16}.0/20"
        vpc = client.post("/v1/vpcs", json={"cidr": cidr}, headers=who)
        vpc.raise_for_status()
        subnet = client.post(
            "/v1/subnets",
            json={"vpc_id": vpc.json()["id"], "cidr": cidr, "enable_dhcp": False},
            headers=who,
        )
        subnet.raise_for_status()
        topo.tokens.append(who)
        topo.vpcs.append(vpc.json()["id"])
        topo.subnets.append(subnet.json()["id"])
    topo.wide_subnet = topo.subnets[0]
    placement: list[tuple[int, str]] = [(0, names[i]) for i in range(min(span, hosts))]
    rest = hosts * ports_per_host - len(placement)
    per_tenant = rest // max(tenants - 1, 1)
    for t in range(1, tenants):
        for k in range(per_tenant):
            g = (t - 1) * per_tenant + k
            placement.append((t, names[(g // 2) % hosts]))
    with session_factory(engine_for(db_url)).begin() as session:
        now = utcnow()
        session.add_all(
            Host(
                name=n,
                vtep_ip=vtep_of(n),
                roles=["compute"],
                protocol_version=2,
                sections=list(SUPPORTED_SECTIONS),
                last_heartbeat=now,
            )
            for n in names
        )
        vpcs = {v.id: v for v in session.scalars(sa.select(Vpc))}
        tenant_ids = {v.id: v.tenant_id for v in vpcs.values()}
        counts = [0] * tenants
        ports = []
        for t, host in placement:
            counts[t] += 1
            n = counts[t] + 9
            vpc = vpcs[topo.vpcs[t]]
            base = f"10.{t // 16}.{(t % 16) * 16 + n // 256}.{n % 256}"
            ports.append(
                Port(
                    tenant_id=tenant_ids[vpc.id],
                    subnet_id=topo.subnets[t],
                    host=host,
                    netns=f"w{t}-{n}",
                    ip_address=base,
                    mac_address=f"fa:16:3e:{t // 256:02x}:{t % 256:02x}:{n % 256:02x}"
                    if n < 256
                    else f"fa:16:3f:{t % 256:02x}:{n // 256:02x}:{n % 256:02x}",
                    security_groups=[
                        PortSecurityGroup(security_group_id=vpc.default_security_group_id)
                    ],
                )
            )
        session.add_all(ports)
    return topo


@dataclass
class Fleet:
    """Controllers and simulated agents on their own bus namespace; stop() ends them."""

    db_url: str
    redis_url: str
    namespace: str = field(default_factory=lambda: f"fan{uuid.uuid4().hex[:8]}")
    sweep_interval: float = 2.0
    repush_after: float | None = None  # VPCD_REPUSH_AFTER for the controllers (default 5 s)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    controllers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    agent_queues: dict[str, str] = field(default_factory=dict)  # host -> its process's queue
    agent_procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log_dir: Path | None = None

    def __post_init__(self) -> None:
        self.redis = redis.Redis.from_url(self.redis_url)
        from celery import Celery

        self.app = Celery("fanout", broker=self.redis_url)
        self.app.conf.update(task_serializer="json", broker_connection_retry_on_startup=True)

    @property
    def control_queue(self) -> str:
        return f"{self.namespace}.control"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.db_url,
            "REDIS_URL": self.redis_url,
            "VPCD_BUS_NAMESPACE": self.namespace,
            "VPCD_SWEEP_INTERVAL": str(self.sweep_interval),
            "PYTHONPATH": str(ROOT),
            **({"VPCD_REPUSH_AFTER": str(self.repush_after)} if self.repush_after else {}),
        }

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        out = open(self.log_dir / log, "wb") if self.log_dir else subprocess.DEVNULL  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, *args], env=self.env(), cwd=ROOT, stdout=out, stderr=out
        )
        self.procs.append(proc)
        return proc

    def start_controller(
        self, controller_id: str | None = None, metrics_port: int | None = None,
        concurrency: int = 4,
    ) -> subprocess.Popen[bytes]:  # fmt: skip
        args = ["-m", "cli.vpcd", "controller", "--concurrency", str(concurrency)]
        if controller_id:
            args += ["--id", controller_id]
        if metrics_port:
            args += ["--metrics-port", str(metrics_port)]
        proc = self._spawn(args, f"controller-{controller_id or 'main'}.log")
        self.controllers[controller_id or "main"] = proc
        return proc

    def start_agents(self, hosts: list[str], processes: int, heartbeat: float = 10.0) -> None:
        for i in range(processes):
            mine = hosts[i::processes]
            if not mine:
                continue
            queue = f"{self.namespace}.sim.{i}"
            self.agent_queues.update(dict.fromkeys(mine, queue))
            proc = self._spawn(
                [
                    "-m", "workers.agent.simulated", "--hosts", ",".join(mine),
                    "--control", queue, "--redis-url", self.redis_url,
                    "--heartbeat", str(heartbeat),
                ],
                f"agents-{i}.log",
            )  # fmt: skip
            self.agent_procs.append(proc)

    # -- what the agents counted -----------------------------------------------------------

    def applies(self) -> dict[str, int]:
        raw = self.redis.hgetall(f"{self.namespace}.sim.applies")
        return {k.decode(): int(v) for k, v in raw.items()}

    def quiet(self, still: float = 2.0, timeout: float = 120.0) -> None:
        """Wait until the controllers' queue is empty and no document has arrived
        anywhere for `still` seconds. Converged is not settled: a loaded machine delivers
        the last copies of a cold start (a peer's document sent again while its first was
        on its way; an agent's first heartbeat, still queued, bringing it its whole
        document again) seconds after every host converged, and a count taken then would
        charge them to the next change."""
        deadline = time.monotonic() + timeout
        last, since = self.applies(), time.monotonic()
        while time.monotonic() - since < still:
            if time.monotonic() > deadline:
                raise TimeoutError("documents kept arriving")
            time.sleep(0.2)
            now = self.applies()
            if now != last or self.backlog():
                last, since = now, time.monotonic()

    def reported(self) -> dict[str, float]:
        raw = self.redis.hgetall(f"{self.namespace}.sim.reported")
        return {k.decode(): float(v) for k, v in raw.items()}

    def senders(self) -> dict[str, set[int]]:
        """Per host, the pids of the processes that sent it documents."""
        raw = self.redis.hgetall(f"{self.namespace}.sim.origins")
        out: dict[str, set[int]] = {}
        for key in raw:
            host, origin = key.decode().split(" ", 1)
            out.setdefault(host, set()).add(int(origin.split("@")[0].removeprefix("gen")))
        return out

    def controller_ids(self) -> list[str]:
        """The controllers registered in the ring (live or not yet expired)."""
        key = f"{self.namespace}.controllers"
        return sorted(m.decode() for m in self.redis.zrange(key, 0, -1))

    def backlog(self) -> int:
        """Messages waiting on the controllers' queues."""
        return int(self.redis.llen(self.control_queue))

    # -- commands --------------------------------------------------------------------------

    def poke(self, hosts: Iterable[str]) -> None:
        """What the API does after a commit: sync_host per host, on the control queue."""
        for host in sorted(set(hosts)):
            self.app.send_task(SYNC_HOST, args=[host], kwargs={}, queue=self.control_queue)

    def restart(self, hosts: list[str]) -> None:
        """Restart these simulated agents at once (each sends a first heartbeat)."""
        by_queue: dict[str, list[str]] = {}
        for host in hosts:
            by_queue.setdefault(self.agent_queues[host], []).append(host)
        for queue, names in by_queue.items():
            self.app.send_task("vpcd.sim.restart", args=[names], queue=queue)

    def stop_controller(self, controller_id: str) -> None:
        proc = self.controllers.pop(controller_id)
        proc.kill()
        proc.wait(30)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        keys = list(self.redis.scan_iter(f"*{self.namespace}*", count=1000))
        for i in range(0, len(keys), 500):
            self.redis.delete(*keys[i : i + 500])
        self.app.close()


# -- convergence (the database's view) -------------------------------------------------------


def lagging(db_url: str) -> list[str]:
    """Hosts not settled: dirty, never compiled, not realising their last document, or
    with a change pending (a batch clears the dirty flags before its compile: between
    the two the host looked settled on its previous document)."""
    from models import Host
    from models.db import engine_for, session_factory
    from models.hoststate import HostStateRow

    with session_factory(engine_for(db_url))() as session:
        rows = session.execute(
            sa.select(
                Host.name,
                HostStateRow.revision,
                HostStateRow.dirty,
                HostStateRow.pending_since.is_not(None),
                Host.realised_revision,
            )
            .join(HostStateRow, HostStateRow.host == Host.name, isouter=True)
            .order_by(Host.name)
        )
        return [
            name
            for name, rev, dirty, pending, real in rows
            if rev is None or rev == 0 or dirty or pending or (real or 0) < rev
        ]


def revisions(db_url: str) -> dict[str, int]:
    from models.db import engine_for, session_factory
    from models.hoststate import HostStateRow

    with session_factory(engine_for(db_url))() as session:
        return dict(session.execute(sa.select(HostStateRow.host, HostStateRow.revision)).all())


def wait_converged(db_url: str, timeout: float, poll: float = 0.05) -> float:
    """Wait until every host realised its last compiled document; returns when (monotonic)."""
    deadline = time.monotonic() + timeout
    left: list[str] = []
    while time.monotonic() < deadline:
        left = lagging(db_url)
        if not left:
            return time.monotonic()
        time.sleep(poll)
    raise TimeoutError(f"{len(left)} hosts not converged, e.g. {left[:5]}")


def carrying(db_url: str, subnet_id: str) -> set[str]:
    """The hosts carrying a subnet (the models' own answer)."""
    from models import carriers
    from models.db import engine_for, session_factory

    with session_factory(engine_for(db_url))() as session:
        return carriers.carrying_hosts(session, "subnet", {subnet_id})


def diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {h: n - before.get(h, 0) for h, n in after.items() if n != before.get(h, 0)}
