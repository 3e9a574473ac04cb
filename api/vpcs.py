"""VPCs. Each is created with its default security group, which goes with it."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel

from api.common import (
    Description,
    Input,
    Limit,
    Name,
    NotNull,
    PageToken,
    Patch,
    Tags,
    TenantOutput,
    apply_changes,
    check_if_match,
    created,
    decode_token,
    encode_token,
    owned,
    set_etag,
)
from api.deps import PrincipalDep, SessionDep, TenantDep
from api.errors import InUse, problems
from api.netcheck import VpcCidr
from api.services import quotas
from models import SecurityGroup, Vpc
from models.base import new_id
from models.network import subnets_of_vpc
from models.query import filtered, page, scoped
from models.routing import routers_of_vpc
from models.security import add_default_rules, delete_group, groups_of_vpc

router = APIRouter(prefix="/v1/vpcs", tags=["vpcs"])


class VpcCreate(Input):
    name: Name = ""
    description: Description = ""
    cidr: VpcCidr
    tags: Tags = []


class VpcUpdate(Patch):
    immutable = frozenset({"cidr"})
    name: Name | None = NotNull()
    description: Description | None = NotNull()
    tags: Tags | None = NotNull()


class VpcOut(TenantOutput):
    name: str
    description: str
    cidr: str
    tags: list[str]
    default_security_group_id: str | None


class VpcList(BaseModel):
    items: list[VpcOut]
    next_page_token: str | None = None


@router.post("", status_code=status.HTTP_201_CREATED, responses=problems(401, 403, 409, 422))
def create_vpc(
    body: VpcCreate, request: Request, response: Response, session: SessionDep, who: TenantDep
) -> VpcOut:
    assert who.tenant_id is not None
    quotas.check(session, who.tenant_id, "vpcs", Vpc)
    group_id = new_id()
    vpc = Vpc(tenant_id=who.tenant_id, default_security_group_id=group_id, **body.model_dump())
    session.add(vpc)
    session.flush()
    group = SecurityGroup(
        id=group_id,
        tenant_id=who.tenant_id,
        vpc_id=vpc.id,
        name="default",
        description="default security group of the VPC",
        is_default=True,
    )
    session.add(group)
    session.flush()
    session.add_all(add_default_rules(group))
    session.flush()
    created(request, response, f"/v1/vpcs/{vpc.id}", vpc)
    return VpcOut.model_validate(vpc)


@router.get("", responses=problems(400, 401, 422))
def list_vpcs(
    session: SessionDep,
    who: PrincipalDep,
    name: str | None = None,
    tag: str | None = None,
    cidr: str | None = None,
    limit: Limit = 100,
    page_token: PageToken = None,
) -> VpcList:
    stmt = scoped(sa.select(Vpc), Vpc, who.tenant_id)
    stmt = filtered(session, Vpc, stmt, {"name": name, "tag": tag, "cidr": cidr})
    rows, cursor = page(session, Vpc, stmt, limit, decode_token(page_token))
    return VpcList(
        items=[VpcOut.model_validate(r) for r in rows], next_page_token=encode_token(cursor)
    )


@router.get("/{vpc_id}", responses=problems(401, 404))
def get_vpc(vpc_id: str, response: Response, session: SessionDep, who: PrincipalDep) -> VpcOut:
    vpc = owned(session, Vpc, vpc_id, who, "vpc")
    set_etag(response, vpc)
    return VpcOut.model_validate(vpc)


@router.patch("/{vpc_id}", responses=problems(401, 404, 409, 412, 422))
def update_vpc(
    vpc_id: str,
    body: VpcUpdate,
    request: Request,
    response: Response,
    session: SessionDep,
    who: PrincipalDep,
) -> VpcOut:
    vpc = owned(session, Vpc, vpc_id, who, "vpc")
    check_if_match(request, vpc)
    apply_changes(vpc, body.changes())
    session.flush()
    set_etag(response, vpc)
    return VpcOut.model_validate(vpc)


@router.delete(
    "/{vpc_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(401, 404, 409, 412)
)
def delete_vpc(vpc_id: str, request: Request, session: SessionDep, who: PrincipalDep) -> None:
    vpc = owned(session, Vpc, vpc_id, who, "vpc")
    check_if_match(request, vpc)
    blocking = [("subnet", s.id) for s in subnets_of_vpc(session, vpc.id)]
    blocking += [("router", r) for r in routers_of_vpc(session, vpc.id)]
    blocking += [("security_group", g) for g in groups_of_vpc(session, vpc.id, user_only=True)]
    if blocking:
        raise InUse("the VPC still has subnets, routers or security groups", blocking)
    if vpc.default_security_group_id:
        group = session.get(SecurityGroup, vpc.default_security_group_id)
        if group is not None:
            delete_group(session, group)
            session.flush()
    session.delete(vpc)
