"""DHCP and DNS per subnet (DESIGN §4), and the workloads' resolv.conf.

A service is a namespace named from the subnet's token, a veth leg whose host end sits
on the subnet's bridge (the L2 planner realises the bridge: Desired.needed includes the
subnet) and whose inner end carries the service port's MAC and address, and one dnsmasq
started through the processes driver. Files are rendered purely (workers/agent/dnsmasq.py):
a change of a reloadable file is a SIGHUP, a change of dnsmasq.conf or a new leg (the
daemon binds to the interface) a restart; a dnsmasq that is not running is started.
Services no longer desired are stopped, their namespace and files removed.

Workload namespaces the agent made get `/etc/netns/<netns>/resolv.conf` naming their
subnet's resolver; the file goes when the namespace does or no resolver is left.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from workers.agent import dnsmasq, names
from workers.agent.desired import Desired
from workers.agent.observed import Observed, RouteObs, Scope, ServiceObs
from workers.agent.ops import Op, Phase
from workers.protocol import DhcpDnsState


@dataclass(frozen=True)
class _ServiceOp(Op):
    token: str
    netns: str
    port_id: str | None = None  # None for a service no longer desired

    @property
    def target(self) -> str:
        return self.netns

    @property
    def resource(self) -> tuple[str, str] | None:
        return ("port", self.port_id) if self.port_id else None

    def scope(self) -> Scope:
        return Scope(netns=frozenset({self.netns}))  # services are re-read on every observe


@dataclass(frozen=True)
class StopDnsmasq(_ServiceOp):
    PHASE: ClassVar[Phase] = Phase.STOP_DAEMON
    directory: str = ""


@dataclass(frozen=True)
class DeleteServiceNetns(_ServiceOp):
    PHASE: ClassVar[Phase] = Phase.DELETE_NETNS


@dataclass(frozen=True)
class RemoveServiceFiles(_ServiceOp):
    PHASE: ClassVar[Phase] = Phase.REMOVE_FILES
    directory: str = ""


@dataclass(frozen=True)
class DeleteServiceLeg(_ServiceOp):
    """The leg's inner end is gone or renamed: the pair is made again."""

    PHASE: ClassVar[Phase] = Phase.DELETE_PORT
    veth: str = ""


@dataclass(frozen=True)
class CreateServiceNetns(_ServiceOp):
    PHASE: ClassVar[Phase] = Phase.CREATE_NETNS


@dataclass(frozen=True)
class CreateServiceLeg(_ServiceOp):
    """Host end `veth` on `bridge`, up; inner end straight in the namespace, with MAC."""

    PHASE: ClassVar[Phase] = Phase.CREATE_PORT
    veth: str = ""
    bridge: str = ""
    mac: str = ""
    mtu: int = 0


@dataclass(frozen=True)
class ConfigureServiceLeg(_ServiceOp):
    """Converge both ends: host end on its bridge with MTU and up; inner end's MAC, MTU,
    up and exactly the service address (loopback up too, for local queries) and routes."""

    PHASE: ClassVar[Phase] = Phase.CONFIGURE_PORT
    veth: str = ""
    bridge: str = ""
    mac: str = ""
    mtu: int = 0
    del_addresses: tuple[str, ...] = ()
    add_addresses: tuple[str, ...] = ()
    # the subnet's routes, as a workload's (dnsmasq reaches upstreams through the router);
    # `routes` is the full set, re-added when an address goes (the kernel drops them)
    del_routes: tuple[RouteObs, ...] = ()
    add_routes: tuple[RouteObs, ...] = ()
    routes: tuple[RouteObs, ...] = ()


@dataclass(frozen=True)
class WriteServiceFiles(_ServiceOp):
    PHASE: ClassVar[Phase] = Phase.WRITE_FILES
    directory: str = ""
    files: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class StartDnsmasq(_ServiceOp):
    PHASE: ClassVar[Phase] = Phase.START_DAEMON
    directory: str = ""


@dataclass(frozen=True)
class ReloadDnsmasq(_ServiceOp):
    """SIGHUP: dnsmasq re-reads leases, options, names and upstreams."""

    PHASE: ClassVar[Phase] = Phase.RELOAD_DAEMON
    directory: str = ""


@dataclass(frozen=True)
class WriteResolvConf(Op):
    PHASE: ClassVar[Phase] = Phase.WRITE_FILES
    netns: str
    text: str

    @property
    def target(self) -> str:
        return self.netns

    def scope(self) -> Scope:
        return Scope(netns=frozenset({self.netns}))


@dataclass(frozen=True)
class RemoveResolvConf(Op):
    PHASE: ClassVar[Phase] = Phase.REMOVE_FILES
    netns: str

    @property
    def target(self) -> str:
        return self.netns

    def scope(self) -> Scope:
        return Scope(netns=frozenset({self.netns}))


