"""Compile one host's desired state from DB rows (DESIGN §2).

`build()` is a pure function of named `Inputs` (the sections live in `sections.py`), so it
is unit-tested without a database; `compile_host()` reads the inputs, builds the sections
the host supports and stamps the document's revision. A section the host does not support
is still built, so that the resources it would carry can be marked `error` (mixed-version
rollouts).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from models import Host
from models import desired as q
from models import hoststate as hs
from workers.controller.lb_section import LbInputs
from workers.controller.sections import COMPILERS, Inputs
from workers.protocol import SECTIONS, HostState

__all__ = ["COMPILERS", "Compiled", "Inputs", "build", "compile_host", "digest", "read_inputs"]


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
    every_port = q.local_ports(session, host.name)
    local_subnets = q.subnets_by_id(session, {p.subnet_id for p in every_port})
    typed_ids = {sn.id for sn in local_subnets if sn.network_type != "vxlan"}
    ports = [p for p in every_port if p.subnet_id not in typed_ids]  # flat/routed: own section
    typed_ports = [p for p in every_port if p.subnet_id in typed_ids]
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
    port_groups = q.port_groups(session, {p.id for p in every_port})
    rules = q.group_rules(session, {g for gs in port_groups.values() for g in gs})
    remote = {r.remote_group_id for r in rules if r.remote_group_id}
    used = {g for gs in port_groups.values() for g in gs}
    subnets = q.subnets_by_id(session, subnet_ids)
    routed = [sn for sn in local_subnets if sn.network_type == "routed"]
    acl_ids = {s.network_acl_id for s in (*subnets, *routed) if s.network_acl_id}
    return Inputs(
        host=host.name,
        vtep_ip=host.vtep_ip,
        ports=ports,
        subnets=subnets,
        routed=frozenset(q.routed_subnets(session, subnet_ids | service_subnets)),
        remote=q.remote_ports(session, subnet_ids | typed_ids, host.name),
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
        port_groups=port_groups,
        groups=q.security_groups(session, used | remote),
        rules=rules,
        members=q.group_members(session, remote),
        acls=q.network_acls(session, acl_ids),
        acl_entries=q.acl_entries(session, acl_ids),
        lb=LbInputs(**lbs._asdict()),
        typed_subnets=[sn for sn in local_subnets if sn.id in typed_ids],
        typed_ports=typed_ports,
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
