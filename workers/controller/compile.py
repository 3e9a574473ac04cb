"""Compile one host's desired state from DB rows (DESIGN §2), one function per section.

`build()` is a pure function of named `Inputs`, so it is unit-tested without a database;
`compile_host()` reads the inputs, builds the sections the host supports and stamps the
document's revision. A section the host does not support is still built, so that the
resources it would carry can be marked `error` (mixed-version rollouts).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from models import ExternalNetwork, FloatingIp, Host, Port, Router, RouterInterface, Subnet, Vpc
from models import desired as q
from models import hoststate as hs
from workers.controller.lb_section import LbInputs, load_balancers_carry, load_balancers_section
from workers.protocol import (
    SECTIONS,
    DhcpDnsState,
    DhcpLease,
    DnsRecord,
    ExternalGatewayState,
    FloatingIpState,
    HostState,
    PortState,
    RemotePort,
    ResolverState,
    Route,
    RouterInterfaceState,
    RouterState,
    SubnetState,
)


@dataclass(frozen=True)
class Inputs:
    """Everything a host's document is built from; unit tests fill it by hand."""

    host: str
    vtep_ip: str
    revision: int = 0
    ports: Sequence[Port] = ()  # workload ports on this host
    subnets: Sequence[Subnet] = ()  # every subnet the host carries
    routed: frozenset[str] = frozenset()  # subnets a router serves
    remote: Sequence[tuple[Port, str]] = ()  # their ports on other hosts, with the VTEP
    routers: Sequence[Router] = ()  # routers scheduled on this host
    interfaces: Sequence[tuple[RouterInterface, Port, Subnet]] = ()  # their legs
    external_networks: Mapping[str, ExternalNetwork] = field(default_factory=dict)
    floating_ips: Sequence[tuple[FloatingIp, Port]] = ()  # associated through them
    services: Sequence[tuple[Subnet, Port, Vpc]] = ()  # DHCP/DNS services on this host
    leases: Sequence[Port] = ()  # user ports of their subnets
    names: Sequence[tuple[str, Port]] = ()  # named ports of their VPCs, with the VPC id
    # subnets of local workload ports -> (their service's address, their VPC's domain)
    resolvers: Mapping[str, tuple[str | None, str]] = field(default_factory=dict)
    lb: LbInputs = field(default_factory=LbInputs)  # load balancers scheduled on this host, whole


def _prefixlen(cidr: str) -> int:
    return ipaddress.ip_network(cidr).prefixlen


def subnets_section(i: Inputs) -> list[SubnetState]:
    remote_by_subnet: dict[str, list[tuple[Port, str]]] = {}
    for port, vtep in i.remote:
        remote_by_subnet.setdefault(port.subnet_id, []).append((port, vtep))
    out = []
    for s in sorted(i.subnets, key=lambda s: s.id):
        others = remote_by_subnet.get(s.id, [])
        out.append(
            SubnetState(
                id=s.id,
                revision=s.revision,
                vni=s.vni,
                cidr=s.cidr,
                gateway_ip=s.gateway_ip,
                routed=s.id in i.routed,
                host_routes=[Route(**r) for r in s.host_routes],
                remote_vteps=sorted({v for _, v in others if v}),
                remote_ports=sorted(
                    (
                        RemotePort(mac=p.mac_address.lower(), ip=p.ip_address, vtep_ip=v)
                        for p, v in others
                    ),
                    key=lambda r: (r.mac, r.vtep_ip),
                ),
            )
        )
    return out


def ports_section(i: Inputs) -> list[PortState]:
    prefix = {s.id: _prefixlen(s.cidr) for s in i.subnets}
    return [
        PortState(
            id=p.id,
            revision=p.revision,
            subnet_id=p.subnet_id,
            tenant_id=p.tenant_id,
            netns=p.netns or "",
            interface_name=p.interface_name,
            mac=p.mac_address.lower(),
            ip=p.ip_address,
            prefixlen=prefix[p.subnet_id],
        )
        for p in sorted(i.ports, key=lambda p: p.id)
        if p.subnet_id in prefix
    ]


