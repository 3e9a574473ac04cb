"""Rows of the load-balancer family rendered as their answers: the model's `status` is
Octavia's `provisioning_status`, and a load balancer shows its whole tree's ids."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy.orm import Session

from api.services.lb_schemas import (
    ListenerOut,
    ListenerRef,
    LoadBalancerOut,
    MemberOut,
    MemberRef,
    MonitorOut,
    PoolOut,
    PoolRef,
)
from models import HealthMonitor, Listener, LoadBalancer, Member, Pool
from models.loadbalancer import (
    listeners_of,
    listeners_using,
    members_of,
    monitor_of,
    monitors_of,
    pools_of,
)

OutT = TypeVar("OutT", bound=BaseModel)
DERIVED = {"provisioning_status", "listeners", "pools", "listener_ids", "healthmonitor_id"}


def _fields(out: type[OutT], row: Any, **extra: Any) -> OutT:
    data = {k: getattr(row, k) for k in out.model_fields if k not in DERIVED}
    return out.model_validate({**data, "provisioning_status": row.status, **extra})


def load_balancer(session: Session, lb: LoadBalancer) -> LoadBalancerOut:
    pools = pools_of(session, lb.id)
    ids = {p.id for p in pools}
    members: dict[str, list[MemberRef]] = {}
    for m in members_of(session, ids):
        members.setdefault(m.pool_id, []).append(
            MemberRef(id=m.id, address=m.address, protocol_port=m.protocol_port)
        )
    monitors = {hm.pool_id: hm.id for hm in monitors_of(session, ids)}
    return _fields(
        LoadBalancerOut,
        lb,
        listeners=[
            ListenerRef(
                id=x.id,
                protocol=x.protocol,
                protocol_port=x.protocol_port,
                default_pool_id=x.default_pool_id,
            )
            for x in listeners_of(session, lb.id)
        ],
        pools=[
            PoolRef(
                id=p.id,
                protocol=p.protocol,
                members=members.get(p.id, []),
                healthmonitor_id=monitors.get(p.id),
            )
            for p in pools
        ],
    )


def listener(row: Listener) -> ListenerOut:
    return _fields(ListenerOut, row)


def pool(session: Session, row: Pool) -> PoolOut:
    monitor = monitor_of(session, row.id)
    return _fields(
        PoolOut,
        row,
        listener_ids=listeners_using(session, row.id),
        healthmonitor_id=monitor.id if monitor else None,
    )


def member(row: Member) -> MemberOut:
    return _fields(MemberOut, row)


def monitor(row: HealthMonitor) -> MonitorOut:
    return _fields(MonitorOut, row)
