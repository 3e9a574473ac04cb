"""The host document, validated once per sync into one immutable `Desired` value.

Observe, plan, report and the incremental scope all read the same kernel names, the
same set of realisable ports and the same per-port problems from it, so none of them
re-derives (or could disagree about) what is valid. Pure: no I/O.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from workers.agent import names
from workers.agent.observed import RouteObs
from workers.agent.typed_state import TypedDesired, typed_desired
from workers.protocol import (
    DhcpDnsState,
    HostState,
    LoadBalancerState,
    NetworkAclState,
    PortState,
    ResolverState,
    RouterState,
    SecurityGroupState,
    SubnetState,
)

DEFAULT_STATE_DIR = "/var/lib/vpcd"

DEFAULT_ROUTE = "0.0.0.0/0"


@dataclass(frozen=True)
class Desired:
    """What this host must carry, with everything it cannot carry named and explained."""

    state: HostState
    netns_prefix: str
    problems: Mapping[str, str]  # port id -> why it cannot be realised
    subnets: Mapping[str, SubnetState]  # every subnet in the document, by id
    needed: Mapping[str, SubnetState]  # subnets with a realisable local port
    ports: tuple[PortState, ...]  # realisable ports, in document order
    port_netns: Mapping[str, str]  # realisable port id -> its workload namespace
    routes: Mapping[str, frozenset[RouteObs]]  # needed subnet id -> workload routes
    vteps: frozenset[str]  # every other host's VTEP the document names
    services: Mapping[str, DhcpDnsState]  # DHCP/DNS services to run here, by service token
    resolvers: Mapping[str, ResolverState]  # by subnet id
    dhcp_ports: frozenset[str]  # ports whose workload takes its address by DHCP
    state_dir: str  # where service files and pid files live
    groups: Mapping[str, SecurityGroupState]  # security groups in the document, by id
    filtered: tuple[PortState, ...]  # realisable ports with security groups enforced
    acls: tuple[NetworkAclState, ...]  # network ACLs of the subnets in the document
    external_interface: str | None = None  # the agent's --external-interface
    router_problems: Mapping[str, str] = field(default_factory=dict)  # router id -> why not
    routers: tuple[RouterState, ...] = ()  # realisable routers, in document order
    router_netns: Mapping[str, str] = field(default_factory=dict)  # every document router
    # load balancers whose VIP leg is realisable, and their namespaces
    lbs: Mapping[str, LoadBalancerState] = field(default_factory=dict)
    lb_netns: Mapping[str, str] = field(default_factory=dict)  # load balancer id -> its netns
    udp_down: frozenset[str] = frozenset()  # UDP members the agent's probes took out
    typed: TypedDesired = field(default_factory=TypedDesired)  # flat and routed ports

    @classmethod
    def build(
        cls,
        state: HostState,
        netns_prefix: str = "",
        state_dir: str = DEFAULT_STATE_DIR,
        udp_down: frozenset[str] = frozenset(),
        external_interface: str | None = None,
        physical_interfaces: Mapping[str, str] | None = None,
    ) -> Desired:
        state = with_vip_ports(state)
        problems = port_problems(state, netns_prefix)
        ports = tuple(p for p in state.ports if p.id not in problems)
        services = realisable_services(state)
        r_problems = router_problems(state, external_interface)
        routers = tuple(r for r in state.routers if r.id not in r_problems)
        used = {p.subnet_id for p in ports} | {svc.subnet_id for svc in services.values()}
        used |= {i.subnet_id for r in routers for i in r.interfaces}
        needed = {s.id: s for s in state.subnets if s.id in used}
        vteps = {v for s in state.subnets for v in s.remote_vteps}
        vteps |= {rp.vtep_ip for s in state.subnets for rp in s.remote_ports}
        vteps.discard(state.vtep_ip)
        return cls(
            state=state,
            netns_prefix=netns_prefix,
            problems=MappingProxyType(problems),
            subnets=MappingProxyType({s.id: s for s in state.subnets}),
            needed=MappingProxyType(needed),
            ports=ports,
            port_netns=MappingProxyType(
                {p.id: names.workload_netns(netns_prefix, p.netns) for p in ports}
            ),
            routes=MappingProxyType(
                {sid: frozenset(desired_routes(s)) for sid, s in needed.items()}
            ),
            vteps=frozenset(vteps),
            services=MappingProxyType(services),
            resolvers=MappingProxyType({r.subnet_id: r for r in state.resolvers}),
            dhcp_ports=frozenset(pid for r in state.resolvers for pid in r.dhcp_ports),
            state_dir=state_dir,
            groups=MappingProxyType({g.id: g for g in state.security_groups}),
            filtered=tuple(p for p in ports if p.security_group_ids is not None),
            acls=tuple(state.network_acls),
            external_interface=external_interface,
            router_problems=MappingProxyType(r_problems),
            routers=routers,
            router_netns=MappingProxyType(
                {r.id: names.router_netns(netns_prefix, r.id) for r in state.routers}
            ),
            lbs=MappingProxyType(
                {lb.id: lb for lb in state.load_balancers if lb.vip_port_id not in problems}
            ),
            lb_netns=MappingProxyType(
                {
                    lb.id: names.workload_netns(netns_prefix, names.lb_netns(lb.id))
                    for lb in state.load_balancers
                    if lb.vip_port_id not in problems
                }
            ),
            udp_down=udp_down,
            typed=typed_desired(
                state,
                netns_prefix,
                physical_interfaces or {},
                {
                    (names.workload_netns(netns_prefix, p.netns), p.interface_name): p.id
                    for p in ports
                },
            ),
        )

    @property
    def host(self) -> str:
        return self.state.host

    @property
    def revision(self) -> int:
        return self.state.revision

    @property
    def vtep_ip(self) -> str:
        return self.state.vtep_ip

    @functools.cached_property
    def netns(self) -> frozenset[str]:
        """The namespaces this host keeps: realisable ports' workload namespaces and every
        document router's namespace (one that cannot be realised now is left alone).
        Cached: every planner asks, and at 1000 ports each answer is 1000 names."""
        kept = frozenset(self.port_netns.values()) | frozenset(self.router_netns.values())
        return kept | self.typed.netns

    @functools.cached_property
    def veths(self) -> Mapping[str, str]:
        """Host veth name -> port id, for every port of the document (a port that cannot
        be realised right now keeps its veth all the same)."""
        return MappingProxyType({names.host_veth_name(p.id): p.id for p in self.state.ports})


def router_problems(state: HostState, external_interface: str | None) -> dict[str, str]:
    """Routers that cannot be realised here, with why (the agent leaves them alone).

    One external interface serves one external network: the first (by id) wins it."""
    subnets = {s.id for s in state.subnets}
    networks = sorted(
        {r.external_gateway.external_network_id for r in state.routers if r.external_gateway}
    )
    problems: dict[str, str] = {}
    for r in state.routers:
        missing = [i.subnet_id for i in r.interfaces if i.subnet_id not in subnets]
        gw = r.external_gateway
        if missing:
            problems[r.id] = f"subnet {missing[0]} is not in this host's state"
        elif gw is not None and external_interface is None:
            problems[r.id] = "this host has no external interface (agent --external-interface)"
        elif gw is not None and gw.external_network_id != networks[0]:
            problems[r.id] = (
                f"external interface {external_interface} already serves external network "
                f"{networks[0]}, not {gw.external_network_id}"
            )
    return problems


def realisable_services(state: HostState) -> dict[str, DhcpDnsState]:
    """Services whose subnet the document carries, by token (the lower subnet id keeps a
    token that two ids share, like device names)."""
    subnets = {s.id for s in state.subnets}
    out: dict[str, DhcpDnsState] = {}
    for svc in sorted(state.dhcp_dns, key=lambda x: x.subnet_id):
        if svc.subnet_id in subnets:
            out.setdefault(names.service_token(svc.subnet_id), svc)
    return out


def vip_port(lb: LoadBalancerState) -> PortState:
    """A load balancer's VIP leg is a port like any other: a veth from the subnet's bridge
    into the load balancer's own namespace, with the VIP and (routed) a default route."""
    return PortState(
        id=lb.vip_port_id,
        revision=lb.vip_port_revision,
        subnet_id=lb.subnet_id,
        tenant_id=names.lb_netns(lb.id),  # the namespace is the load balancer's alone
        netns=names.lb_netns(lb.id),
        interface_name=names.LB_VIP_IFNAME,
        mac=lb.mac,
        ip=lb.vip_address,
        prefixlen=lb.prefixlen,
    )


