"""Routers (DESIGN §4): a namespace per router, one veth leg per attached subnet, a
gateway leg on the external network's bridge, ip_forward, and static routes as a diff.

A leg's host end (`vpl…`) sits on the subnet's bridge (the L2 planner realises the
subnet on this host because a router leg needs it: Desired.needed); its router end
(`vpi…`) carries the subnet's gateway IP with the interface port's MAC, MTU 1450. The
gateway leg's host end (`vpg…`) sits on the external network's bridge (`vpe…`), which
enslaves the agent's external interface; its router end (`vpo…`) holds the router's
external IP, every floating IP as a /32, and the default route via the external
gateway. NAT lives in planners/nat.py. A router namespace that is no longer desired is
removed whole by the ports planner (it is in the ownership ledger), legs and all.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import ClassVar

from workers.agent import names
from workers.agent.desired import DEFAULT_ROUTE, Desired
from workers.agent.observed import Observed, RouterLinkObs, RouterObs, RouterRouteObs, Scope
from workers.agent.ops import Op, Phase
from workers.protocol import RouterState

EXTERNAL_MTU = 1500  # the external network is a plain Ethernet segment, not VXLAN
FORWARDING = "net.ipv4.ip_forward"


@dataclass(frozen=True)
class _RouterOp(Op):
    router_id: str | None  # None: the object belongs to no desired router (stale)

    @property
    def resource(self) -> tuple[str, str] | None:
        return ("router", self.router_id) if self.router_id else None


@dataclass(frozen=True)
class DeleteLeg(_RouterOp):
    """Delete a leg's host end; the kernel removes its router end with it."""

    PHASE: ClassVar[Phase] = Phase.DELETE_LEG
    veth: str = ""

    @property
    def target(self) -> str:
        return self.veth


@dataclass(frozen=True)
class DeleteExtBridge(Op):
    PHASE: ClassVar[Phase] = Phase.DELETE_EXT_BRIDGE
    name: str

    @property
    def target(self) -> str:
        return self.name


@dataclass(frozen=True)
class EnsureExtBridge(_RouterOp):
    """The external network's bridge exists and is up, with `interface` enslaved and up."""

    PHASE: ClassVar[Phase] = Phase.ENSURE_EXT_BRIDGE
    name: str = ""
    interface: str = ""

    @property
    def target(self) -> str:
        return self.name

    def scope(self) -> Scope:
        return Scope(links=frozenset({self.name, self.interface}))


@dataclass(frozen=True)
class CreateLeg(_RouterOp):
    """One RTM_NEWLINK: host end on `bridge`, router end straight in `netns`."""

    PHASE: ClassVar[Phase] = Phase.CREATE_LEG
    veth: str = ""
    bridge: str = ""
    netns: str = ""
    ifname: str = ""
    mac: str | None = None
    mtu: int = 0

    @property
    def target(self) -> str:
        return self.veth

    def scope(self) -> Scope:
        return Scope(links=frozenset({self.veth}), routers=frozenset({self.netns}))


@dataclass(frozen=True)
class ConfigureLegHost(_RouterOp):
    PHASE: ClassVar[Phase] = Phase.CONFIGURE_LEG_HOST
    veth: str = ""
    bridge: str = ""
    mtu: int = 0

    @property
    def target(self) -> str:
        return self.veth


@dataclass(frozen=True)
class ConfigureRouterLink(_RouterOp):
    """Converge a router-side interface: MAC, MTU, up, addresses (None: already right)."""

    PHASE: ClassVar[Phase] = Phase.CONFIGURE_ROUTER_LINK
    netns: str = ""
    ifname: str = ""
    mac: str | None = None
    mtu: int | None = None
    up: bool = False
    del_addresses: tuple[str, ...] = ()
    add_addresses: tuple[str, ...] = ()

    @property
    def target(self) -> str:
        return f"{self.netns}/{self.ifname}"

    def scope(self) -> Scope:
        return Scope(routers=frozenset({self.netns}))


@dataclass(frozen=True)
class ConfigureRouter(_RouterOp):
    """ip_forward on, and the routes as a diff (after the links: routes need them)."""

    PHASE: ClassVar[Phase] = Phase.CONFIGURE_ROUTER
    netns: str = ""
    forwarding: bool = False
    del_routes: tuple[RouterRouteObs, ...] = ()
    add_routes: tuple[RouterRouteObs, ...] = ()

    @property
    def target(self) -> str:
        return self.netns

    def scope(self) -> Scope:
        return Scope(routers=frozenset({self.netns}))


@dataclass(frozen=True)
class WantLink:
    """A router-side interface as it should be, and its host end."""

    name: str
    mac: str | None
    mtu: int
    addresses: frozenset[str]
    peer: str
    bridge: str


