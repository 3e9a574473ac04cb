"""Ports (DESIGN §4): workload namespaces, veth pairs and the workload end's config.

A port is a veth whose host end sits on its subnet's bridge and whose workload end is
in the port's netns, named interface_name, with MAC, IP/prefix, MTU, up, a default
route via the gateway when `routed`, and the subnet's host routes. A port whose workload
takes its address by DHCP gets MAC, MTU and up only: addresses and routes are its
client's, never added nor removed here. A namespace goes
only if the agent created it and no desired port uses it; a desired port's veth is
never deleted as stale, even while the port cannot be realised.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from typing import ClassVar

from workers.agent import names
from workers.agent.desired import Desired
from workers.agent.observed import Observed, RouteObs, Scope, WorkloadObs
from workers.agent.ops import Op, Phase
from workers.protocol import PortState, SubnetState


@dataclass(frozen=True)
class DeleteNetns(Op):
    """Remove a namespace the agent created. First of all: the kernel then tears down
    the veths inside it in one batch, far faster than deleting them one by one (a
    veth delete waits for an RCU grace period, ≈16 ms); the DeletePort that follows
    for their host ends usually finds them already gone."""

    PHASE: ClassVar[Phase] = Phase.DELETE_NETNS
    name: str

    @property
    def target(self) -> str:
        return self.name

    def scope(self) -> Scope:
        return Scope(netns=frozenset({self.name}))


@dataclass(frozen=True)
class DeletePort(Op):
    """Delete a host-side veth; the kernel removes its workload end with it."""

    PHASE: ClassVar[Phase] = Phase.DELETE_PORT
    veth: str
    port_id: str | None = None  # set when a desired port is being recreated

    @property
    def target(self) -> str:
        return self.veth

    @property
    def resource(self) -> tuple[str, str] | None:
        return ("port", self.port_id) if self.port_id else None

    def scope(self) -> Scope:
        ports = frozenset({self.port_id}) if self.port_id else frozenset()
        return Scope(links=frozenset({self.veth}), ports=ports)


@dataclass(frozen=True)
class CreateNetns(Op):
    PHASE: ClassVar[Phase] = Phase.CREATE_NETNS
    name: str

    @property
    def target(self) -> str:
        return self.name

    def scope(self) -> Scope:
        return Scope(netns=frozenset({self.name}))


@dataclass(frozen=True)
class _PortOp(Op):
    port_id: str

    @property
    def target(self) -> str:
        return names.host_veth_name(self.port_id)

    @property
    def resource(self) -> tuple[str, str] | None:
        return ("port", self.port_id)

    def scope(self) -> Scope:
        return Scope(links=frozenset({self.target}), ports=frozenset({self.port_id}))


@dataclass(frozen=True)
class CreatePort(_PortOp):
    """One RTM_NEWLINK: host end `veth` on `bridge`, MTU, up; workload end created
    straight in `netns` as `ifname` with `mac` and MTU (down: a veth end cannot be
    brought up before its pair exists, so ConfigurePort does that)."""

    PHASE: ClassVar[Phase] = Phase.CREATE_PORT
    veth: str = ""
    bridge: str = ""
    netns: str = ""
    ifname: str = ""
    mac: str = ""
    mtu: int = 0


@dataclass(frozen=True)
class ConfigureHostVeth(_PortOp):
    """Put the host end back on its bridge, with its MTU, up."""

    PHASE: ClassVar[Phase] = Phase.CONFIGURE_HOST_VETH
    veth: str = ""
    bridge: str = ""
    mtu: int = 0


@dataclass(frozen=True)
class ConfigurePort(_PortOp):
    """Converge the workload end. None/empty fields mean "already right".

    `routes` is the full desired set: removing an address makes the kernel drop routes
    through it, so after any address removal the driver re-adds all of them.
    """

    PHASE: ClassVar[Phase] = Phase.CONFIGURE_PORT
    netns: str = ""
    ifname: str = ""
    mac: str | None = None
    mtu: int | None = None
    up: bool = False
    del_addresses: tuple[str, ...] = ()
    add_addresses: tuple[str, ...] = ()
    del_routes: tuple[RouteObs, ...] = ()
    add_routes: tuple[RouteObs, ...] = ()
    routes: tuple[RouteObs, ...] = ()


def desired_workload(
    port: PortState, subnet: SubnetState, netns: str, routes: frozenset[RouteObs]
) -> WorkloadObs:
    """The workload end `port` should have."""
    return WorkloadObs(
        netns=netns,
        name=port.interface_name,
        mac=port.mac.lower(),
        mtu=subnet.mtu,
        up=True,
        addresses=frozenset({f"{port.ip}/{port.prefixlen}"}),
        routes=routes,
    )


def plan_ports(desired: Desired, observed: Observed, scope: Scope | None = None) -> list[Op]:
    """With `scope`, only its namespaces, host veths and ports (plan.py)."""
    ops: list[Op] = []
    want_netns = desired.netns
    netns, owned = observed.netns, observed.owned_netns
    veths: AbstractSet[str] = observed.veths.keys()
    ports: Iterable[PortState] = desired.ports
    if scope is not None:
        netns, owned = netns | (want_netns - scope.netns), owned & scope.netns
        veths = veths & scope.links
        ports = [p for p in desired.ports if p.id in scope.ports]
    ops += [CreateNetns(ns) for ns in want_netns - netns]
    ops += [DeleteNetns(ns) for ns in (owned & observed.netns) - want_netns]
    # A desired port's veth is never deleted as stale, even if the port cannot be
    # realised right now: a controller glitch must not tear down a working workload.
    ops += [DeletePort(veth) for veth in sorted(veths - desired.veths.keys())]
    for port in ports:
        ops += _plan_port(desired, port, observed)
    return ops


def _plan_port(desired: Desired, port: PortState, observed: Observed) -> list[Op]:
    ops: list[Op] = []
    subnet = desired.subnets[port.subnet_id]
    netns = desired.port_netns[port.id]
    veth, bridge = names.host_veth_name(port.id), names.bridge_name(subnet.id)
    want = desired_workload(port, subnet, netns, desired.routes[subnet.id])
    host = observed.veths.get(veth)
    have = observed.workloads.get(port.id)
    if port.id in desired.dhcp_ports:  # the workload's DHCP client owns address and routes
        kept = have or WorkloadObs(netns, want.name, want.mac, want.mtu, up=True)
        want = replace(want, addresses=kept.addresses, routes=kept.routes)
    if host is not None and (have is None or (have.netns, have.name) != (netns, want.name)):
        # The pair exists but its workload end is elsewhere (netns or name changed, or
        # moved by hand): recreate, since a veth end cannot be found from the host.
        ops.append(DeletePort(veth, port.id))
        host = have = None
    if host is None:
        ops.append(
            CreatePort(
                port.id,
                veth=veth,
                bridge=bridge,
                netns=netns,
                ifname=want.name,
                mac=want.mac,
                mtu=want.mtu,
            )
        )
        have = WorkloadObs(netns, want.name, want.mac, want.mtu, up=False)
    elif host.master != bridge or host.mtu != want.mtu or not host.up:
        ops.append(ConfigureHostVeth(port.id, veth=veth, bridge=bridge, mtu=want.mtu))
    assert have is not None
    if have == want:
        return ops

    ops.append(
        ConfigurePort(
            port.id,
            netns=netns,
            ifname=want.name,
            mac=want.mac if have.mac != want.mac else None,
            mtu=want.mtu if have.mtu != want.mtu else None,
            up=not have.up,
            del_addresses=tuple(sorted(have.addresses - want.addresses)),
            add_addresses=tuple(sorted(want.addresses - have.addresses)),
            del_routes=tuple(sorted(have.routes - want.routes)),
            add_routes=tuple(sorted(want.routes - have.routes)),
            routes=tuple(sorted(want.routes)),
        )
    )
    return ops
