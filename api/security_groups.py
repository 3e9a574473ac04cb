"""Security groups and their rules (stateful, allow-only, as in AWS and Neutron)."""

from __future__ import annotations

from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, Field, model_validator

from api.common import (
    Description,
    Input,
    Limit,
    Name,
    NotNull,
    PageToken,
    Patch,
    RealisedOutput,
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
from api.errors import Conflict, InUse, Invalid, problems
from api.netcheck import AnyCidr
from api.services import quotas
from models import SecurityGroup, SecurityGroupRule, Vpc
from models.network import ports_in_group
from models.query import filtered, page, scoped
from models.security import delete_group, rules_referencing

router = APIRouter(tags=["security-groups"])

PortNumber = Annotated[int, Field(ge=1, le=65535)]


class SecurityGroupCreate(Input):
    vpc_id: str
    name: Name = ""
    description: Description = ""
    tags: Tags = []


class SecurityGroupUpdate(Patch):
    immutable = frozenset({"vpc_id"})
    name: Name | None = NotNull()
    description: Description | None = NotNull()
    tags: Tags | None = NotNull()


class SecurityGroupOut(RealisedOutput):
    vpc_id: str
    name: str
    description: str
    tags: list[str]
    is_default: bool


class SecurityGroupList(BaseModel):
    items: list[SecurityGroupOut]
    next_page_token: str | None = None


class SecurityGroupRuleCreate(Input):
    security_group_id: str
    description: Description = ""
    direction: Literal["ingress", "egress"]
    protocol: Literal["tcp", "udp", "icmp", "any"]
    port_min: PortNumber | None = None
    port_max: PortNumber | None = None
    remote_cidr: AnyCidr | None = None
    remote_group_id: str | None = None

    @model_validator(mode="after")
    def _combinations(self) -> SecurityGroupRuleCreate:
        ports_given = self.port_min is not None or self.port_max is not None
        if ports_given and self.protocol not in ("tcp", "udp"):
            field = "port_min" if self.port_min is not None else "port_max"
            raise Invalid(f"body.{field}", f"ports apply only to tcp and udp, not {self.protocol}")
        if (
            self.port_min is not None
            and self.port_max is not None
            and self.port_min > self.port_max
        ):
            raise Invalid("body.port_min", f"port_min {self.port_min} > port_max {self.port_max}")
        if self.remote_cidr is not None and self.remote_group_id is not None:
            raise Invalid("body.remote_group_id", "give remote_cidr or remote_group_id, not both")
        return self


class SecurityGroupRuleUpdate(Patch):
    immutable = frozenset(
        {
            "security_group_id",
            "direction",
            "protocol",
            "port_min",
            "port_max",
            "remote_cidr",
            "remote_group_id",
        }
    )
    description: Description | None = NotNull()


class SecurityGroupRuleOut(TenantOutput):
    security_group_id: str
    description: str
    direction: str
    protocol: str
    port_min: int | None
    port_max: int | None
    remote_cidr: str | None
    remote_group_id: str | None


class SecurityGroupRuleList(BaseModel):
    items: list[SecurityGroupRuleOut]
    next_page_token: str | None = None


# -- groups ------------------------------------------------------------------------------


@router.post(
    "/v1/security-groups",
    status_code=status.HTTP_201_CREATED,
    responses=problems(401, 403, 404, 409, 422),
)
def create_security_group(
    body: SecurityGroupCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    who: TenantDep,
) -> SecurityGroupOut:
    assert who.tenant_id is not None
    owned(session, Vpc, body.vpc_id, who, "vpc")
    quotas.check(session, who.tenant_id, "security_groups", SecurityGroup)
    group = SecurityGroup(tenant_id=who.tenant_id, **body.model_dump())
    session.add(group)
    session.flush()
    created(request, response, f"/v1/security-groups/{group.id}", group)
    return SecurityGroupOut.model_validate(group)


@router.get("/v1/security-groups", responses=problems(400, 401, 422))
def list_security_groups(
    session: SessionDep,
    who: PrincipalDep,
    vpc_id: str | None = None,
    name: str | None = None,
    tag: str | None = None,
    limit: Limit = 100,
    page_token: PageToken = None,
) -> SecurityGroupList:
    stmt = scoped(sa.select(SecurityGroup), SecurityGroup, who.tenant_id)
    stmt = filtered(session, SecurityGroup, stmt, {"vpc_id": vpc_id, "name": name, "tag": tag})
    rows, cursor = page(session, SecurityGroup, stmt, limit, decode_token(page_token))
    return SecurityGroupList(
        items=[SecurityGroupOut.model_validate(r) for r in rows],
        next_page_token=encode_token(cursor),
    )


@router.get("/v1/security-groups/{security_group_id}", responses=problems(401, 404))
def get_security_group(
    security_group_id: str, response: Response, session: SessionDep, who: PrincipalDep
) -> SecurityGroupOut:
    group = owned(session, SecurityGroup, security_group_id, who, "security_group")
    set_etag(response, group)
    return SecurityGroupOut.model_validate(group)


@router.patch(
    "/v1/security-groups/{security_group_id}", responses=problems(401, 404, 409, 412, 422)
)
def update_security_group(
    security_group_id: str,
    body: SecurityGroupUpdate,
    request: Request,
    response: Response,
    session: SessionDep,
    who: PrincipalDep,
) -> SecurityGroupOut:
    group = owned(session, SecurityGroup, security_group_id, who, "security_group")
    check_if_match(request, group)
    apply_changes(group, body.changes())
    session.flush()
    set_etag(response, group)
    return SecurityGroupOut.model_validate(group)


@router.delete(
    "/v1/security-groups/{security_group_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 404, 409, 412),
)
def delete_security_group(
    security_group_id: str, request: Request, session: SessionDep, who: PrincipalDep
) -> None:
    group = owned(session, SecurityGroup, security_group_id, who, "security_group")
    check_if_match(request, group)
    if group.is_default:
        raise Conflict("the default security group goes with its VPC; delete the VPC")
    blocking = [("port", p) for p in ports_in_group(session, group.id)]
    blocking += [("security_group_rule", r) for r in rules_referencing(session, group.id)]
    if blocking:
        raise InUse("the security group is used by ports or other groups' rules", blocking)
    delete_group(session, group)


# -- rules -------------------------------------------------------------------------------


@router.post(
    "/v1/security-group-rules",
    status_code=status.HTTP_201_CREATED,
    responses=problems(401, 403, 404, 409, 422),
)
def create_security_group_rule(
    body: SecurityGroupRuleCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    who: TenantDep,
) -> SecurityGroupRuleOut:
    assert who.tenant_id is not None
    group = owned(session, SecurityGroup, body.security_group_id, who, "security_group")
    if body.remote_group_id is not None:
        remote = owned(session, SecurityGroup, body.remote_group_id, who, "security_group")
        if remote.vpc_id != group.vpc_id:
            raise Invalid("body.remote_group_id", "the remote group belongs to another VPC")
    quotas.check(session, who.tenant_id, "security_group_rules", SecurityGroupRule)
    rule = SecurityGroupRule(tenant_id=who.tenant_id, **body.model_dump())
    session.add(rule)
    group.touch()
    group.status = "pending"
    session.flush()
    created(request, response, f"/v1/security-group-rules/{rule.id}", rule)
    return SecurityGroupRuleOut.model_validate(rule)


@router.get("/v1/security-group-rules", responses=problems(400, 401, 422))
def list_security_group_rules(
    session: SessionDep,
    who: PrincipalDep,
    security_group_id: str | None = None,
    remote_group_id: str | None = None,
    direction: Literal["ingress", "egress"] | None = None,
    limit: Limit = 100,
    page_token: PageToken = None,
) -> SecurityGroupRuleList:
    stmt = scoped(sa.select(SecurityGroupRule), SecurityGroupRule, who.tenant_id)
    stmt = filtered(
        session,
        SecurityGroupRule,
        stmt,
        {
            "security_group_id": security_group_id,
            "remote_group_id": remote_group_id,
            "direction": direction,
        },
    )
    rows, cursor = page(session, SecurityGroupRule, stmt, limit, decode_token(page_token))
    return SecurityGroupRuleList(
        items=[SecurityGroupRuleOut.model_validate(r) for r in rows],
        next_page_token=encode_token(cursor),
    )


@router.get("/v1/security-group-rules/{rule_id}", responses=problems(401, 404))
def get_security_group_rule(
    rule_id: str, response: Response, session: SessionDep, who: PrincipalDep
) -> SecurityGroupRuleOut:
    rule = owned(session, SecurityGroupRule, rule_id, who, "security_group_rule")
    set_etag(response, rule)
    return SecurityGroupRuleOut.model_validate(rule)


@router.patch("/v1/security-group-rules/{rule_id}", responses=problems(401, 404, 409, 412, 422))
def update_security_group_rule(
    rule_id: str,
    body: SecurityGroupRuleUpdate,
    request: Request,
    response: Response,
    session: SessionDep,
    who: PrincipalDep,
) -> SecurityGroupRuleOut:
    rule = owned(session, SecurityGroupRule, rule_id, who, "security_group_rule")
    check_if_match(request, rule)
    apply_changes(rule, body.changes())
    session.flush()
    set_etag(response, rule)
    return SecurityGroupRuleOut.model_validate(rule)


@router.delete(
    "/v1/security-group-rules/{rule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 404, 409, 412),
)
def delete_security_group_rule(
    rule_id: str, request: Request, session: SessionDep, who: PrincipalDep
) -> None:
    rule = owned(session, SecurityGroupRule, rule_id, who, "security_group_rule")
    check_if_match(request, rule)
    group = session.get(SecurityGroup, rule.security_group_id)
    if group is not None:
        group.touch()
        group.status = "pending"
    session.delete(rule)