def want_links(desired: Desired, r: RouterState) -> list[WantLink]:
    out = []
    for leg in r.interfaces:
        subnet = desired.subnets[leg.subnet_id]
        out.append(
            WantLink(
                name=names.router_leg_name(leg.port_id),
                mac=leg.mac.lower(),
                mtu=subnet.mtu,
                addresses=frozenset({f"{leg.gateway_ip}/{leg.prefixlen}"}),
                peer=names.router_host_leg_name(leg.port_id),
                bridge=names.bridge_name(leg.subnet_id),
            )
        )
    gw = r.external_gateway
    if gw is not None:
        plen = ipaddress.ip_network(gw.cidr, strict=False).prefixlen
        addresses = {f"{gw.external_ip}/{plen}"} | {f"{f.address}/32" for f in r.floating_ips}
        out.append(
            WantLink(
                name=names.router_gateway_name(r.id),
                mac=None,
                mtu=EXTERNAL_MTU,
                addresses=frozenset(addresses),
                peer=names.gateway_name(r.id),
                bridge=names.external_bridge_name(gw.external_network_id),
            )
        )
    return out


def want_routes(desired: Desired, r: RouterState) -> frozenset[RouterRouteObs]:
    """The default route via the external gateway, then static routes by the leg whose
    subnet holds their nexthop (a nexthop on no leg's subnet is left out: the API
    refuses such routes, and the kernel would too)."""
    routes: dict[str, RouterRouteObs] = {}
    gw = r.external_gateway
    if gw is not None:
        dev = names.router_gateway_name(r.id)
        routes[DEFAULT_ROUTE] = RouterRouteObs(DEFAULT_ROUTE, gw.gateway_ip, dev)
    legs = [
        (ipaddress.ip_network(desired.subnets[leg.subnet_id].cidr), leg) for leg in r.interfaces
    ]
    for route in r.routes:
        hop = ipaddress.ip_address(route.nexthop)
        dest = str(ipaddress.ip_network(route.destination, strict=False))
        for net, leg in legs:
            if hop in net:
                routes[dest] = RouterRouteObs(
                    dest, route.nexthop, names.router_leg_name(leg.port_id)
                )
                break
    return frozenset(routes.values())


def plan_router(desired: Desired, observed: Observed) -> list[Op]:
    ops: list[Op] = []
    keep: set[str] = set()
    for r in desired.state.routers:  # a router that cannot be realised keeps its legs
        keep |= {names.router_host_leg_name(i.port_id) for i in r.interfaces}
        if r.external_gateway is not None:
            keep.add(names.gateway_name(r.id))
    ops += [DeleteLeg(None, veth=v) for v in sorted(set(observed.legs) - keep)]
    want_bridges = {
        names.external_bridge_name(r.external_gateway.external_network_id): r.id
        for r in desired.routers
        if r.external_gateway is not None
    }
    ops += [DeleteExtBridge(b) for b in sorted(set(observed.ext_bridges) - set(want_bridges))]
    for bridge, rid in sorted(want_bridges.items()):
        have = observed.ext_bridges.get(bridge)
        ext = observed.external
        assert desired.external_interface is not None  # else the router has a problem
        if have is None or not have.up or ext is None or ext.master != bridge or not ext.up:
            ops.append(EnsureExtBridge(rid, name=bridge, interface=desired.external_interface))
    for r in desired.routers:
        ops += _plan_one(desired, r, observed)
    return ops


def _plan_one(desired: Desired, r: RouterState, observed: Observed) -> list[Op]:
    ops: list[Op] = []
    ns = desired.router_netns[r.id]
    obs = observed.routers.get(ns) or RouterObs(ns)
    fresh = ns not in observed.netns
    readd_routes = fresh
    for want in want_links(desired, r):
        host = observed.legs.get(want.peer)
        have = None if fresh else obs.links.get(want.name)
        if host is not None and (have is None or have.peer != want.peer):
            ops.append(DeleteLeg(r.id, veth=want.peer))  # a broken pair: make it anew
            host = have = None
        if host is None:
            ops.append(
                CreateLeg(
                    r.id,
                    veth=want.peer,
                    bridge=want.bridge,
                    netns=ns,
                    ifname=want.name,
                    mac=want.mac,
                    mtu=want.mtu,
                )
            )
            have = RouterLinkObs(want.name, want.mac or "", want.mtu, False, want.peer)
            readd_routes = True
        elif host.master != want.bridge or host.mtu != want.mtu or not host.up:
            ops.append(ConfigureLegHost(r.id, veth=want.peer, bridge=want.bridge, mtu=want.mtu))
        assert have is not None
        mac = want.mac if want.mac is not None and have.mac != want.mac else None
        dropped = tuple(sorted(have.addresses - want.addresses))
        added = tuple(sorted(want.addresses - have.addresses))
        readd_routes = readd_routes or bool(dropped) or not have.up
        if mac or have.mtu != want.mtu or not have.up or dropped or added:
            ops.append(
                ConfigureRouterLink(
                    r.id,
                    netns=ns,
                    ifname=want.name,
                    mac=mac,
                    mtu=want.mtu if have.mtu != want.mtu else None,
                    up=not have.up,
                    del_addresses=dropped,
                    add_addresses=added,
                )
            )
    routes = want_routes(desired, r)
    have_routes = frozenset() if fresh else obs.routes
    stale = tuple(sorted(have_routes - routes))
    # A new link or a removed address takes routes through it down: re-add them all.
    new = tuple(sorted(routes if readd_routes else routes - have_routes))
    forwarding = fresh or not obs.forwarding
    if forwarding or stale or new:
        ops.append(
            ConfigureRouter(r.id, netns=ns, forwarding=forwarding, del_routes=stale, add_routes=new)
        )
    return ops