def _gateway(i: Inputs, r: Router) -> ExternalGatewayState | None:
    network = i.external_networks.get(r.external_network_id or "")
    if network is None or r.external_ip is None:
        return None
    return ExternalGatewayState(
        external_network_id=network.id,
        cidr=network.cidr,
        gateway_ip=network.gateway_ip,
        external_ip=r.external_ip,
    )


def routers_section(i: Inputs) -> list[RouterState]:
    out = []
    for r in sorted(i.routers, key=lambda r: r.id):
        legs = [
            RouterInterfaceState(
                subnet_id=iface.subnet_id,
                port_id=port.id,
                port_revision=port.revision,
                gateway_ip=port.ip_address,
                prefixlen=_prefixlen(subnet.cidr),
                mac=port.mac_address.lower(),
            )
            for iface, port, subnet in i.interfaces
            if iface.router_id == r.id
        ]
        fips = [
            FloatingIpState(
                id=f.id, revision=f.revision, address=f.address, fixed_ip=p.ip_address, port_id=p.id
            )
            for f, p in i.floating_ips
            if f.router_id == r.id
        ]
        out.append(
            RouterState(
                id=r.id,
                revision=r.revision,
                interfaces=sorted(legs, key=lambda x: x.subnet_id),
                external_gateway=_gateway(i, r),
                enable_snat=r.enable_snat,
                routes=[Route(**x) for x in r.routes],
                floating_ips=sorted(fips, key=lambda x: x.id),
            )
        )
    return out


def _fqdn(label: str, domain: str) -> str:
    return f"{label}.{domain}".lower()


def dhcp_dns_section(i: Inputs) -> list[DhcpDnsState]:
    leases: dict[str, list[DhcpLease]] = {}
    for p in i.leases:
        hostname = p.dns_name.lower() if p.dns_name else None
        leases.setdefault(p.subnet_id, []).append(
            DhcpLease(mac=p.mac_address.lower(), ip=p.ip_address, hostname=hostname)
        )
    named: dict[str, list[Port]] = {}
    for vpc_id, p in i.names:
        named.setdefault(vpc_id, []).append(p)
    out = []
    for subnet, port, vpc in sorted(i.services, key=lambda x: x[0].id):
        records = {
            DnsRecord(name=_fqdn(p.dns_name, vpc.dns_domain), ip=p.ip_address)
            for p in named.get(vpc.id, [])
            if p.dns_name
        }
        out.append(
            DhcpDnsState(
                subnet_id=subnet.id,
                revision=subnet.revision,
                port_id=port.id,
                port_revision=port.revision,
                mac=port.mac_address.lower(),
                address=port.ip_address,
                cidr=subnet.cidr,
                router=subnet.gateway_ip if subnet.id in i.routed else None,
                host_routes=[Route(**r) for r in subnet.host_routes],
                domain=vpc.dns_domain.lower(),
                upstreams=list(subnet.dns_nameservers),
                leases=sorted(leases.get(subnet.id, []), key=lambda x: x.mac),
                hosts=sorted(records, key=lambda r: (r.name, r.ip)),
            )
        )
    return out


def resolvers_section(i: Inputs) -> list[ResolverState]:
    out = []
    for sid in sorted({p.subnet_id for p in i.ports} & i.resolvers.keys()):
        nameserver, domain = i.resolvers[sid]
        dhcp_ports = [p.id for p in i.ports if p.subnet_id == sid and p.ip_config == "dhcp"]
        out.append(
            ResolverState(
                subnet_id=sid,
                nameserver=nameserver,
                domain=domain.lower(),
                dhcp_ports=sorted(dhcp_ports),
            )
        )
    return out


@dataclass(frozen=True)
class Section:
    """A document section: how it is built, and which resources (kind -> ids) it carries."""

    build: Callable[[Inputs], list[Any]]
    carries: Callable[[list[Any]], dict[str, set[str]]]


def _routers_carry(routers: list[RouterState]) -> dict[str, set[str]]:
    return {
        "router": {r.id for r in routers},
        "port": {i.port_id for r in routers for i in r.interfaces},
        "floating_ip": {f.id for r in routers for f in r.floating_ips},
    }


