"""Compile one host's desired state from DB rows (DESIGN §2).

`build()` is a pure function of the rows, so it is unit-tested without a database;
`compile_host()` reads the rows and stamps the document's revision.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Iterable

from sqlalchemy.orm import Session

from models import Port, Subnet
from models import hoststate as q
from workers.protocol import HostState, PortState, RemotePort, Route, SubnetState


def build(
    host: str,
    vtep_ip: str,
    ports: Iterable[Port],
    subnets: Iterable[Subnet],
    routed: set[str],
    remote: Iterable[tuple[Port, str]],
    revision: int = 0,
) -> HostState:
    remote_by_subnet: dict[str, list[tuple[Port, str]]] = {}
    for port, vtep in remote:
        remote_by_subnet.setdefault(port.subnet_id, []).append((port, vtep))
    subnet_states = []
    prefix: dict[str, int] = {}
    for s in sorted(subnets, key=lambda s: s.id):
        prefix[s.id] = ipaddress.ip_network(s.cidr).prefixlen
        others = remote_by_subnet.get(s.id, [])
        subnet_states.append(
            SubnetState(
                id=s.id,
                revision=s.revision,
                vni=s.vni,
                cidr=s.cidr,
                gateway_ip=s.gateway_ip,
                routed=s.id in routed,
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
    port_states = [
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
        for p in sorted(ports, key=lambda p: p.id)
        if p.subnet_id in prefix
    ]
    return HostState(
        host=host, revision=revision, vtep_ip=vtep_ip, subnets=subnet_states, ports=port_states
    )


def digest(state: HostState) -> str:
    body = state.model_dump(mode="json", exclude={"revision"})
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def compile_host(session: Session, host: str) -> HostState | None:
    """The host's document, stamped; None if the host has not registered yet."""
    row = q.host_by_name(session, host)
    if row is None:
        return None
    q.serialise_compiles(session, host)  # before reading any row the document is built from
    ports = q.local_ports(session, host)
    subnet_ids = {p.subnet_id for p in ports}
    state = build(
        host,
        row.vtep_ip,
        ports,
        q.subnets_by_id(session, subnet_ids),
        q.routed_subnets(session, subnet_ids),
        q.remote_ports(session, subnet_ids, host),
    )
    revision = q.stamp(session, host, digest(state))
    return state.model_copy(update={"revision": revision})
