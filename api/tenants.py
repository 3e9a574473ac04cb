"""Tenants (admin), their bearer tokens and quotas."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import AdminDep, SessionDep, TokensDep
from api.errors import Conflict, problems
from api.rest.pages import Page, PagesDep
from api.rest.preconditions import LookupDep, ResourceRoute
from api.rest.schemas import Description, Input, NotNull, Output, Patch, apply_changes
from api.services import blockers
from models import Tenant
from models.tenant import add_token, delete_with_tokens, quotas_of, set_quotas, tenant_named

router = APIRouter(prefix="/v1/tenants", tags=["tenants"], route_class=ResourceRoute)


class TenantCreate(Input):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "acme", "description": "Acme Corp"}]}
    )

    name: Annotated[str, Field(min_length=1, max_length=255)]
    description: Description = ""


class TenantUpdate(Patch):
    name: Annotated[str | None, Field(min_length=1, max_length=255)] = NotNull()
    description: Description | None = NotNull()


class TenantOut(Output):
    name: str
    description: str


class TenantList(Page[TenantOut]):
    pass


class TokenOut(BaseModel):
    id: str
    tenant_id: str
    token: str = Field(description="The bearer token; shown only once.")


# A sane ceiling for any one kind: far above what one tenant can use, and well inside the
# database's 32-bit integer column.
MAX_QUOTA = 1_000_000
QuotaLimit = Annotated[int, Field(ge=0, le=MAX_QUOTA)]


class QuotaSet(BaseModel):
    """Limits per resource type; PATCH sets only the ones given."""

    model_config = {"extra": "forbid", "strict": True}
    vpcs: QuotaLimit | None = None
    subnets: QuotaLimit | None = None
    ports: QuotaLimit | None = None
    routers: QuotaLimit | None = None
    security_groups: QuotaLimit | None = None
    security_group_rules: QuotaLimit | None = None
    floating_ips: QuotaLimit | None = None
    network_acls: QuotaLimit | None = None
    network_acl_entries: QuotaLimit | None = None
    load_balancers: QuotaLimit | None = None
    listeners: QuotaLimit | None = None
    pools: QuotaLimit | None = None
    members: QuotaLimit | None = None
    health_monitors: QuotaLimit | None = None


class Quotas(BaseModel):
    tenant_id: str
    vpcs: int
    subnets: int
    ports: int
    routers: int
    security_groups: int
    security_group_rules: int
    floating_ips: int
    network_acls: int
    network_acl_entries: int
    load_balancers: int
    listeners: int
    pools: int
    members: int
    health_monitors: int


@router.post("", status_code=status.HTTP_201_CREATED, responses=problems(401, 403, 409, 422))
def create_tenant(body: TenantCreate, session: SessionDep, _: AdminDep) -> TenantOut:
    if tenant_named(session, body.name):
        raise Conflict(f"a tenant named {body.name!r} exists")
    tenant = Tenant(**body.model_dump())
    session.add(tenant)
    session.flush()
    return TenantOut.model_validate(tenant)


@router.get("", responses=problems(400, 401, 403, 422))
def list_tenants(pages: PagesDep, who: AdminDep, name: str | None = None) -> TenantList:
    return pages.of(TenantList, Tenant, who, {"name": name})


@router.get("/{tenant_id}", responses=problems(401, 403, 404))
def get_tenant(tenant_id: str, _: AdminDep, lookup: LookupDep) -> TenantOut:
    return TenantOut.model_validate(lookup.target(Tenant, tenant_id))


@router.patch("/{tenant_id}", responses=problems(401, 403, 404, 409, 412, 422))
def update_tenant(
    tenant_id: str, body: TenantUpdate, session: SessionDep, _: AdminDep, lookup: LookupDep
) -> TenantOut:
    tenant = lookup.target(Tenant, tenant_id)
    changes = body.changes(tenant)
    if "name" in changes and tenant_named(session, changes["name"]) not in (None, tenant.id):
        raise Conflict(f"a tenant named {changes['name']!r} exists")
    apply_changes(tenant, changes)
    session.flush()
    return TenantOut.model_validate(tenant)


@router.delete(
    "/{tenant_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 403, 404, 409, 412),
)
def delete_tenant(
    tenant_id: str, session: SessionDep, _: AdminDep, lookup: LookupDep, tokens: TokensDep
) -> None:
    tenant = lookup.target(Tenant, tenant_id)
    blockers.tenant(session, tenant.id)
    delete_with_tokens(session, tenant)
    session.info["after_commit"].append(tokens.revoked)  # refused at once in this process


@router.post(
    "/{tenant_id}/tokens",
    status_code=status.HTTP_201_CREATED,
    responses=problems(401, 403, 404),
)
def create_tenant_token(
    tenant_id: str, session: SessionDep, _: AdminDep, lookup: LookupDep
) -> TokenOut:
    lookup.get(Tenant, tenant_id)
    token = "vpcd_" + secrets.token_urlsafe(32)
    row = add_token(session, token, tenant_id)
    return TokenOut(id=row.id, tenant_id=tenant_id, token=token)


@router.get("/{tenant_id}/quotas", responses=problems(401, 403, 404))
def get_quotas(tenant_id: str, session: SessionDep, _: AdminDep, lookup: LookupDep) -> Quotas:
    lookup.get(Tenant, tenant_id)
    return Quotas(tenant_id=tenant_id, **quotas_of(session, tenant_id))


@router.patch("/{tenant_id}/quotas", responses=problems(401, 403, 404, 422))
def update_quotas(
    tenant_id: str, body: QuotaSet, session: SessionDep, _: AdminDep, lookup: LookupDep
) -> Quotas:
    lookup.get(Tenant, tenant_id)
    set_quotas(session, tenant_id, body.model_dump(exclude_none=True))
    return Quotas(tenant_id=tenant_id, **quotas_of(session, tenant_id))