COMPILERS: dict[str, Section] = {
    "subnets": Section(subnets_section, lambda docs: {"subnet": {d.id for d in docs}}),
    "ports": Section(ports_section, lambda docs: {"port": {d.id for d in docs}}),
    "routers": Section(routers_section, _routers_carry),
    "dhcp_dns": Section(dhcp_dns_section, lambda docs: {"port": {d.port_id for d in docs}}),
    "resolvers": Section(resolvers_section, lambda docs: {}),
    "load_balancers": Section(lambda i: load_balancers_section(i.lb), load_balancers_carry),
}


@dataclass(frozen=True)
class Compiled:
    """A host's stamped document, the sections it gets, and the resources it cannot carry
    for want of a section (kind -> ids)."""

    state: HostState
    sections: tuple[str, ...]
    unsent: dict[str, set[str]]

    def wire(self) -> dict[str, Any]:
        return self.state.wire(self.sections)


def build(inputs: Inputs, sections: Collection[str] = SECTIONS) -> HostState:
    """The document with these sections filled (the others empty)."""
    return HostState(
        host=inputs.host,
        revision=inputs.revision,
        vtep_ip=inputs.vtep_ip,
        **{name: COMPILERS[name].build(inputs) for name in SECTIONS if name in sections},
    )


def digest(state: HostState, sections: Collection[str] = SECTIONS) -> str:
    body = state.wire(sections)
    body.pop("revision")
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def read_inputs(session: Session, host: Host, sections: Collection[str]) -> Inputs:
    """The rows of `host`'s document. Router legs add their subnets only where the host
    supports routers: elsewhere the router is in error, and the subnet needs no bridge."""
    ports = q.local_ports(session, host.name)
    routers = q.routers_on_host(session, host.name)
    router_ids = {r.id for r in routers}
    interfaces = q.router_interfaces(session, router_ids)
    services = q.dhcp_services(session, host.name)
    service_subnets = {s.id for s, _, _ in services}
    workload_subnets = {p.subnet_id for p in ports}
    subnet_ids = set(workload_subnets)
    if "routers" in sections:
        subnet_ids |= {i.subnet_id for i, _, _ in interfaces}
    if "dhcp_dns" in sections:
        subnet_ids |= service_subnets
    lbs = q.load_balancers_on_host(session, host.name)
    if "load_balancers" in sections:  # the VIP legs plug into their subnets' bridges
        subnet_ids |= {p.subnet_id for p in lbs.vips.values()}
    return Inputs(
        host=host.name,
        vtep_ip=host.vtep_ip,
        ports=ports,
        subnets=q.subnets_by_id(session, subnet_ids),
        routed=frozenset(q.routed_subnets(session, subnet_ids | service_subnets)),
        remote=q.remote_ports(session, subnet_ids, host.name),
        routers=routers,
        interfaces=interfaces,
        external_networks=q.external_networks(
            session, {r.external_network_id for r in routers if r.external_network_id}
        ),
        floating_ips=q.router_floating_ips(session, router_ids),
        services=services,
        leases=q.user_ports_of(session, service_subnets),
        names=q.named_ports(session, {v.id for _, _, v in services}),
        resolvers=q.resolvers(session, workload_subnets),
        lb=LbInputs(**lbs._asdict()),
    )


def compile_host(session: Session, host: str) -> Compiled | None:
    """The host's document, stamped; None if the host has not registered yet."""
    row = hs.host_by_name(session, host)
    if row is None:
        return None
    sections = tuple(s for s in SECTIONS if s in row.sections)
    hs.serialise_compiles(session, host)  # before reading any row the document is built from
    inputs = read_inputs(session, row, sections)
    state = build(inputs, sections)
    unsent: dict[str, set[str]] = {}
    for name in SECTIONS:
        if name not in sections:
            for kind, ids in COMPILERS[name].carries(COMPILERS[name].build(inputs)).items():
                unsent.setdefault(kind, set()).update(ids)
    revision = hs.stamp(session, host, digest(state, sections))
    return Compiled(state.model_copy(update={"revision": revision}), sections, unsent)
