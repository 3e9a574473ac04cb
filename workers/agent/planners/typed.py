"""Flat and routed ports (DESIGN §4, network types): ops from TypedDesired vs TypedObs.

- routed (Calico-style): a veth with no bridge. Its host end `vpw<token>` is up with
  the underlay MTU, proxy ARP on, and the link-local gateway ROUTED_GATEWAY/32 as its
  address (so the workload's ARP for the gateway is answered even on a host without a
  default route); the host has a /32 route to the port out of it. The workload end has
  the port's MAC and address and a default route via ROUTED_GATEWAY (on-link). Every
  host carrying the subnet has a /32 route per remote port via that host's underlay
  address, and ip_forward on. No encapsulation: the underlay routes the tenant
  addresses, which is why routed CIDRs never overlap (the API's address scopes).
- flat: a macvlan (bridge mode) child of the host interface of the subnet's physical
  network, made straight in the workload namespace with the port's MAC, address and a
  default route via the subnet's gateway on the physical network. macvlan's known
  limit: a child cannot reach its parent's own address (the host), only other hosts,
  other children and the physical segment.

Host routes of ours carry their own protocol number, so stale ones (a port deleted or
moved to another host, a route added by no one) are found and removed, and one deleted
by hand is back at the next sync. A flat port's macvlan goes with its namespace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from workers.agent.desired import Desired
from workers.agent.observed import Observed, Scope
from workers.agent.ops import Op, Phase
from workers.agent.typed_state import (
    ROUTES_TARGET,
    TypedLinkObs,
    TypedPort,
    TypedRoute,
    routed_veth_name,
)
from workers.protocol import ROUTED_GATEWAY

DEFAULT = "0.0.0.0/0"


@dataclass(frozen=True)
class _TypedOp(Op):
    def scope(self) -> Scope:
        """Typed state is observed whole every time; a non-empty scope makes the agent
        observe again after applying."""
        return Scope(links=frozenset({self.target}))


@dataclass(frozen=True)
class _TypedPortOp(_TypedOp):
    port_id: str

    @property
    def target(self) -> str:
        return routed_veth_name(self.port_id)

    @property
    def resource(self) -> tuple[str, str] | None:
        return ("port", self.port_id)


@dataclass(frozen=True)
class DeleteRoutedVeth(_TypedOp):
    """Delete a routed port's host end; the kernel removes the workload end with it."""

    PHASE: ClassVar[Phase] = Phase.DELETE_PORT
    veth: str

    @property
    def target(self) -> str:
        return self.veth


@dataclass(frozen=True)
class CreateRoutedPort(_TypedPortOp):
    PHASE: ClassVar[Phase] = Phase.CREATE_PORT
    veth: str = ""
    netns: str = ""
    ifname: str = ""
    mac: str = ""
    mtu: int = 0


@dataclass(frozen=True)
class CreateFlatPort(_TypedPortOp):
    PHASE: ClassVar[Phase] = Phase.CREATE_PORT
    parent: str = ""
    netns: str = ""
    ifname: str = ""
    mac: str = ""
    mtu: int = 0


@dataclass(frozen=True)
class ConfigureRoutedHost(_TypedPortOp):
    """The host end: MTU, up, proxy ARP, the link-local gateway address (idempotent)."""

    PHASE: ClassVar[Phase] = Phase.CONFIGURE_HOST_VETH
    veth: str = ""
    mtu: int = 0


@dataclass(frozen=True)
class ConfigureTypedWorkload(_TypedPortOp):
    """The workload end: MAC, MTU, up, addresses and our routes. After any address
    removal every route is added again (the kernel drops routes through it)."""

    PHASE: ClassVar[Phase] = Phase.CONFIGURE_PORT
    netns: str = ""
    ifname: str = ""
    mac: str | None = None
    mtu: int | None = None
    up: bool = False
    del_addresses: tuple[str, ...] = ()
    add_addresses: tuple[str, ...] = ()
    del_routes: tuple[TypedRoute, ...] = ()
    add_routes: tuple[TypedRoute, ...] = ()
    routes: tuple[TypedRoute, ...] = ()


