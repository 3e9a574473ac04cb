"""The host agent: observe -> plan -> apply -> verify, and a Report of what it realised.

`Agent.sync(state, full=...)` is the one entry point (Celery wiring lives elsewhere; this
module is plain Python so tests call it directly):

- A state no newer than the last applied one is a no-op (a stale or duplicate poke),
  unless `full` asks to re-observe and repair at the same revision. An older revision is
  never applied, full or not: that would roll the host back.
- A full sync observes everything the agent owns. An incremental sync (a newer revision
  after a clean one) observes only what changed between the two states and trusts its
  post-apply snapshot for the rest, so one port change on a host with 1000 ports costs
  a few netlink round trips. Drift in the untouched part is what the periodic full
  resync is for.
- After applying, it re-observes what the ops touched and plans again; that plan must
  be empty. Anything left over, and any op that failed, marks its resource ok=False with
  a reason and makes the next sync full.

All kernel I/O happens on one worker thread owned by the agent: pyroute2's sync sockets
are bound to the thread that made them, and this keeps `sync()` callable from anywhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from workers.agent import drivers, names
from workers.agent.drivers import Netlink
from workers.agent.observe import observe
from workers.agent.observed import ZERO_MAC, Observed, Scope
from workers.agent.ownership import NetnsLedger
from workers.agent.plan import (
    AddFdb,
    ConfigureBridge,
    ConfigureHostVeth,
    ConfigurePort,
    ConfigureVxlan,
    CreateBridge,
    CreateNetns,
    CreatePort,
    CreateVxlan,
    DeleteBridge,
    DeleteNetns,
    DeletePort,
    DeleteVxlan,
    DelFdb,
    Op,
    needed_subnets,
    plan,
    port_problems,
)
from workers.protocol import HostState, Report, ResourceResult

log = logging.getLogger("vpcd.agent")
T = TypeVar("T")

# Subnet fields whose change touches only the VXLAN device's fdb, not the ports.
_FDB_ONLY_FIELDS = {"revision", "remote_vteps", "remote_ports"}


@dataclass
class SyncStats:
    """What the last sync did and how long each step took (seconds)."""

    full: bool = False
    skipped: bool = False
    ops: int = 0
    leftover: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    sockets_opened: int = 0


class Agent:
    def __init__(
        self,
        host: str,
        host_netns: str | None,
        netns_prefix: str,
        state_dir: str | os.PathLike[str],
    ) -> None:
        self.host = host
        self.host_netns = host_netns
        if host_netns is not None:
            drivers.netns_path(host_netns)  # validates the name
        self.netns_prefix = names.check_netns_prefix(netns_prefix)
        self._ledger = NetnsLedger(state_dir)
        _raise_fd_limit()  # one netlink socket per workload namespace stays open
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"vpcd-agent-{host}")
        self._nl: Netlink | None = None
        self._applied: HostState | None = None
        self._cache: Observed | None = None
        self._needs_full = True
        self._last_report: Report | None = None
        self.stats = SyncStats()
        self._closed = False

    # ------------------------------------------------------------------ public

    def sync(self, state: HostState, *, full: bool = False) -> Report:
        return self._run(lambda: self._sync(state, full))

    def observe(self, state: HostState) -> Observed:
        """A fresh full observation (diagnostics and tests)."""
        return self._run(lambda: self._observe(state, None))

    def pending(self, state: HostState) -> list[Op]:
        """What a full sync would do now: empty when the kernel matches `state`."""
        return self._run(
            lambda: plan(state, self._observe(state, None), netns_prefix=self.netns_prefix)
        )

    @property
    def needs_full(self) -> bool:
        """Whether the next sync observes everything (after a start or a failure)."""
        return self._needs_full

    def close(self) -> None:
        """Close every netlink socket; the kernel objects stay as they are."""
        if self._closed:
            return
        self._closed = True
        self._run(self._close_netlink)
        self._executor.shutdown(wait=True)

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- private

    def _run(self, fn: Callable[[], T]) -> T:
        return self._executor.submit(fn).result()

    def _close_netlink(self) -> None:
        if self._nl is not None:
            self._nl.close()
            self._nl = None

    @property
    def nl(self) -> Netlink:
        if self._nl is None:
            self._nl = Netlink()
        return self._nl

    def _observe(self, state: HostState, scope: Scope | None) -> Observed:
        return observe(
            self.nl,
            self.host_netns,
            state,
            netns_prefix=self.netns_prefix,
            owned_netns=self._ledger.names,
            scope=scope,
        )

    def _sync(self, state: HostState, full: bool) -> Report:
        if state.host != self.host:
            return Report(
                host=self.host,
                revision=state.revision,
                ok=False,
                detail=f"state for host {state.host!r} delivered to agent of {self.host!r}",
            )
        try:
            return self._sync_once(state, full)
        finally:
            self.nl.prune({self.host_netns} | self._netns_in_use(state))

    def _netns_in_use(self, state: HostState) -> set[str | None]:
        problems = port_problems(state, self.netns_prefix)
        return {
            names.workload_netns(self.netns_prefix, p.netns)
            for p in state.ports
            if p.id not in problems
        }

    def _sync_once(self, state: HostState, full: bool) -> Report:
        applied = self._applied
        if applied is not None and (
            state.revision < applied.revision
            or (state.revision == applied.revision and not full and not self._needs_full)
        ):
            self.stats = SyncStats(skipped=True)
            assert self._last_report is not None
            return self._last_report.model_copy(
                update={
                    "detail": f"revision {state.revision} is not newer than the applied "
                    f"revision {applied.revision}: nothing to do"
                }
            )

        do_full = full or self._needs_full or applied is None or self._cache is None
        stats = SyncStats(full=do_full)
        sockets_before = self.nl.sockets_opened
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            stats.timings[name] = now - clock
            clock = now

        started = clock
        try:
            if do_full:
                observed = self._observe(state, None)
                # Forget namespaces that no longer exist (deleted by hand, or a reboot).
                self._ledger.discard(self._ledger.names - drivers.list_netns())
            else:
                assert applied is not None and self._cache is not None
                scope = delta_scope(applied, state, self.netns_prefix)
                observed = self._cache.merged(self._observe(state, scope), scope)
            lap("observe")
            ops = plan(state, observed, netns_prefix=self.netns_prefix)
            lap("plan")
            failures = self._apply(state, ops)
            lap("apply")
            touched = Scope()
            for op in ops:
                touched = touched | op.scope()
            if touched:
                observed = observed.merged(self._observe(state, touched), touched)
            leftover = plan(state, observed, netns_prefix=self.netns_prefix)
            lap("verify")
        except Exception as exc:  # the host namespace is gone, netlink broke, ...
            log.exception("sync of %s revision %s failed", self.host, state.revision)
            self._needs_full = True
            self._cache = None
            stats.timings["total"] = time.perf_counter() - started
            self.stats = stats
            return self._failed_report(state, drivers.describe(exc))

        report = self._report(state, failures, leftover)
        if leftover:
            log.warning(
                "host %s revision %s not converged after apply: %s",
                self.host,
                state.revision,
                leftover[:5],
            )
        self._needs_full = not report.ok
        self._applied = state
        self._cache = observed
        self._last_report = report
        stats.ops, stats.leftover = len(ops), len(leftover)
        stats.timings["total"] = time.perf_counter() - started
        stats.sockets_opened = self.nl.sockets_opened - sockets_before
        self.stats = stats
        return report

    # ------------------------------------------------------------------- apply

    def _apply(self, state: HostState, ops: list[Op]) -> dict[tuple[str, str] | None, list[str]]:
        """Run ops in order; a resource whose op failed gets no further ops."""
        failures: dict[tuple[str, str] | None, list[str]] = {}
        port_subnet = {p.id: p.subnet_id for p in state.ports}
        port_netns = {
            p.id: self.netns_prefix + p.netns for p in state.ports
        }  # validated by plan: only valid ports have ops
        failed_netns: dict[str, str] = {}
        index: dict[str, int] = {}

        creating = [op.name for op in ops if isinstance(op, CreateNetns)]
        self._ledger.add(creating)  # record intent before creating: see ownership.py
        deleted: list[str] = []
        for op in ops:
            resource = op.resource
            if resource is not None and resource in failures:
                continue
            if resource is not None and resource[0] == "port":
                sid = port_subnet.get(resource[1])
                ns = port_netns.get(resource[1])
                if sid is not None and ("subnet", sid) in failures:
                    failures[resource] = [f"subnet {sid} is not realised on this host"]
                    continue
                if ns in failed_netns and not isinstance(op, DeletePort):
                    failures[resource] = [f"netns {ns}: {failed_netns[ns]}"]
                    continue
            try:
                self._execute(op, index)
            except Exception as exc:
                detail = f"{type(op).__name__} {op.target}: {drivers.describe(exc)}"
                log.warning("host %s: %s", self.host, detail)
                failures.setdefault(resource, []).append(detail)
                if isinstance(op, CreateNetns):
                    failed_netns[op.name] = drivers.describe(exc)
            else:
                if isinstance(op, DeleteNetns):
                    deleted.append(op.name)
        self._ledger.discard(deleted)
        return failures

    def _execute(self, op: Op, index: dict[str, int]) -> None:
        host = self.nl.handle(self.host_netns)

        def idx(name: str) -> int:
            if name not in index:
                index[name] = drivers.link_index(host, name)
            return index[name]

        if isinstance(op, DeletePort | DeleteVxlan | DeleteBridge):
            index.pop(op.target, None)
            drivers.delete_link(host, op.target)
        elif isinstance(op, CreateNetns):
            self.nl.create_netns(op.name)
        elif isinstance(op, DeleteNetns):
            self.nl.delete_netns(op.name)
        elif isinstance(op, CreateBridge):
            drivers.create_bridge(host, op.name, op.mtu)
        elif isinstance(op, ConfigureBridge):
            drivers.set_link(host, idx(op.name), mtu=op.mtu, up=True)
        elif isinstance(op, CreateVxlan):
            drivers.create_vxlan(
                host,
                op.name,
                vni=op.vni,
                local=op.local,
                dstport=op.dstport,
                mtu=op.mtu,
                master=idx(op.bridge),
            )
        elif isinstance(op, ConfigureVxlan):
            drivers.set_link(host, idx(op.name), mtu=op.mtu, master=idx(op.bridge), up=True)
        elif isinstance(op, DelFdb):
            drivers.fdb_delete(host, idx(op.device), op.mac, op.dst)
        elif isinstance(op, AddFdb):
            add = drivers.fdb_append if op.mac == ZERO_MAC else drivers.fdb_replace
            add(host, idx(op.device), op.mac, op.dst)
        elif isinstance(op, CreatePort):
            fd = drivers.open_netns_fd(op.netns)
            try:
                drivers.create_veth(
                    host,
                    op.veth,
                    master=idx(op.bridge),
                    mtu=op.mtu,
                    peer_name=op.ifname,
                    peer_mac=op.mac,
                    peer_netns_fd=fd,
                )
            finally:
                os.close(fd)
        elif isinstance(op, ConfigureHostVeth):
            drivers.set_link(host, idx(op.veth), master=idx(op.bridge), mtu=op.mtu, up=True)
        elif isinstance(op, ConfigurePort):
            self._configure_port(op)
        else:  # pragma: no cover - a new Op without a driver is a programming error
            raise TypeError(f"no driver for {op!r}")

    def _configure_port(self, op: ConfigurePort) -> None:
        ipr = self.nl.handle(op.netns)
        i = drivers.link_index(ipr, op.ifname)
        if op.mac is not None or op.mtu is not None or op.up:
            drivers.set_link(ipr, i, address=op.mac, mtu=op.mtu, up=True if op.up else None)
        for cidr in op.del_addresses:
            drivers.delete_address(ipr, i, cidr)
        for cidr in op.add_addresses:
            drivers.add_address(ipr, i, cidr)
        for route in op.del_routes:
            drivers.delete_route(ipr, i, route.destination, route.gateway)
        # Removing an address drops the routes through it: then re-add all of them.
        for route in op.routes if op.del_addresses else op.add_routes:
            drivers.add_route(ipr, i, route.destination, route.gateway)

    # ------------------------------------------------------------------ report

    def _report(
        self,
        state: HostState,
        failures: dict[tuple[str, str] | None, list[str]],
        leftover: list[Op],
    ) -> Report:
        problems = port_problems(state, self.netns_prefix)
        unconverged: dict[tuple[str, str] | None, list[Op]] = {}
        for op in leftover:
            unconverged.setdefault(op.resource, []).append(op)

        def result(kind: str, rid: str, revision: int, extra: str | None = None) -> Any:
            reasons = list(failures.get((kind, rid), []))
            if extra:
                reasons.append(extra)
            if (kind, rid) in unconverged and not reasons:
                ops = unconverged[(kind, rid)]
                reasons.append("not converged after apply: " + ", ".join(map(repr, ops[:3])))
            return ResourceResult(
                kind=kind,
                id=rid,
                revision=revision,
                ok=not reasons,
                detail="; ".join(reasons) or None,
            )

        results = [result("subnet", s.id, s.revision) for s in state.subnets]
        subnet_ok = {r.id: r.ok for r in results}
        for port in state.ports:
            extra = problems.get(port.id)
            if extra is None and not subnet_ok.get(port.subnet_id, True):
                extra = f"subnet {port.subnet_id} is not realised on this host"
                if ("port", port.id) in failures:
                    extra = None
            results.append(result("port", port.id, port.revision, extra))
        host_level = failures.get(None, []) + [repr(op) for op in unconverged.get(None, [])]
        ok = all(r.ok for r in results) and not host_level
        detail = None
        if host_level:
            detail = "; ".join(host_level[:5])
        elif not ok:
            bad = [r for r in results if not r.ok]
            detail = f"{len(bad)} resource(s) not realised"
        return Report(
            host=self.host, revision=state.revision, ok=ok, detail=detail, results=results
        )

    def _failed_report(self, state: HostState, detail: str) -> Report:
        results = [
            ResourceResult(kind="subnet", id=s.id, revision=s.revision, ok=False, detail=detail)
            for s in state.subnets
        ] + [
            ResourceResult(kind="port", id=p.id, revision=p.revision, ok=False, detail=detail)
            for p in state.ports
        ]
        return Report(
            host=self.host, revision=state.revision, ok=False, detail=detail, results=results
        )


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def delta_scope(prev: HostState, new: HostState, netns_prefix: str = "") -> Scope:
    """Every kernel object whose desired form differs between two states.

    An incremental sync observes exactly this; everything else is taken from the
    snapshot made after `prev` was applied.
    """
    links: set[str] = set()
    ports: set[str] = set()
    netns: set[str] = set()
    prev_problems = port_problems(prev, netns_prefix)
    new_problems = port_problems(new, netns_prefix)
    prev_needed = needed_subnets(prev, netns_prefix, prev_problems)
    new_needed = needed_subnets(new, netns_prefix, new_problems)
    every_subnet = prev_needed.keys() | new_needed.keys()
    port_subnets: set[str] = set()
    for sid in every_subnet:
        a, b = prev_needed.get(sid), new_needed.get(sid)
        if a == b and prev.vtep_ip == new.vtep_ip:
            continue
        links |= {names.bridge_name(sid), names.vxlan_name(sid)}
        if a is None or b is None:
            port_subnets.add(sid)
            continue
        changed = {k for k in type(a).model_fields if getattr(a, k) != getattr(b, k)}
        if changed - _FDB_ONLY_FIELDS:
            port_subnets.add(sid)

    prev_ports = {p.id: p for p in prev.ports}
    new_ports = {p.id: p for p in new.ports}
    for pid in prev_ports.keys() | new_ports.keys():
        a_port, b_port = prev_ports.get(pid), new_ports.get(pid)
        if (
            a_port != b_port
            or prev_problems.get(pid) != new_problems.get(pid)
            or any(p is not None and p.subnet_id in port_subnets for p in (a_port, b_port))
        ):
            ports.add(pid)
            links.add(names.host_veth_name(pid))
            for p in (a_port, b_port):
                if p is not None:
                    with contextlib.suppress(ValueError):
                        netns.add(names.workload_netns(netns_prefix, p.netns))
    return Scope(frozenset(links), frozenset(ports), frozenset(netns))
