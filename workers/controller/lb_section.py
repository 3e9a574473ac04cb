"""The `load_balancers` section: each load balancer scheduled on the host, whole (VIP leg,
listeners, pools with members and monitor), built from rows by a pure function."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from models import HealthMonitor, Listener, LoadBalancer, Member, Pool, Port, Subnet
from workers.protocol import (
    ListenerState,
    LoadBalancerState,
    MemberState,
    MonitorState,
    PoolState,
)


@dataclass(frozen=True)
class LbInputs:
    """The rows of one host's load balancers; unit tests fill it by hand."""

    load_balancers: Sequence[LoadBalancer] = ()
    vips: Mapping[str, Port] = field(default_factory=dict)  # load balancer id -> VIP port
    vip_subnets: Mapping[str, Subnet] = field(default_factory=dict)  # by id
    routed: frozenset[str] = frozenset()  # VIP subnets a router serves
    listeners: Sequence[Listener] = ()
    pools: Sequence[Pool] = ()
    members: Sequence[Member] = ()
    monitors: Sequence[HealthMonitor] = ()


def _monitor(m: HealthMonitor) -> MonitorState:
    return MonitorState(
        id=m.id,
        revision=m.revision,
        type=m.type,
        delay=m.delay,
        timeout=m.timeout,
        max_retries=m.max_retries,
        max_retries_down=m.max_retries_down,
        http_method=m.http_method,
        url_path=m.url_path,
        expected_codes=m.expected_codes,
        admin_state_up=m.admin_state_up,
    )


def _pools(i: LbInputs) -> dict[str, list[PoolState]]:
    """Pools per load balancer, each with its members and monitor."""
    members: dict[str, list[MemberState]] = {}
    for m in sorted(i.members, key=lambda m: m.id):
        members.setdefault(m.pool_id, []).append(
            MemberState(
                id=m.id,
                revision=m.revision,
                address=m.address,
                protocol_port=m.protocol_port,
                weight=m.weight,
                admin_state_up=m.admin_state_up,
            )
        )
    monitors = {m.pool_id: _monitor(m) for m in i.monitors}
    out: dict[str, list[PoolState]] = {}
    for p in sorted(i.pools, key=lambda p: p.id):
        out.setdefault(p.load_balancer_id, []).append(
            PoolState(
                id=p.id,
                revision=p.revision,
                protocol=p.protocol,
                lb_algorithm=p.lb_algorithm,
                admin_state_up=p.admin_state_up,
                members=members.get(p.id, []),
                monitor=monitors.get(p.id),
            )
        )
    return out


def load_balancers_section(i: LbInputs) -> list[LoadBalancerState]:
    """A load balancer without its VIP port is left out: it would have no leg to plug."""
    pools = _pools(i)
    listeners: dict[str, list[ListenerState]] = {}
    for x in sorted(i.listeners, key=lambda x: (x.protocol_port, x.id)):
        listeners.setdefault(x.load_balancer_id, []).append(
            ListenerState(
                id=x.id,
                revision=x.revision,
                protocol=x.protocol,
                protocol_port=x.protocol_port,
                admin_state_up=x.admin_state_up,
                default_pool_id=x.default_pool_id,
            )
        )
    out = []
    for lb in sorted(i.load_balancers, key=lambda lb: lb.id):
        vip = i.vips.get(lb.id)
        subnet = i.vip_subnets.get(lb.vip_subnet_id)
        if vip is None or subnet is None:
            continue
        out.append(
            LoadBalancerState(
                id=lb.id,
                revision=lb.revision,
                admin_state_up=lb.admin_state_up,
                subnet_id=subnet.id,
                vip_port_id=vip.id,
                vip_port_revision=vip.revision,
                vip_address=vip.ip_address,
                prefixlen=ipaddress.ip_network(subnet.cidr).prefixlen,
                mac=vip.mac_address.lower(),
                gateway_ip=subnet.gateway_ip if subnet.id in i.routed else None,
                listeners=listeners.get(lb.id, []),
                pools=pools.get(lb.id, []),
            )
        )
    return out


def load_balancers_carry(docs: list[LoadBalancerState]) -> dict[str, set[str]]:
    pools = [p for lb in docs for p in lb.pools]
    return {
        "load_balancer": {lb.id for lb in docs},
        "port": {lb.vip_port_id for lb in docs},
        "listener": {x.id for lb in docs for x in lb.listeners},
        "pool": {p.id for p in pools},
        "member": {m.id for p in pools for m in p.members},
        "health_monitor": {p.monitor.id for p in pools if p.monitor is not None},
    }
