"""Tenants (admin), their bearer tokens and quotas."""

from __future__ import annotations

import secrets
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, Field

from api.common import (
    Description,
    Input,
    Limit,
    NotNull,
    Output,
    PageToken,
    Patch,
    apply_changes,
    check_if_match,
    created,
    decode_token,
    encode_token,
    set_etag,
)
from api.deps import AdminDep, SessionDep
from api.errors import Conflict, InUse, NotFound, problems
from models import ApiToken, FloatingIp, Quota, Tenant, Vpc
from models.query import filtered, page
from models.tenant import hash_token, quotas_of

router = APIRouter(prefix="/v1/tenants", tags=["tenants"])


class TenantCreate(Input):
    name: Annotated[str, Field(min_length=1, max_length=255)]
    description: Description = ""


class TenantUpdate(Patch):
    name: Annotated[str | None, Field(min_length=1, max_length=255)] = NotNull()
    description: Description | None = NotNull()


class TenantOut(Output):
    name: str
    description: str


class TenantList(BaseModel):
    items: list[TenantOut]
    next_page_token: str | None = None


class TokenOut(BaseModel):
    id: str
    tenant_id: str
    token: str = Field(description="The bearer token; shown only once.")


class QuotaSet(BaseModel):
    """Limits per resource type; PATCH sets only the ones given."""

    model_config = {"extra": "forbid", "strict": True}
    vpcs: Annotated[int | None, Field(ge=0)] = None
    subnets: Annotated[int | None, Field(ge=0)] = None
    ports: Annotated[int | None, Field(ge=0)] = None
    routers: Annotated[int | None, Field(ge=0)] = None
    security_groups: Annotated[int | None, Field(ge=0)] = None
    security_group_rules: Annotated[int | None, Field(ge=0)] = None
    floating_ips: Annotated[int | None, Field(ge=0)] = None


class Quotas(BaseModel):
    tenant_id: str
    vpcs: int
    subnets: int
    ports: int
    routers: int
    security_groups: int
    security_group_rules: int
    floating_ips: int


def _get(session: SessionDep, tenant_id: str) -> Tenant:
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound("tenant", tenant_id)
    return tenant


@router.post("", status_code=status.HTTP_201_CREATED, responses=problems(401, 403, 409, 422))
def create_tenant(
    body: TenantCreate, request: Request, response: Response, session: SessionDep, _: AdminDep
) -> TenantOut:
    if session.scalar(sa.select(Tenant.id).where(Tenant.name == body.name)):
        raise Conflict(f"a tenant named {body.name!r} exists")
    tenant = Tenant(**body.model_dump())
    session.add(tenant)
    session.flush()
    created(request, response, f"/v1/tenants/{tenant.id}", tenant)
    return TenantOut.model_validate(tenant)


@router.get("", responses=problems(400, 401, 403, 422))
def list_tenants(
    session: SessionDep,
    _: AdminDep,
    name: str | None = None,
    limit: Limit = 100,
    page_token: PageToken = None,
) -> TenantList:
    stmt = filtered(session, Tenant, sa.select(Tenant), {"name": name})
    rows, cursor = page(session, Tenant, stmt, limit, decode_token(page_token))
    return TenantList(
        items=[TenantOut.model_validate(r) for r in rows], next_page_token=encode_token(cursor)
    )


@router.get("/{tenant_id}", responses=problems(401, 403, 404))
def get_tenant(tenant_id: str, response: Response, session: SessionDep, _: AdminDep) -> TenantOut:
    tenant = _get(session, tenant_id)
    set_etag(response, tenant)
    return TenantOut.model_validate(tenant)


@router.patch("/{tenant_id}", responses=problems(401, 403, 404, 409, 412, 422))
def update_tenant(
    tenant_id: str,
    body: TenantUpdate,
    request: Request,
    response: Response,
    session: SessionDep,
    _: AdminDep,
) -> TenantOut:
    tenant = _get(session, tenant_id)
    check_if_match(request, tenant)
    changes = body.changes()
    if "name" in changes and session.scalar(
        sa.select(Tenant.id).where(Tenant.name == changes["name"], Tenant.id != tenant.id)
    ):
        raise Conflict(f"a tenant named {changes['name']!r} exists")
    apply_changes(tenant, changes)
    session.flush()
    set_etag(response, tenant)
    return TenantOut.model_validate(tenant)


@router.delete(
    "/{tenant_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 403, 404, 409, 412),
)
def delete_tenant(tenant_id: str, request: Request, session: SessionDep, _: AdminDep) -> None:
    tenant = _get(session, tenant_id)
    check_if_match(request, tenant)
    blocking = [
        ("vpc", i) for i in session.scalars(sa.select(Vpc.id).where(Vpc.tenant_id == tenant_id))
    ]
    blocking += [
        ("floating_ip", i)
        for i in session.scalars(sa.select(FloatingIp.id).where(FloatingIp.tenant_id == tenant_id))
    ]
    if blocking:
        raise InUse("the tenant still owns resources; delete them first", blocking)
    session.execute(sa.delete(ApiToken).where(ApiToken.tenant_id == tenant_id))
    session.execute(sa.delete(Quota).where(Quota.tenant_id == tenant_id))
    session.delete(tenant)


@router.post(
    "/{tenant_id}/tokens",
    status_code=status.HTTP_201_CREATED,
    responses=problems(401, 403, 404),
)
def create_tenant_token(tenant_id: str, session: SessionDep, _: AdminDep) -> TokenOut:
    _get(session, tenant_id)
    token = "vpcd_" + secrets.token_urlsafe(32)
    row = ApiToken(token_hash=hash_token(token), tenant_id=tenant_id)
    session.add(row)
    session.flush()
    return TokenOut(id=row.id, tenant_id=tenant_id, token=token)


@router.get("/{tenant_id}/quotas", responses=problems(401, 403, 404))
def get_quotas(tenant_id: str, session: SessionDep, _: AdminDep) -> Quotas:
    _get(session, tenant_id)
    return Quotas(tenant_id=tenant_id, **quotas_of(session, tenant_id))


@router.patch("/{tenant_id}/quotas", responses=problems(401, 403, 404, 422))
def update_quotas(tenant_id: str, body: QuotaSet, session: SessionDep, _: AdminDep) -> Quotas:
    _get(session, tenant_id)
    for resource, limit in body.model_dump(exclude_none=True).items():
        row = session.get(Quota, (tenant_id, resource))
        if row is None:
            session.add(Quota(tenant_id=tenant_id, resource=resource, limit=limit))
        else:
            row.limit = limit
    session.flush()
    return Quotas(tenant_id=tenant_id, **quotas_of(session, tenant_id))
