"""Pools and their members: where a listener's connections go, and by which algorithm."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import NotifierDep, PrincipalDep, SessionDep, TenantDep
from api.errors import InUse, Invalid, NotFound, problems
from api.rest.pages import Page, PagesDep
from api.rest.preconditions import LookupDep, ResourceRoute
from api.services import lb_build, lb_checks, lb_views, quotas
from api.services.lb_build import Builder, pool_users, realise, realise_changes
from api.services.lb_schemas import (
    Algorithm,
    MemberCreate,
    MemberOut,
    MemberUpdate,
    PoolCreate,
    PoolOut,
    PoolUpdate,
    Protocol,
)
from models import Listener, LoadBalancer, Member, Pool

router = APIRouter(prefix="/v1/pools", tags=["pools"], route_class=ResourceRoute)


class PoolList(Page[PoolOut]):
    pass


class MemberList(Page[MemberOut]):
    pass


@router.post("", status_code=status.HTTP_201_CREATED, responses=problems(401, 403, 404, 409, 422))
def create_pool(
    body: PoolCreate,
    session: SessionDep,
    who: TenantDep,
    lookup: LookupDep,
    notifier: NotifierDep,
) -> PoolOut:
    assert who.tenant_id is not None
    listener = lookup.get(Listener, body.listener_id) if body.listener_id else None
    if body.load_balancer_id is None and listener is None:
        raise Invalid("body.load_balancer_id", "name the load balancer or a listener")
    lb = lookup.get(LoadBalancer, body.load_balancer_id or listener.load_balancer_id)  # type: ignore[union-attr]
    if listener is not None:
        if listener.load_balancer_id != lb.id:
            raise Invalid("body.listener_id", "the listener belongs to another load balancer")
        lb_checks.pool_matches_listener(listener.protocol, body.protocol, "body.protocol")
        if listener.default_pool_id is not None:
            raise InUse(
                f"listener {listener.id} already has a default pool",
                [("pool", listener.default_pool_id)],
            )
    quotas.check(session, who.tenant_id, "pools", Pool)
    row = Builder(session, lookup, who.tenant_id).pool(lb, body, "body")
    if listener is not None:
        listener.default_pool_id = row.id
        listener.touch()
        listener.status = "pending"
    session.flush()
    realise(notifier, session, lb.id)
    return lb_views.pool(session, row)


@router.get("", responses=problems(400, 401, 422))
def list_pools(
    pages: PagesDep,
    session: SessionDep,
    who: PrincipalDep,
    load_balancer_id: str | None = None,
    protocol: Protocol | None = None,
    lb_algorithm: Algorithm | None = None,
    name: str | None = None,
    tag: str | None = None,
) -> PoolList:
    filters = {"load_balancer_id": load_balancer_id, "protocol": protocol}
    filters |= {"lb_algorithm": lb_algorithm, "name": name, "tag": tag}
    return pages.of(PoolList, Pool, who, filters, render=lambda p: lb_views.pool(session, p))


@router.get("/{pool_id}", responses=problems(401, 404))
def get_pool(pool_id: str, session: SessionDep, lookup: LookupDep) -> PoolOut:
    return lb_views.pool(session, lookup.target(Pool, pool_id))


@router.patch("/{pool_id}", responses=problems(401, 404, 409, 412, 422))
def update_pool(
    pool_id: str,
    body: PoolUpdate,
    session: SessionDep,
    lookup: LookupDep,
    notifier: NotifierDep,
) -> PoolOut:
    row = lookup.target(Pool, pool_id)
    realise_changes(notifier, session, row, body.changes(row), row.load_balancer_id)
    return lb_views.pool(session, row)


@router.delete(
    "/{pool_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(401, 404, 409, 412)
)
def delete_pool(
    pool_id: str, session: SessionDep, lookup: LookupDep, notifier: NotifierDep
) -> None:
    row = lookup.target(Pool, pool_id)
    users = pool_users(session, row.id)
    if users:
        raise InUse("listeners use this pool as their default pool", users)
    realise(notifier, session, row.load_balancer_id)
    lb_build.delete_pool(session, row)


# -- members ----------------------------------------------------------------------------------


def _member(lookup: LookupDep, pool_id: str, member_id: str) -> Member:
    pool = lookup.get(Pool, pool_id)
    row = lookup.target(Member, member_id)
    if row.pool_id != pool.id:
        raise NotFound("member", member_id)
    return row


@router.post(
    "/{pool_id}/members",
    status_code=status.HTTP_201_CREATED,
    responses=problems(401, 403, 404, 409, 422),
)
def create_member(
    pool_id: str,
    body: MemberCreate,
    session: SessionDep,
    who: TenantDep,
    lookup: LookupDep,
    notifier: NotifierDep,
) -> MemberOut:
    assert who.tenant_id is not None
    pool = lookup.get(Pool, pool_id)
    lb = lookup.get(LoadBalancer, pool.load_balancer_id)
    quotas.check(session, who.tenant_id, "members", Member)
    row = Builder(session, lookup, who.tenant_id).member(lb, pool, body, "body")
    realise(notifier, session, lb.id)
    return lb_views.member(row)


@router.get("/{pool_id}/members", responses=problems(400, 401, 404, 422))
def list_members(
    pool_id: str,
    pages: PagesDep,
    who: PrincipalDep,
    lookup: LookupDep,
    address: str | None = None,
    subnet_id: str | None = None,
    name: str | None = None,
    tag: str | None = None,
) -> MemberList:
    pool = lookup.get(Pool, pool_id)
    filters = {"pool_id": pool.id, "address": address, "subnet_id": subnet_id}
    filters |= {"name": name, "tag": tag}
    return pages.of(MemberList, Member, who, filters, render=lb_views.member)


@router.get("/{pool_id}/members/{member_id}", responses=problems(401, 404))
def get_member(pool_id: str, member_id: str, lookup: LookupDep) -> MemberOut:
    return lb_views.member(_member(lookup, pool_id, member_id))


@router.patch("/{pool_id}/members/{member_id}", responses=problems(401, 404, 409, 412, 422))
def update_member(
    pool_id: str,
    member_id: str,
    body: MemberUpdate,
    session: SessionDep,
    lookup: LookupDep,
    notifier: NotifierDep,
) -> MemberOut:
    row = _member(lookup, pool_id, member_id)
    lb_id = lookup.get(Pool, pool_id).load_balancer_id
    realise_changes(notifier, session, row, body.changes(row), lb_id)
    return lb_views.member(row)


@router.delete(
    "/{pool_id}/members/{member_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 404, 412),
)
def delete_member(
    pool_id: str, member_id: str, session: SessionDep, lookup: LookupDep, notifier: NotifierDep
) -> None:
    row = _member(lookup, pool_id, member_id)
    realise(notifier, session, lookup.get(Pool, pool_id).load_balancer_id)
    session.delete(row)
