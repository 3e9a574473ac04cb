"""The `typed_networks` section (DESIGN §4): flat and routed subnets with their local
ports, and for routed ones the subnet's ports on other hosts (a /32 route each, via that
host's underlay address; no BGP speaker: the controller knows every port's host).

A host whose agent does not advertise the section gets neither these subnets nor their
ports in any other section (never realised as VXLAN by mistake): the ports and subnets
are `error`, naming the host and the section."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from models import Port
from models.desired import LocalPortRow
from workers.controller.remotes import remotes_of
from workers.protocol import PortState, Route, TypedNetworkState

if TYPE_CHECKING:
    from workers.controller.sections import Inputs

# The subnet's columns the section carries as they are.
COPIED = (
    "id", "revision", "network_type", "cidr", "gateway_ip", "physical_network", "segmentation_id"
)  # fmt: skip


def port_state(p: Port | LocalPortRow, prefixlen: int, groups: Sequence[str]) -> PortState:
    """A workload port as the ports and typed_networks sections carry it. From a row
    (what a compile reads) it is built once per port revision, prefix and groups and
    shared by every later compile (never mutated, like the remote ports): a one-port
    change on a 1000-port host rebuilt and validated 999 unchanged ones."""
    if isinstance(p, LocalPortRow):
        return _port_state(p, prefixlen, tuple(groups))
    return _build(p, prefixlen, groups)


@lru_cache(maxsize=1 << 16)
def _port_state(p: LocalPortRow, prefixlen: int, groups: tuple[str, ...]) -> PortState:
    return _build(p, prefixlen, groups)


def _build(p: Port | LocalPortRow, prefixlen: int, groups: Sequence[str]) -> PortState:
    """Constructed from the row's own columns, not validated (20 ports on each of 500
    hosts)."""
    return PortState.model_construct(
        id=p.id,
        revision=p.revision,
        subnet_id=p.subnet_id,
        tenant_id=p.tenant_id,
        netns=p.netns or "",
        interface_name=p.interface_name,
        mac=p.mac_address.lower(),
        ip=p.ip_address,
        prefixlen=prefixlen,
        security_group_ids=list(groups),
    )


def typed_networks_section(i: Inputs) -> list[TypedNetworkState]:
    ports: dict[str, list[PortState]] = {}
    prefix = {s.id: ipaddress.ip_network(s.cidr).prefixlen for s in i.typed_subnets}
    for p in sorted(i.typed_ports, key=lambda p: p.id):
        if p.subnet_id not in prefix:
            continue
        ports.setdefault(p.subnet_id, []).append(
            port_state(p, prefix[p.subnet_id], i.port_groups.get(p.id, ()))
        )
    remotes = remotes_of(i)
    return [
        TypedNetworkState(
            **{name: getattr(s, name) for name in COPIED},
            host_routes=[Route(**r) for r in s.host_routes],
            ports=ports.get(s.id, []),
            remote_ports=remotes[s.id].routed_ports(i.host)
            if s.network_type == "routed" and s.id in remotes
            else [],
        )
        for s in sorted(i.typed_subnets, key=lambda s: s.id)
    ]


def carried(docs: list[TypedNetworkState]) -> dict[str, set[str]]:
    return {"subnet": {d.id for d in docs}, "port": {p.id for d in docs for p in d.ports}}
