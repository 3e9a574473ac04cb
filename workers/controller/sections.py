"""The sections of a host's document (DESIGN §2): one pure function per section, of named
`Inputs`, and the resources (kind -> ids) each section carries."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from models import (
    ExternalNetwork,
    FloatingIp,
    NetworkAcl,
    NetworkAclEntry,
    Port,
    Router,
    RouterInterface,
    SecurityGroup,
    SecurityGroupRule,
    Subnet,
    Vpc,
)
from models.desired import LocalPortRow, PortName, RemotePortRow
from workers.controller import typed
from workers.controller.lb_section import LbInputs, load_balancers_carry, load_balancers_section
from workers.controller.remotes import SubnetRemotes, remotes_of
from workers.protocol import (
    DhcpDnsState,
    DhcpLease,
    DnsRecord,
    ExternalGatewayState,
    FloatingIpState,
    NetworkAclEntryState,
    NetworkAclState,
    PortState,
    ResolverState,
    Route,
    RouterInterfaceState,
    RouterState,
    SecurityGroupRuleState,
    SecurityGroupState,
    SubnetState,
)


@dataclass(frozen=True)
class Inputs:
    """Everything a host's document is built from; unit tests fill it by hand."""

    host: str
    vtep_ip: str
    revision: int = 0
    ports: Sequence[Port | LocalPortRow] = ()  # workload ports on this host
    subnets: Sequence[Subnet] = ()  # every subnet the host carries
    routed: frozenset[str] = frozenset()  # subnets a router serves
    # their ports on other hosts, with the VTEP
    remote: Sequence[tuple[Port | RemotePortRow, str]] = ()
    # or the same per subnet, shared by a batch's hosts (each host's own ports left out)
    remotes: Mapping[str, SubnetRemotes] | None = field(default=None, compare=False)
    # items a batch's documents share, built once (the same object in every document)
    shared: dict[Any, Any] | None = field(default=None, compare=False)
    routers: Sequence[Router] = ()  # routers scheduled on this host
    interfaces: Sequence[tuple[RouterInterface, Port, Subnet]] = ()  # their legs
    external_networks: Mapping[str, ExternalNetwork] = field(default_factory=dict)
    floating_ips: Sequence[tuple[FloatingIp, Port]] = ()  # associated through them
    services: Sequence[tuple[Subnet, Port, Vpc]] = ()  # DHCP/DNS services on this host
    leases: Sequence[PortName] = ()  # user ports of their subnets
    names: Sequence[tuple[str, PortName]] = ()  # named ports of their VPCs, with the VPC id
    # subnets of local workload ports -> (their service's address, their VPC's domain)
    resolvers: Mapping[str, tuple[str | None, str]] = field(default_factory=dict)
    port_groups: Mapping[str, Sequence[str]] = field(default_factory=dict)  # local port -> groups
    groups: Sequence[SecurityGroup] = ()  # groups of local ports, and the remote groups they name
    rules: Sequence[SecurityGroupRule] = ()  # the rules of the local ports' groups
    members: Mapping[str, Sequence[str]] = field(default_factory=dict)  # remote group -> IPs
    acls: Sequence[NetworkAcl] = ()  # the ACLs of the subnets the host carries
    acl_entries: Sequence[NetworkAclEntry] = ()  # their entries
    lb: LbInputs = field(default_factory=LbInputs)  # load balancers scheduled on this host, whole
    typed_subnets: Sequence[Subnet] = ()  # flat and routed subnets of local ports
    typed_ports: Sequence[Port | LocalPortRow] = ()  # local workload ports on them (not in `ports`)


def _prefixlen(cidr: str) -> int:
    return ipaddress.ip_network(cidr).prefixlen


def subnets_section(i: Inputs) -> list[SubnetState]:
    """Constructed, not validated: every field comes from rows or from items built by
    the section's own typed constructors, and the remote ports are the batch's shared
    objects (validating them again per host was a third of a wide change's compile)."""
    remotes = remotes_of(i)
    out = []
    for s in sorted(i.subnets, key=lambda s: s.id):
        others = remotes.get(s.id)
        out.append(
            SubnetState.model_construct(
                id=s.id,
                revision=s.revision,
                vni=s.vni,
                cidr=s.cidr,
                gateway_ip=s.gateway_ip,
                routed=s.id in i.routed,
                host_routes=[Route(**r) for r in s.host_routes],
                remote_vteps=others.vteps(i.host) if others else [],
                remote_ports=others.l2_ports(i.host) if others else [],
            )
        )
    return out


