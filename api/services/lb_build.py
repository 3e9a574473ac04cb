"""Making and removing the load-balancer tree: one `Builder` per request, so a fully
populated create and the children's own creates run the very same checks.

The VIP is a service-made port (device_owner `load_balancer_vip`) that goes with its load
balancer. Children never touch their load balancer's row: independent creates under one
parent do not conflict (DESIGN §3); only listener creates wait on each other (row lock),
since two listeners may not take one port.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from api.rest.preconditions import Lookup
from api.rest.schemas import apply_changes
from api.services import lb_checks as check
from api.services import quotas
from api.services.lb_schemas import (
    ListenerFields,
    ListenerSpec,
    LoadBalancerCreate,
    MemberSpec,
    MonitorSpec,
    PoolFields,
    PoolSpec,
)
from api.services.notify import Notifier
from api.services.port_allocation import allocate_port, check_fixed_ip
from api.services.scheduling import schedule_load_balancer
from models import HealthMonitor, Listener, LoadBalancer, Member, Pool, Port, Subnet
from models.base import new_id
from models.loadbalancer import (
    LB_VIP,
    listeners_of,
    listeners_using,
    lock_load_balancer,
    members_of,
    monitor_of,
    monitors_of,
    pools_of,
)
from models.routing import disassociate_port

NESTED = ("listeners", "pools")


class Builder:
    """Creates rows of one tenant, remembering what this request already took (ports of
    listeners, addresses of members) so a tree cannot conflict with itself."""

    def __init__(self, session: Session, lookup: Lookup, tenant_id: str) -> None:
        self.session = session
        self.lookup = lookup
        self.tenant_id = tenant_id
        self.taken: set[Any] = set()

    def _own(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id}

    def load_balancer(self, body: LoadBalancerCreate) -> LoadBalancer:
        subnet = self.lookup.get(Subnet, body.vip_subnet_id)
        if body.vip_address is not None:
            check_fixed_ip(self.session, subnet, body.vip_address, "body.vip_address")
        self._quotas(body)
        lb_id, host = new_id(), schedule_load_balancer(self.session)
        vip = allocate_port(
            self.session,
            subnet,
            {
                **self._own(),
                "name": f"lb-vip-{lb_id[:8]}",
                "ip_address": body.vip_address,
                "device_owner": LB_VIP,
                "device_id": lb_id,
                "host": host,
                "security_group_ids": [],
            },
        )
        lb = LoadBalancer(
            id=lb_id,
            vpc_id=subnet.vpc_id,
            vip_address=vip.ip_address,
            vip_port_id=vip.id,
            host=host,
            **self._own(),
            **body.model_dump(exclude={"vip_address", *NESTED}),
        )
        self.session.add(lb)
        self.session.flush()
        for i, spec in enumerate(body.listeners):
            self.nested_listener(lb, spec, f"body.listeners.{i}")
        for i, pspec in enumerate(body.pools):
            self.nested_pool(lb, pspec, f"body.pools.{i}")
        return lb

    def _quotas(self, body: LoadBalancerCreate) -> None:
        pools = [lst.default_pool for lst in body.listeners if lst.default_pool] + body.pools
        adding = {
            "load_balancers": (LoadBalancer, 1),
            "listeners": (Listener, len(body.listeners)),
            "pools": (Pool, len(pools)),
            "members": (Member, sum(len(p.members) for p in pools)),
            "health_monitors": (HealthMonitor, sum(1 for p in pools if p.healthmonitor)),
        }
        for resource, (model, n) in adding.items():
            if n:
                quotas.check(self.session, self.tenant_id, resource, model, n)

    def nested_listener(self, lb: LoadBalancer, spec: ListenerSpec, field: str) -> Listener:
        pool = None
        if spec.default_pool is not None:
            check.pool_matches_listener(
                spec.protocol, spec.default_pool.protocol, f"{field}.default_pool.protocol"
            )
            pool = self.nested_pool(lb, spec.default_pool, f"{field}.default_pool")
        return self.listener(lb, spec, pool, field)

    def nested_pool(self, lb: LoadBalancer, spec: PoolSpec, field: str) -> Pool:
        pool = self.pool(lb, spec, field)
        for i, member in enumerate(spec.members):
            self.member(lb, pool, member, f"{field}.members.{i}")
        if spec.healthmonitor is not None:
            self.monitor(pool, spec.healthmonitor, f"{field}.healthmonitor")
        return pool

    def listener(
        self, lb: LoadBalancer, spec: ListenerFields, pool: Pool | None, field: str
    ) -> Listener:
        lock_load_balancer(self.session, lb.id)
        check.listener_port_free(
            self.session, lb.id, spec.protocol, spec.protocol_port, field, self.taken
        )
        fields = spec.model_dump(include=set(ListenerFields.model_fields))
        row = Listener(
            load_balancer_id=lb.id,
            transport=check.transport(spec.protocol),
            default_pool_id=pool.id if pool else None,
            **self._own(),
            **fields,
        )
        self.session.add(row)
        self.session.flush()
        return row

    def pool(self, lb: LoadBalancer, spec: PoolFields, field: str) -> Pool:
        fields = spec.model_dump(include=set(PoolFields.model_fields))
        row = Pool(load_balancer_id=lb.id, **self._own(), **fields)
        self.session.add(row)
        self.session.flush()
        return row

    def member(self, lb: LoadBalancer, pool: Pool, spec: MemberSpec, field: str) -> Member:
        subnet = check.member_subnet(self.lookup, lb, spec.subnet_id, spec.address, field)
        check.member_free(
            self.session, pool.id, spec.address, spec.protocol_port, field, self.taken
        )
        fields = spec.model_dump(include=set(MemberSpec.model_fields)) | {"subnet_id": subnet.id}
        row = Member(pool_id=pool.id, **self._own(), **fields)
        self.session.add(row)
        self.session.flush()
        return row

    def monitor(self, pool: Pool, spec: MonitorSpec, field: str) -> HealthMonitor:
        check.no_monitor_yet(self.session, pool.id, f"{field}.pool_id")
        fields = check.monitor_fields(
            spec.model_dump(include=set(MonitorSpec.model_fields)), pool.protocol, field
        )
        row = HealthMonitor(pool_id=pool.id, **self._own(), **fields)
        self.session.add(row)
        self.session.flush()
        return row


def attach_default_pool(lookup: Lookup, listener: Listener, pool_id: str | None) -> None:
    """Point a listener at a pool of its load balancer with its protocol (or at none); a
    pool the caller cannot see is a 404."""
    if pool_id is not None:
        pool = lookup.get(Pool, pool_id)
        check.pool_usable_by(
            pool, listener.load_balancer_id, listener.protocol, "body.default_pool_id"
        )
    listener.default_pool_id = pool_id


def children(session: Session, lb_id: str) -> list[tuple[str, str]]:
    """What the user attached to a load balancer: it blocks a delete without cascade."""
    out = [("listener", lst.id) for lst in listeners_of(session, lb_id)]
    return out + [("pool", p.id) for p in pools_of(session, lb_id)]


def delete_pool(session: Session, pool: Pool) -> None:
    """A pool with its members and monitor (they go with it, as in Octavia)."""
    monitor = monitor_of(session, pool.id)
    if monitor is not None:
        session.delete(monitor)
    for member in members_of(session, {pool.id}):
        session.delete(member)
    session.flush()
    session.delete(pool)


def delete_tree(session: Session, lb: LoadBalancer) -> None:
    """The whole load balancer: children first (listeners name pools), then the VIP."""
    pools = pools_of(session, lb.id)
    ids = {p.id for p in pools}
    for row in [*monitors_of(session, ids), *members_of(session, ids)]:
        session.delete(row)
    for listener in listeners_of(session, lb.id):
        session.delete(listener)
    session.flush()
    for pool in pools:
        session.delete(pool)
    session.flush()
    vip = session.get(Port, lb.vip_port_id) if lb.vip_port_id else None
    session.delete(lb)
    session.flush()
    if vip is not None:
        disassociate_port(session, vip.id)
        session.delete(vip)


def pool_users(session: Session, pool_id: str) -> list[tuple[str, str]]:
    return [("listener", i) for i in listeners_using(session, pool_id)]


def realise(notifier: Notifier, session: Session, lb_id: str) -> None:
    """The load balancer's host syncs again (and, for its VIP, every host on its subnet)."""
    lb = session.get(LoadBalancer, lb_id)
    if lb is not None:
        notifier.subnets_changed(session, {lb.vip_subnet_id}, lb.host)


def realise_changes(
    notifier: Notifier, session: Session, row: Any, changes: dict[str, Any], lb_id: str
) -> None:
    """A PATCH on a load-balancing row: if it changed anything, the row is pending again
    and its load balancer (`lb_id`) is realised anew."""
    if apply_changes(row, changes):
        row.status = "pending"
        session.flush()
        realise(notifier, session, lb_id)
