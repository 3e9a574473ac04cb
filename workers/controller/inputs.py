"""The rows hosts' documents are built from (DESIGN §2), read for many hosts at once.

A sweep that recompiles the hundreds of hosts carrying one subnet used to read each
host's rows on its own: the subnet's ports were read once per host, and the queries per
change grew with the hosts. `read_inputs_many` reads each kind of row once for all the
hosts of a batch (the union of their ids) and hands each host the rows it concerns, so
a host's `Inputs` are exactly those it would get read alone (tests/api/test_compile_many.py).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from models import Host, Port, Router, RouterInterface, SecurityGroupRule, Subnet, Vpc
from models import desired as q
from workers.controller.lb_section import LbInputs
from workers.controller.remotes import SubnetRemotes
from workers.controller.sections import Inputs


@dataclass
class _Plan:
    """One host's ids, worked out from its own rows before the rows shared with others
    are read (the order of the statements in the per-host compile it replaces)."""

    sections: Collection[str]
    every_port: list[q.LocalPortRow]
    routers: list[Router]
    interfaces: list[tuple[RouterInterface, Port, Subnet]]
    services: list[tuple[Subnet, Port, Vpc]]
    lbs: q.LoadBalancerRows
    rules: list[SecurityGroupRule]
    used: set[str]
    remote_groups: set[str]
    ports: list[q.LocalPortRow] = field(default_factory=list)
    typed_ports: list[q.LocalPortRow] = field(default_factory=list)
    typed_subnets: list[Subnet] = field(default_factory=list)
    typed_ids: set[str] = field(default_factory=set)
    workload_subnets: set[str] = field(default_factory=set)
    subnet_ids: set[str] = field(default_factory=set)
    acl_ids: set[str] = field(default_factory=set)

    @classmethod
    def of(
        cls,
        sections: Collection[str],
        every_port: list[q.LocalPortRow],
        routers: list[Router],
        interfaces: Sequence[tuple[RouterInterface, Port, Subnet]],
        services: list[tuple[Subnet, Port, Vpc]],
        lbs: q.LoadBalancerRows,
        port_groups: dict[str, list[str]],
        rules: Sequence[SecurityGroupRule],
    ) -> _Plan:
        router_ids = {r.id for r in routers}
        used = {g for p in every_port for g in port_groups[p.id]}
        mine = [r for r in rules if r.security_group_id in used]
        return cls(
            sections=sections,
            every_port=every_port,
            routers=routers,
            interfaces=[i for i in interfaces if i[0].router_id in router_ids],
            services=services,
            lbs=lbs,
            rules=mine,
            used=used,
            remote_groups={r.remote_group_id for r in mine if r.remote_group_id},
        )

    @property
    def router_ids(self) -> set[str]:
        return {r.id for r in self.routers}

    @property
    def service_subnets(self) -> set[str]:
        return {s.id for s, _, _ in self.services}

    @property
    def vpc_ids(self) -> set[str]:
        return {v.id for _, _, v in self.services}

    @property
    def external_ids(self) -> set[str]:
        return {r.external_network_id for r in self.routers if r.external_network_id}

    @property
    def extra_subnets(self) -> set[str]:
        """Subnets the host carries for its routers, services and VIPs, where it supports
        their section (elsewhere they are in error, and the subnet needs no bridge)."""
        ids: set[str] = set()
        if "routers" in self.sections:
            ids |= {i.subnet_id for i, _, _ in self.interfaces}
        if "dhcp_dns" in self.sections:
            ids |= self.service_subnets
        if "load_balancers" in self.sections:  # the VIP legs plug into their subnets' bridges
            ids |= {p.subnet_id for p in self.lbs.vips.values()}
        return ids

    @property
    def all_subnets(self) -> set[str]:
        """Every subnet whose row this host's compile may need."""
        return {p.subnet_id for p in self.every_port} | self.extra_subnets

    def see(self, subnets: dict[str, Subnet]) -> None:
        """Split the ports by their subnet's type, given the subnets' rows."""
        local = [subnets[i] for i in sorted({p.subnet_id for p in self.every_port})]
        self.typed_ids = {sn.id for sn in local if sn.network_type != "vxlan"}
        self.typed_subnets = [sn for sn in local if sn.id in self.typed_ids]
        self.ports = [p for p in self.every_port if p.subnet_id not in self.typed_ids]
        self.typed_ports = [p for p in self.every_port if p.subnet_id in self.typed_ids]
        self.workload_subnets = {p.subnet_id for p in self.ports}
        self.subnet_ids = self.workload_subnets | self.extra_subnets
        routed = [sn for sn in local if sn.network_type == "routed"]
        carried = [subnets[i] for i in self.subnet_ids if i in subnets]
        self.acl_ids = {s.network_acl_id for s in (*carried, *routed) if s.network_acl_id}