def plan_dhcp_dns(desired: Desired, observed: Observed, scope: Scope | None = None) -> list[Op]:
    """Services are few and always planned whole; resolv.conf files (one per workload
    namespace), with `scope`, only for its namespaces (plan.py)."""
    ops: list[Op] = []
    for token, obs in observed.services.items():
        if token in desired.services:
            continue
        netns = names.service_netns(desired.netns_prefix, token)
        directory = dnsmasq.service_dir(desired.state_dir, token)
        if obs.running:
            ops.append(StopDnsmasq(token, netns, directory=directory))
        if obs.netns:
            ops.append(DeleteServiceNetns(token, netns))
        if obs.has_dir:
            ops.append(RemoveServiceFiles(token, netns, directory=directory))
    for token, svc in desired.services.items():
        ops += _plan_service(desired, token, svc, observed.services.get(token))
    ops += _plan_resolv(desired, observed, None if scope is None else scope.netns)
    return ops


def _plan_service(
    desired: Desired, token: str, svc: DhcpDnsState, obs: ServiceObs | None
) -> list[Op]:
    obs = obs or ServiceObs(token)
    netns = names.service_netns(desired.netns_prefix, token)
    directory = dnsmasq.service_dir(desired.state_dir, token)
    subnet = desired.subnets[svc.subnet_id]
    veth, bridge = names.leg_name_of_token(token), names.bridge_name(svc.subnet_id)
    pid = svc.port_id
    ops: list[Op] = []
    leg, inner = (obs.leg, obs.inner) if obs.netns else (None, None)
    if not obs.netns:
        ops.append(CreateServiceNetns(token, netns, pid))
    if leg is not None and inner is None:
        ops.append(DeleteServiceLeg(token, netns, pid, veth=veth))
        leg = None
    new_leg = leg is None
    if new_leg:
        ops.append(CreateServiceLeg(token, netns, pid, veth, bridge, svc.mac, subnet.mtu))
    want = {f"{svc.address}/{ipaddress_prefix(svc.cidr)}"}
    have = inner.addresses if inner is not None else frozenset()
    routes = desired.routes.get(svc.subnet_id, frozenset())
    have_routes = inner.routes if inner is not None else frozenset()
    if (
        new_leg
        or inner is None
        or leg is None
        or (leg.master, leg.mtu, leg.up) != (bridge, subnet.mtu, True)
        or (inner.mac, inner.mtu, inner.up) != (svc.mac, subnet.mtu, True)
        or have != want
        or have_routes != routes
    ):
        ops.append(
            ConfigureServiceLeg(
                token,
                netns,
                pid,
                veth=veth,
                bridge=bridge,
                mac=svc.mac,
                mtu=subnet.mtu,
                del_addresses=tuple(sorted(have - want)),
                add_addresses=tuple(sorted(want - have)),
                del_routes=tuple(sorted(have_routes - routes)),
                add_routes=tuple(sorted(routes - have_routes)),
                routes=tuple(sorted(routes)),
            )
        )
    files = dnsmasq.render(svc, directory)
    changed = tuple(sorted((n, t) for n, t in files.items() if obs.files.get(n) != t))
    if changed:
        ops.append(WriteServiceFiles(token, netns, pid, directory=directory, files=changed))
    restart = new_leg or not obs.netns or any(n == dnsmasq.CONF for n, _ in changed)
    if obs.running and restart:
        ops.append(StopDnsmasq(token, netns, pid, directory=directory))
    if not obs.running or restart:
        ops.append(StartDnsmasq(token, netns, pid, directory=directory))
    elif changed:
        ops.append(ReloadDnsmasq(token, netns, pid, directory=directory))
    return ops


def ipaddress_prefix(cidr: str) -> int:
    return int(cidr.rsplit("/", 1)[1])


def desired_resolv(
    desired: Desired, observed: Observed, only: frozenset[str] | None = None
) -> dict[str, str]:
    """resolv.conf per workload namespace the agent made (or is about to make): the
    resolver of the subnet of its first port (by id) that has one; of the namespaces
    in `only` when given."""
    out: dict[str, str] = {}
    mine = observed.owned_netns | (desired.netns - observed.netns)
    if only is not None:
        mine = mine & only
        if not mine:
            return out
    ports = [p for p in desired.ports if desired.port_netns[p.id] in mine]
    for port in sorted(ports, key=lambda p: p.id):
        netns = desired.port_netns[port.id]
        resolver = desired.resolvers.get(port.subnet_id)
        if netns in out or netns not in mine or resolver is None or not resolver.nameserver:
            continue
        out[netns] = dnsmasq.resolv_conf(resolver.nameserver, resolver.domain)
    return out


def _plan_resolv(
    desired: Desired, observed: Observed, only: frozenset[str] | None = None
) -> list[Op]:
    want = desired_resolv(desired, observed, only)
    have = observed.resolv.keys() if only is None else observed.resolv.keys() & only
    ops: list[Op] = [RemoveResolvConf(ns) for ns in sorted(have - want.keys())]
    ops += [
        WriteResolvConf(ns, t) for ns, t in sorted(want.items()) if observed.resolv.get(ns) != t
    ]
    return ops