def ports_section(i: Inputs) -> list[PortState]:
    prefix = {s.id: _prefixlen(s.cidr) for s in i.subnets}
    return [
        typed.port_state(p, prefix[p.subnet_id], i.port_groups.get(p.id, ()))
        for p in sorted(i.ports, key=lambda p: p.id)
        if p.subnet_id in prefix
    ]


def security_groups_section(i: Inputs) -> list[SecurityGroupState]:
    """The groups of this host's ports with their rules, and every group those rules
    name as remote group with its members (the rules of a group no local port uses are
    not this host's business, so their changes never make it sync)."""
    used = {g for groups in i.port_groups.values() for g in groups}
    rules: dict[str, list[SecurityGroupRuleState]] = {}
    for r in sorted(i.rules, key=lambda r: r.id):
        if r.security_group_id in used:
            rules.setdefault(r.security_group_id, []).append(
                SecurityGroupRuleState(
                    id=r.id,
                    direction=r.direction,
                    protocol=r.protocol,
                    port_min=r.port_min,
                    port_max=r.port_max,
                    remote_cidr=r.remote_cidr,
                    remote_group_id=r.remote_group_id,
                )
            )
    named = {r.remote_group_id for rs in rules.values() for r in rs if r.remote_group_id}
    memo = {} if i.shared is None else i.shared
    out = []
    for g in sorted(i.groups, key=lambda g: g.id):
        if g.id not in used and g.id not in named:
            continue
        # Within a batch a group's rules and members are the same for every host: what
        # differs is only whether the host uses it and names it (the key).
        key = ("security_group", g.id, g.id in used, g.id in named)
        item = memo.get(key)
        if item is None:
            item = memo[key] = SecurityGroupState(
                id=g.id,
                revision=g.revision,
                rules=rules.get(g.id, []),
                members=sorted(i.members.get(g.id, ())) if g.id in named else [],
            )
        out.append(item)
    return out


def acl_subnets(i: Inputs) -> list[Subnet]:
    """Subnets whose ACL this host enforces: its VXLAN ones and its routed ones (a flat
    port's traffic never crosses the host's netfilter, docs/network-types.md)."""
    both = [*i.subnets, *(s for s in i.typed_subnets if s.network_type == "routed")]
    return list({s.id: s for s in both}.values())  # each once, however it came


def network_acls_section(i: Inputs) -> list[NetworkAclState]:
    subnets: dict[str, list[str]] = {}
    for s in acl_subnets(i):
        if s.network_acl_id:
            subnets.setdefault(s.network_acl_id, []).append(s.id)
    entries: dict[str, list[NetworkAclEntryState]] = {}
    for e in sorted(i.acl_entries, key=lambda e: (e.direction, e.rule_number)):
        entries.setdefault(e.network_acl_id, []).append(
            NetworkAclEntryState(
                rule_number=e.rule_number,
                direction=e.direction,
                action=e.action,
                protocol=e.protocol,
                port_min=e.port_min,
                port_max=e.port_max,
                cidr=e.cidr,
            )
        )
    return [
        NetworkAclState(
            id=a.id,
            revision=a.revision,
            subnet_ids=sorted(subnets[a.id]),
            entries=entries.get(a.id, []),
        )
        for a in sorted(i.acls, key=lambda a: a.id)
        if a.id in subnets
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
    named: dict[str, list[PortName]] = {}
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
    "security_groups": Section(
        security_groups_section, lambda docs: {"security_group": {d.id for d in docs}}
    ),
    "network_acls": Section(
        network_acls_section, lambda docs: {"network_acl": {d.id for d in docs}}
    ),
    "load_balancers": Section(lambda i: load_balancers_section(i.lb), load_balancers_carry),
    "typed_networks": Section(typed.typed_networks_section, typed.carried),
}