class _Union:
    def __init__(self, plans: Iterable[_Plan]) -> None:
        self._plans = list(plans)

    def of(self, ids: Callable[[_Plan], set[str]]) -> set[str]:
        return set().union(*(ids(p) for p in self._plans))


def read_inputs_many(
    session: Session, hosts: Sequence[tuple[Host, Collection[str]]]
) -> dict[str, Inputs]:
    """The rows of these hosts' documents, by host name, in a fixed number of queries
    however many hosts there are: each kind of row is read once for all of them (a
    subnet's ports once for every host carrying it) and handed to each host it concerns.
    Router legs add their subnets only where the host supports routers: elsewhere the
    router is in error, and the subnet needs no bridge."""
    names = [h.name for h, _ in hosts]
    every_port = q.local_ports_of(session, names)
    routers = q.routers_on_hosts(session, names)
    services = q.dhcp_services_on(session, names)
    lbs = {
        n: q.load_balancers_on_host(session, n) for n in q.hosts_with_load_balancers(session, names)
    }
    no_lbs = q.LoadBalancerRows([], {}, {}, frozenset(), [], [], [], [])
    interfaces = q.router_interfaces(session, {r.id for rs in routers.values() for r in rs})
    port_groups = q.port_groups(session, [p for ps in every_port.values() for p in ps])
    rules = q.group_rules(session, {g for gs in port_groups.values() for g in gs})
    plans = {
        h.name: _Plan.of(s, every_port[h.name], routers[h.name], interfaces, services[h.name],
                         lbs.get(h.name, no_lbs), port_groups, rules)
        for h, s in hosts
    }  # fmt: skip
    subnets = {
        sn.id: sn
        for sn in q.subnets_by_id(session, set().union(*(p.all_subnets for p in plans.values())))
    }
    for plan in plans.values():
        plan.see(subnets)
    every = _Union(plans.values())
    routed = q.routed_subnets(session, every.of(lambda p: p.subnet_ids | p.service_subnets))
    alone = names[0] if len(names) == 1 else None  # its own ports are nobody's remote ones
    remote = q.remote_ports_all(
        session, every.of(lambda p: p.subnet_ids | p.typed_ids), not_on=alone
    )
    remotes = SubnetRemotes.group(remote)  # sorted once, shared by the hosts
    shared: dict[Any, Any] = {}  # items the sections build once for the batch
    networks = q.external_networks(session, every.of(lambda p: p.external_ids))
    fips = q.router_floating_ips(session, every.of(lambda p: p.router_ids))
    leases = q.user_ports_of(session, every.of(lambda p: p.service_subnets))
    names_ = q.named_ports(session, every.of(lambda p: p.vpc_ids))
    resolvers = q.resolvers(session, every.of(lambda p: p.workload_subnets))
    groups = q.security_groups(session, every.of(lambda p: p.used | p.remote_groups))
    members = q.group_members(session, every.of(lambda p: p.remote_groups))
    acls = q.network_acls(session, every.of(lambda p: p.acl_ids))
    entries = q.acl_entries(session, every.of(lambda p: p.acl_ids))
    out = {}
    for h, _ in hosts:
        p = plans[h.name]
        near = p.subnet_ids | p.typed_ids
        wanted = p.used | p.remote_groups
        out[h.name] = Inputs(
            host=h.name,
            vtep_ip=h.vtep_ip,
            ports=p.ports,
            subnets=[subnets[i] for i in sorted(p.subnet_ids) if i in subnets],
            routed=frozenset(routed & (p.subnet_ids | p.service_subnets)),
            remotes={sid: remotes[sid] for sid in sorted(near) if sid in remotes},
            shared=shared,
            routers=p.routers,
            interfaces=p.interfaces,
            external_networks={k: v for k, v in networks.items() if k in p.external_ids},
            floating_ips=[(f, port) for f, port in fips if f.router_id in p.router_ids],
            services=p.services,
            leases=[x for x in leases if x.subnet_id in p.service_subnets],
            names=[(v, x) for v, x in names_ if v in p.vpc_ids],
            resolvers={k: v for k, v in resolvers.items() if k in p.workload_subnets},
            port_groups={port.id: port_groups[port.id] for port in p.every_port},
            groups=[g for g in groups if g.id in wanted],
            rules=p.rules,
            members={g: members[g] for g in p.remote_groups},
            acls=[a for a in acls if a.id in p.acl_ids],
            acl_entries=[e for e in entries if e.network_acl_id in p.acl_ids],
            lb=LbInputs(**p.lbs._asdict()),
            typed_subnets=p.typed_subnets,
            typed_ports=p.typed_ports,
        )
    return out
