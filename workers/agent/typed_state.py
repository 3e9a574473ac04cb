"""Flat and routed ports (DESIGN §4, network types): what the document asks of this host
(`TypedDesired`, validated once, pure) and what the kernel holds of it (`TypedObs`).

Kept apart from desired.py/observed.py so the VXLAN domains never see these ports: a
typed port has no bridge, so the L2 and ports planners must not touch it. Observation
of typed state is always whole (a handful of links and routes), so an incremental sync
and the re-observation after apply both see all of it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from workers.agent import names
from workers.protocol import HostState, PortState, TypedNetworkState

ROUTED_VETH = "w"  # `vpw` + token: a routed port's host end (not in OWNED_LINK_RE)
PROXY_ARP = "net.ipv4.conf.{}.proxy_arp"
IP_FORWARD = "net.ipv4.ip_forward"


def routed_veth_name(port_id: str) -> str:
    return f"{names.PREFIX}{ROUTED_VETH}{names.service_token(port_id)}"


ROUTES_TARGET = "vpw-routes"  # the host's typed routes, as one op target


def touches_typed(links: Iterable[str]) -> bool:
    """Whether a scope's link names include a typed op's target."""
    return any(n == ROUTES_TARGET or is_routed_veth(n) for n in links)


def is_routed_veth(name: str) -> bool:
    head = names.PREFIX + ROUTED_VETH
    return name.startswith(head) and names.is_service_token(name[len(head) :])


@dataclass(frozen=True, order=True)
class TypedRoute:
    """A route of ours: `device` is set for routes out of a named interface (a routed
    port's /32 on the host, the workload's link-local default), "" for routes via a
    remote host's underlay address (the kernel picks the interface)."""

    destination: str
    gateway: str = ""
    device: str = ""


@dataclass(frozen=True)
class TypedPort:
    port: PortState
    network: TypedNetworkState
    netns: str  # the workload namespace (host prefix + the port's netns)
    parent: str = ""  # flat: the host interface of its physical network

    @property
    def routed(self) -> bool:
        return self.network.network_type == "routed"


@dataclass(frozen=True)
class TypedDesired:
    networks: tuple[TypedNetworkState, ...] = ()
    ports: tuple[TypedPort, ...] = ()  # realisable ones
    problems: Mapping[str, str] = field(default_factory=dict)  # port id -> why not
    host_routes: frozenset[TypedRoute] = frozenset()  # routed: local /32s and remote ones

    @property
    def netns(self) -> frozenset[str]:
        return frozenset(p.netns for p in self.ports)

    @property
    def routed(self) -> bool:
        return any(p.routed for p in self.ports) or any(r.gateway for r in self.host_routes)


@dataclass(frozen=True)
class TypedLinkObs:
    name: str
    kind: str | None
    mac: str
    mtu: int
    up: bool
    addresses: frozenset[str] = frozenset()
    routes: frozenset[TypedRoute] = frozenset()  # workload ends: our routes through it
    proxy_arp: bool = False  # host ends of routed ports
    netns: str = ""  # workload ends: the namespace it was found in


@dataclass(frozen=True)
class TypedObs:
    veths: Mapping[str, TypedLinkObs] = field(default_factory=dict)  # routed host ends
    workloads: Mapping[str, TypedLinkObs] = field(default_factory=dict)  # by port id
    host_routes: frozenset[TypedRoute] = frozenset()
    forwarding: bool = False
    read: bool = True  # False: a scoped observation skipped it (the cached one stands)


def typed_desired(
    state: HostState,
    netns_prefix: str,
    physical: Mapping[str, str],
    taken: Mapping[tuple[str, str], str],
) -> TypedDesired:
    """Validate the typed_networks section. `taken` maps (workload netns, ifname) of the
    VXLAN ports to their id: a typed port never takes another port's interface."""
    problems: dict[str, str] = {}
    ports: list[TypedPort] = []
    seen = dict(taken)
    routes: set[TypedRoute] = set()
    for net in state.typed_networks:
        parent = physical.get(net.physical_network or "", "")
        for port in net.ports:
            why = _problem(port, net, netns_prefix, parent, seen)
            if why is not None:
                problems[port.id] = why
                continue
            netns = names.workload_netns(netns_prefix, port.netns)
            seen[(netns, port.interface_name)] = port.id
            ports.append(TypedPort(port, net, netns, parent))
            if net.network_type == "routed":
                routes.add(TypedRoute(f"{port.ip}/32", "", routed_veth_name(port.id)))
        if net.network_type == "routed":
            routes |= {
                TypedRoute(f"{r.ip}/32", r.vtep_ip)
                for r in net.remote_ports
                if r.vtep_ip != state.vtep_ip
            }
    return TypedDesired(tuple(state.typed_networks), tuple(ports), problems, frozenset(routes))


def _problem(
    port: PortState,
    net: TypedNetworkState,
    prefix: str,
    parent: str,
    seen: Mapping[tuple[str, str], str],
) -> str | None:
    try:
        netns = names.workload_netns(prefix, port.netns)
        names.check_ifname(port.interface_name)
        ipaddress.ip_address(port.ip)
    except ValueError as exc:
        return str(exc)
    if names.is_router_netns(prefix, netns):
        return f"netns {port.netns} has a router namespace's name"
    other = seen.get((netns, port.interface_name))
    if other is not None:
        return f"interface {port.interface_name} in netns {netns} is already port {other}'s"
    if net.network_type == "flat":
        if not parent:
            return (
                f"physical network {net.physical_network} has no interface on this host "
                "(agent --physical-interface NAME=IFACE)"
            )
        if net.segmentation_id is not None:
            return f"VLAN {net.segmentation_id} on a flat network is not supported by this agent"
    return None