def with_vip_ports(state: HostState) -> HostState:
    """The document with each load balancer's VIP among the ports (reported as ports)."""
    if not state.load_balancers:
        return state
    vips = [vip_port(lb) for lb in state.load_balancers]
    return state.model_copy(update={"ports": [*state.ports, *vips]})


def port_problems(state: HostState, netns_prefix: str = "") -> dict[str, str]:
    """Ports that cannot be realised, with why; planners leave their kernel state alone."""
    subnets = {s.id for s in state.subnets}
    # Names are 48-bit hashes of ids; should two ids ever collide, the lower id keeps it.
    bad_subnets: dict[str, str] = {}
    bridges: dict[str, str] = {}
    for sid in sorted(subnets):
        other = bridges.setdefault(names.bridge_name(sid), sid)
        if other != sid:
            bad_subnets[sid] = f"subnet {sid} has the same device names as subnet {other}"
    problems: dict[str, str] = {}
    reserved = {
        names.workload_netns(netns_prefix, names.lb_netns(lb.id)): lb.vip_port_id
        for lb in state.load_balancers
    }
    seen: dict[tuple[str, str], str] = {}
    owners: dict[str, tuple[str, str]] = {}  # netns -> (tenant, first port)
    veths: dict[str, str] = {}
    for port in sorted(state.ports, key=lambda p: p.id):
        if port.subnet_id not in subnets:
            problems[port.id] = f"subnet {port.subnet_id} is not in this host's state"
            continue
        if port.subnet_id in bad_subnets:
            problems[port.id] = bad_subnets[port.subnet_id]
            continue
        other = veths.setdefault(names.host_veth_name(port.id), port.id)
        if other != port.id:
            problems[port.id] = f"port {port.id} has the same veth name as port {other}"
            continue
        try:
            netns = names.workload_netns(netns_prefix, port.netns)
            names.check_ifname(port.interface_name)
        except ValueError as exc:
            problems[port.id] = str(exc)
            continue
        if names.is_router_netns(netns_prefix, netns):  # never a tenant's leg in a router
            problems[port.id] = f"netns {port.netns} has a router namespace's name"
            continue
        if netns in reserved and reserved[netns] != port.id:
            problems[port.id] = f"netns {netns} is load balancer {netns[-36:]}'s"
            continue
        tenant, first = owners.setdefault(netns, (port.tenant_id, port.id))
        if tenant != port.tenant_id:  # never put one tenant's interface in another's netns
            problems[port.id] = f"netns {netns} holds port {first} of another tenant"
            continue
        key = (netns, port.interface_name)
        if key in seen:
            problems[port.id] = (
                f"interface {port.interface_name} in netns {netns} is already port {seen[key]}'s"
            )
            continue
        seen[key] = port.id
    return problems


def desired_routes(subnet: SubnetState) -> tuple[RouteObs, ...]:
    """Default route when a router serves the subnet, then host routes (which win)."""
    routes: dict[str, str] = {}
    if subnet.routed:
        routes[DEFAULT_ROUTE] = subnet.gateway_ip
    for r in subnet.host_routes:
        routes[str(ipaddress.ip_network(r.destination, strict=False))] = r.nexthop
    return tuple(sorted(RouteObs(d, g) for d, g in routes.items()))
