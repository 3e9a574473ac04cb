"""The host agent: observe -> plan -> apply -> verify, and a Report of what it realised.

`Agent.sync(state, full=...)` is the one entry point (Celery wiring lives elsewhere; this
module is plain Python so tests call it directly):

- A state no newer than the last applied one is a no-op (a stale or duplicate poke),
  unless `full` asks to re-observe and repair at the same revision. An older revision is
  never applied, full or not: that would roll the host back.
- The document is validated once into a `Desired` (desired.py) that observe, plan,
  the scope of an incremental sync and the report all read.
- A full sync observes everything the agent owns. An incremental sync (a newer revision
  after a clean one) observes only what changed between the two states (delta.py) and
  trusts its post-apply snapshot for the rest, so one port change on a host with 1000
  ports costs a few netlink round trips and no iptables-save. Drift in the untouched
  part is what the periodic full resync is for.
- Ops are applied in order through the dispatch table (dispatch.py) on the real kernel
  (kernel.py).
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
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TypeVar

from workers.agent import dispatch, drivers, names
from workers.agent.delta import delta_scope
from workers.agent.desired import Desired
from workers.agent.drivers import Netlink
from workers.agent.kernel import HostKernel
from workers.agent.lbconf import measure
from workers.agent.lbhealth import LbHealth
from workers.agent.lbreport import lb_results, with_lb_results
from workers.agent.observe import observe
from workers.agent.observed import Observed, Scope
from workers.agent.ops import Op
from workers.agent.ownership import NetnsLedger
from workers.agent.plan import plan
from workers.agent.planners import firewall as host_firewall
from workers.agent.planners import nat
from workers.agent.planners.firewall import firewall_tables
from workers.agent.planners.ports import CreateNetns, DeleteNetns, DeletePort
from workers.agent.report import Failures, build_report, failed_report
from workers.agent.ruleset import NetnsFirewall
from workers.protocol import HostState, Report

log = logging.getLogger("vpcd.agent")
T = TypeVar("T")


@dataclass
class SyncStats:
    """What the last sync did and how long each step took (seconds)."""

    full: bool = False
    skipped: bool = False
    ops: int = 0
    leftover: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    sockets_opened: int = 0
    iptables_saves: int = 0  # tables read (full syncs, or a changed rendering)
    iptables_restores: int = 0  # one per table whose ruleset had to change
    ipset_restores: int = 0
    applied: Counter[str] = field(default_factory=Counter)  # ops that went through, by type
    op_seconds: dict[str, float] = field(default_factory=dict)  # apply time by op type
    errors: int = 0  # ops that failed
    conntrack_deletes: int = 0


class Agent:
    def __init__(
        self,
        host: str,
        host_netns: str | None,
        netns_prefix: str,
        state_dir: str | os.PathLike[str],
        external_interface: str | None = None,
        physical_interfaces: Mapping[str, str] | None = None,
    ) -> None:
        self.host = host
        if external_interface is not None:
            names.check_ifname(external_interface)
        self.external_interface = external_interface
        self.physical_interfaces = dict(physical_interfaces or {})
        self.host_netns = host_netns
        if host_netns is not None:
            drivers.netns_path(host_netns)  # validates the name
        self.netns_prefix = names.check_netns_prefix(netns_prefix)
        self.state_dir = str(state_dir)
        self._ledger = NetnsLedger(state_dir)
        self.state_dir = str(state_dir)
        _raise_fd_limit()  # one netlink socket per workload namespace stays open
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"vpcd-agent-{host}")
        self._kernel: HostKernel | None = None
        self._applied: Desired | None = None
        self._applied_firewall: dict[str | None, NetnsFirewall] = {}
        self._cache: Observed | None = None
        self._needs_full = True
        self._last_report: Report | None = None
        self._health = LbHealth(self.state_dir)
        self.stats = SyncStats()
        self._closed = False

    # ------------------------------------------------------------------ public

    def sync(self, state: HostState, *, full: bool = False) -> Report:
        return self._run(lambda: self._sync(state, full))

    def observe(self, state: HostState) -> Observed:
        """A fresh full observation (diagnostics and tests)."""
        return self._run(lambda: self._observe(self._desire(state), None))

    def pending(self, state: HostState) -> list[Op]:
        """What a full sync would do now: empty when the kernel matches `state`."""

        def run() -> list[Op]:
            desired = self._desire(state)
            return plan(desired, self._observe(desired, None))

        return self._run(run)

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
        if self._kernel is not None:
            self._kernel.nl.close()
            self._kernel = None

    @property
    def kernel(self) -> HostKernel:
        if self._kernel is None:
            self._kernel = HostKernel(Netlink(), self.host_netns, self.state_dir)
        return self._kernel

    @property
    def nl(self) -> Netlink:
        return self.kernel.nl

    def _desire(self, state: HostState) -> Desired:
        return Desired.build(
            state,
            self.netns_prefix,
            self.state_dir,
            self._health.down(),
            external_interface=self.external_interface,
            physical_interfaces=self.physical_interfaces,
        )

    def _observe(self, desired: Desired, scope: Scope | None) -> Observed:
        return observe(
            self.nl,
            self.host_netns,
            desired,
            owned_netns=self._ledger.names,
            scope=scope,
            tables={**firewall_tables(desired), **nat.tables(desired)},
            calls=self.kernel.calls,
            state_dir=self.state_dir,
        )

    def _sync(self, state: HostState, full: bool) -> Report:
        if state.host != self.host:
            return Report(
                host=self.host,
                revision=state.revision,
                ok=False,
                detail=f"state for host {state.host!r} delivered to agent of {self.host!r}",
            )
        started = time.perf_counter()
        desired = self._desire(state)
        desire = time.perf_counter() - started
        prior = self._applied
        try:
            return self._sync_once(desired, full)
        finally:
            clock = time.perf_counter()
            if self.stats.full or prior is None:
                self.nl.prune({self.host_netns, *desired.netns})
            elif not self.stats.skipped and prior.netns != desired.netns:
                # Only namespaces the change let go (one stat each for the full check
                # of every cached namespace is a full sync's job).
                self.nl.prune_gone(prior.netns - desired.netns)
            if not self.stats.skipped:
                timings = self.stats.timings
                timings["desire"] = desire
                timings["prune"] = time.perf_counter() - clock
                # `total` covers the whole sync: document to report, sockets pruned.
                timings["total"] = time.perf_counter() - started

    def _sync_once(self, desired: Desired, full: bool) -> Report:
        applied = self._applied
        if applied is not None and (
            desired.revision < applied.revision
            or (desired.revision == applied.revision and not full and not self._needs_full)
        ):
            self.stats = SyncStats(skipped=True)
            assert self._last_report is not None
            return self._last_report.model_copy(
                update={
                    "detail": f"revision {desired.revision} is not newer than the applied "
                    f"revision {applied.revision}: nothing to do"
                }
            )

        do_full = full or self._needs_full or applied is None or self._cache is None
        stats = SyncStats(full=do_full)
        sockets_before = self.nl.sockets_opened
        calls = self.kernel.calls
        calls_before = (
            calls.iptables_saves,
            calls.iptables_restores,
            calls.ipset_restores,
            calls.conntrack_deletes,
        )
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            stats.timings[name] = now - clock
            clock = now

        started = clock
        firewall = render(desired)  # host firewall and every router's NAT
        lap("render")
        delta: Scope | None = None  # what an incremental sync plans (plan.py)
        try:
            if do_full:
                observed = self._observe(desired, None)
                # Forget namespaces that no longer exist (deleted by hand, or a reboot).
                self._ledger.discard(self._ledger.names - drivers.list_netns())
            else:
                assert applied is not None and self._cache is not None
                delta = delta_scope(applied, desired, self._applied_firewall, firewall)
                lap("scope")
                scope = _trusting(delta)
                observed = self._cache.merged(self._observe(desired, scope), scope)
            lap("observe")
            ops = plan(desired, observed, delta)
            lap("plan")
            failures = self._apply(desired, ops, stats.applied, stats.op_seconds)
            lap("apply")
            touched = Scope()
            for op in ops:
                touched = touched | op.scope()
            if not do_full and not failures and None in touched.firewall:
                observed = _restored(observed, firewall)  # what a clean restore leaves
                touched = _trusting(touched)
            if touched:
                observed = observed.merged(self._observe(desired, touched), touched)
            leftover = plan(desired, observed, None if delta is None else delta | touched)
            lap("verify")
        except Exception as exc:  # the host namespace is gone, netlink broke, ...
            log.exception("sync of %s revision %s failed", self.host, desired.revision)
            self._needs_full = True
            self._cache = None
            stats.errors = 1  # the sync itself broke
            stats.timings["total"] = time.perf_counter() - started
            self.stats = stats
            return failed_report(desired, drivers.describe(exc))

        last = self._last_report
        reuse = None  # an incremental sync rebuilds the results of what it touched only
        if delta is not None and last is not None:
            reuse = {r.id: r for r in last.results if r.kind == "port"}
        report = build_report(desired, failures, leftover, reuse, delta.ports if delta else ())
        report = self._with_lbs(report, desired, failures, leftover)
        lap("report")
        if leftover:
            log.warning(
                "host %s revision %s not converged after apply: %s",
                self.host,
                desired.revision,
                leftover[:5],
            )
        self._needs_full = not report.ok
        self._applied = desired
        self._applied_firewall = firewall
        self._cache = observed
        self._last_report = report
        stats.ops, stats.leftover = len(ops), len(leftover)
        stats.errors = sum(len(why) for why in failures.values())
        stats.timings["total"] = time.perf_counter() - started
        stats.sockets_opened = self.nl.sockets_opened - sockets_before
        stats.iptables_saves = calls.iptables_saves - calls_before[0]
        stats.iptables_restores = calls.iptables_restores - calls_before[1]
        stats.ipset_restores = calls.ipset_restores - calls_before[2]
        stats.conntrack_deletes = calls.conntrack_deletes - calls_before[3]
        self.stats = stats
        return report

    def _with_lbs(
        self, report: Report, desired: Desired, failures: Failures, leftover: list[Op]
    ) -> Report:
        """The load balancers' results, with what haproxy measures right now."""
        if not desired.state.load_balancers:
            return report
        ports_ok = {r.id: (None if r.ok else r.detail or "failed") for r in report.results}
        stats = self._health.stats(desired)
        return with_lb_results(
            report, lb_results(desired, failures, leftover, ports_ok, stats, self._health.up())
        )

    def measure_pace(self) -> float:
        """Seconds between two `remeasure` calls: the shortest monitor delay."""
        return LbHealth.pace(self._applied)

    def remeasure(self) -> Report | None:
        """The last report with freshly measured operating statuses, when they changed
        (the service's measuring timer sends it: a member's health moves between syncs)."""

        def run() -> Report | None:
            applied, last = self._applied, self._last_report
            if applied is None or last is None or not applied.lbs:
                return None
            before = self._health.down()
            self._health.probe(applied)
            if self._health.down() != before:  # the DNAT rules change: re-plan the same state
                return self._sync_once(self._desire(applied.state), full=True)
            stats = self._health.stats(applied)
            measured: dict[str, str] = {}
            for lb_id, lb in applied.lbs.items():
                measured |= measure(lb, stats.get(lb_id, ""), self._health.up())
            results = [
                r.model_copy(update={"operating_status": measured[r.id]})
                if r.ok and r.operating_status is not None and r.id in measured
                else r
                for r in last.results
            ]
            if results == list(last.results):
                return None
            self._last_report = last.model_copy(update={"results": results})
            return self._last_report

        return self._run(run)

    def _apply(
        self,
        desired: Desired,
        ops: list[Op],
        applied: Counter[str] | None = None,
        seconds: dict[str, float] | None = None,
    ) -> Failures:
        """Run ops in order through the dispatch table; a resource whose op failed gets
        no further ops, nor does a port whose subnet or namespace failed."""
        failures: Failures = {}
        port_subnet = {p.id: p.subnet_id for p in desired.state.ports}
        failed_netns: dict[str, str] = {}
        kernel = self.kernel
        kernel.begin()
        began = time.perf_counter()
        self._ledger.add(op.name for op in ops if isinstance(op, CreateNetns))  # intent first
        _add_time(seconds, "ledger", began)
        deleted: list[str] = []
        vanishing = self._vanishing(ops)
        for op in ops:
            if vanishing and not isinstance(op, DeleteNetns):
                kernel.await_gone(vanishing)  # after the namespaces, before their veths
                vanishing = set()
            resource = op.resource
            if resource is not None and resource in failures:
                continue
            if resource is not None and resource[0] == "port":
                sid = port_subnet.get(resource[1])
                ns = desired.port_netns.get(resource[1])
                if sid is not None and ("subnet", sid) in failures:
                    failures[resource] = [f"subnet {sid} is not realised on this host"]
                    continue
                if ns in failed_netns and not isinstance(op, DeletePort):
                    failures[resource] = [f"netns {ns}: {failed_netns[ns]}"]
                    continue
            began = time.perf_counter()
            try:
                dispatch.apply(kernel, op)
            except Exception as exc:
                detail = f"{type(op).__name__} {op.target}: {drivers.describe(exc)}"
                log.warning("host %s: %s", self.host, detail)
                failures.setdefault(resource, []).append(detail)
                if isinstance(op, CreateNetns):
                    failed_netns[op.name] = drivers.describe(exc)
            else:
                if applied is not None:
                    applied[type(op).__name__] += 1
                if isinstance(op, DeleteNetns):
                    deleted.append(op.name)
            finally:
                _add_time(seconds, type(op).__name__, began)
        began = time.perf_counter()
        self._ledger.discard(deleted)
        _add_time(seconds, "ledger", began)
        return failures

    def _vanishing(self, ops: list[Op]) -> set[str]:
        """Host veths whose workload end was in a namespace these ops delete: the
        kernel removes them with it (as far as the last applied state knows). A fresh
        agent knows no last state (a restart, then a teardown): every stale veth may be
        one of them, and those that are not cost one patience of waiting, not a delete
        each for the thousand that are."""
        gone = {op.name for op in ops if isinstance(op, DeleteNetns)}
        if not gone:
            return set()
        if self._applied is None:
            return {op.veth for op in ops if isinstance(op, DeletePort) and op.port_id is None}
        was_in = {names.host_veth_name(p): ns for p, ns in self._applied.port_netns.items()}
        return {op.veth for op in ops if isinstance(op, DeletePort) and was_in.get(op.veth) in gone}