@dataclass(frozen=True)
class SetTypedRoutes(_TypedOp):
    """The host's routed-port routes: /32s to local ports and via remote hosts."""

    PHASE: ClassVar[Phase] = Phase.CONFIGURE_ROUTER  # after the veths they go out of
    delete: tuple[TypedRoute, ...] = ()
    add: tuple[TypedRoute, ...] = ()
    forwarding: bool = False

    @property
    def target(self) -> str:
        return ROUTES_TARGET


def desired_workload(tp: TypedPort) -> TypedLinkObs:
    port, net = tp.port, tp.network
    name = port.interface_name
    routes: dict[str, TypedRoute] = {}
    if tp.routed:
        routes[DEFAULT] = TypedRoute(DEFAULT, ROUTED_GATEWAY, name)
    else:
        if net.gateway_ip:
            routes[DEFAULT] = TypedRoute(DEFAULT, net.gateway_ip, name)
        for r in net.host_routes:
            routes[r.destination] = TypedRoute(r.destination, r.nexthop, name)
    return TypedLinkObs(
        name=name,
        kind="veth" if tp.routed else "macvlan",
        mac=port.mac.lower(),
        mtu=net.mtu,
        up=True,
        addresses=frozenset({f"{port.ip}/{port.prefixlen}"}),
        routes=frozenset(routes.values()),
        netns=tp.netns,
    )


def desired_host_end(tp: TypedPort) -> TypedLinkObs:
    return TypedLinkObs(
        name=routed_veth_name(tp.port.id),
        kind="veth",
        mac="",
        mtu=tp.network.mtu,
        up=True,
        addresses=frozenset({f"{ROUTED_GATEWAY}/32"}),
        proxy_arp=True,
    )


def _same_host_end(have: TypedLinkObs, want: TypedLinkObs) -> bool:
    return (have.mtu, have.up, have.proxy_arp, have.addresses) == (
        want.mtu, want.up, want.proxy_arp, want.addresses
    )  # fmt: skip


def plan_typed(desired: Desired, observed: Observed) -> list[Op]:
    typed, obs = desired.typed, observed.typed
    ops: list[Op] = []
    keep = {routed_veth_name(p.port.id) for p in typed.ports if p.routed}
    keep |= {routed_veth_name(pid) for pid in typed.problems}  # never torn down by a glitch
    ops += [DeleteRoutedVeth(v) for v in sorted(set(obs.veths) - keep)]
    for tp in typed.ports:
        ops += _plan_port(tp, obs.veths, obs.workloads.get(tp.port.id))
    want, have = typed.host_routes, obs.host_routes
    forwarding = typed.routed and not obs.forwarding
    if want != have or forwarding:
        ops.append(
            SetTypedRoutes(
                delete=tuple(sorted(have - want)),
                add=tuple(sorted(want - have)),
                forwarding=forwarding,
            )
        )
    return ops


def _plan_port(
    tp: TypedPort, veths: Mapping[str, TypedLinkObs], have: TypedLinkObs | None
) -> list[Op]:
    ops: list[Op] = []
    pid = tp.port.id
    want = desired_workload(tp)
    if tp.routed:
        veth = routed_veth_name(pid)
        host = veths.get(veth)
        if host is not None and (have is None or have.kind != "veth"):
            ops.append(DeleteRoutedVeth(veth))  # its workload end went elsewhere: recreate
            host = have = None
        if host is None:
            ops.append(CreateRoutedPort(pid, veth, tp.netns, want.name, want.mac, want.mtu))
            have = TypedLinkObs(want.name, "veth", want.mac, want.mtu, False, netns=tp.netns)
        host_want = desired_host_end(tp)
        if host is None or not _same_host_end(host, host_want):
            ops.append(ConfigureRoutedHost(pid, veth, host_want.mtu))
    elif have is None or have.kind != "macvlan":
        # A same-named interface of another kind is not ours: creating fails, loudly.
        ops.append(CreateFlatPort(pid, tp.parent, tp.netns, want.name, want.mac, want.mtu))
        have = TypedLinkObs(want.name, "macvlan", want.mac, want.mtu, False, netns=tp.netns)
    assert have is not None
    if have == want:
        return ops
    ops.append(
        ConfigureTypedWorkload(
            pid,
            netns=tp.netns,
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