def render(desired: Desired) -> dict[str | None, NetnsFirewall]:
    return {**host_firewall.render(desired), **nat.render(desired)}


# The host's filter table holds two chains per port: reading it back (iptables-save,
# ebtables-save, ipset save and parsing) costs more than a one-port change may. An
# incremental sync follows a clean one, whose verified snapshot is exactly the last
# applied rendering, and a restore that exits 0 leaves exactly what it was given; so
# between full syncs the host's firewall is taken from the snapshot, not the kernel.
# Any failure makes the next sync full, which reads everything again, as does the
# periodic resync (drift by hand).


def _trusting(scope: Scope) -> Scope:
    """`scope` without the host's firewall (the snapshot stands for it)."""
    return replace(scope, firewall=scope.firewall - {None})


def _restored(observed: Observed, firewall: dict[str | None, NetnsFirewall]) -> Observed:
    """`observed` with the host's firewall as the applied rendering left it."""
    want, have = firewall.get(None, NetnsFirewall()), observed.firewall.get(None)
    sysctls = {**(have.sysctls if have is not None else {}), **want.sysctls}
    host = NetnsFirewall(tables=want.tables, sets=want.sets, sysctls=sysctls)
    return replace(observed, firewall={**observed.firewall, None: host})


def _add_time(seconds: dict[str, float] | None, key: str, began: float) -> None:
    if seconds is not None:
        seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - began


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
