"""Security groups and their rules (stateful, allow-only, as in AWS and Neutron)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, status
from pydantic import model_validator

from api.deps import NotifierDep, PrincipalDep, SessionDep, TenantDep
from api.errors import Invalid, problems
from api.netcheck import AnyCidr
from api.rest.pages import Page, PagesDep
from api.rest.preconditions import LookupDep, ResourceRoute
from api.rest.schemas import (
    Description,
    Input,
    NotNull,
    Patch,
    PortNumber,
    TenantOutput,
    VpcChildCreate,
    VpcChildOutput,
    VpcChildUpdate,
    apply_changes,
    check_port_range,
)
from api.services import blockers, quotas
from models import SecurityGroup, SecurityGroupRule, Vpc
from models.security import delete_group, mark_group_changed

router = APIRouter(tags=["security-groups"], route_class=ResourceRoute)


class SecurityGroupCreate(VpcChildCreate):
    pass


class SecurityGroupUpdate(VpcChildUpdate):
    pass


class SecurityGroupOut(VpcChildOutput):
    is_default: bool


class SecurityGroupList(Page[SecurityGroupOut]):
    pass


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
        check_port_range(self.protocol, self.port_min, self.port_max)
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


class SecurityGroupRuleList(Page[SecurityGroupRuleOut]):
    pass


# -- groups ------------------------------------------------------------------------------


@router.post(
    "/v1/security-groups",
    status_code=status.HTTP_201_CREATED,
    responses=problems(401, 403, 404, 409, 422),
)
def create_security_group(
    body: SecurityGroupCreate, session: SessionDep, who: TenantDep, lookup: LookupDep
) -> SecurityGroupOut:
    assert who.tenant_id is not None
    lookup.get(Vpc, body.vpc_id)
    quotas.check(session, who.tenant_id, "security_groups", SecurityGroup)
    group = SecurityGroup(tenant_id=who.tenant_id, **body.model_dump())
    session.add(group)
    session.flush()
    return SecurityGroupOut.model_validate(group)


@router.get("/v1/security-groups", responses=problems(400, 401, 422))
def list_security_groups(
    pages: PagesDep,
    who: PrincipalDep,
    vpc_id: str | None = None,
    name: str | None = None,
    tag: str | None = None,
) -> SecurityGroupList:
    return pages.of(
        SecurityGroupList, SecurityGroup, who, {"vpc_id": vpc_id, "name": name, "tag": tag}
    )


@router.get("/v1/security-groups/{security_group_id}", responses=problems(401, 404))
def get_security_group(security_group_id: str, lookup: LookupDep) -> SecurityGroupOut:
    return SecurityGroupOut.model_validate(lookup.target(SecurityGroup, security_group_id))


@router.patch(
    "/v1/security-groups/{security_group_id}", responses=problems(401, 404, 409, 412, 422)
)
def update_security_group(
    security_group_id: str, body: SecurityGroupUpdate, session: SessionDep, lookup: LookupDep
) -> SecurityGroupOut:
    group = lookup.target(SecurityGroup, security_group_id)
    apply_changes(group, body.changes(group))
    session.flush()
    return SecurityGroupOut.model_validate(group)


@router.delete(
    "/v1/security-groups/{security_group_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 404, 409, 412),
)
def delete_security_group(security_group_id: str, session: SessionDep, lookup: LookupDep) -> None:
    group = lookup.target(SecurityGroup, security_group_id)
    blockers.security_group(session, group)
    delete_group(session, group)


# -- rules -------------------------------------------------------------------------------


@router.post(
    "/v1/security-group-rules",
    status_code=status.HTTP_201_CREATED,
    responses=problems(401, 403, 404, 409, 422),
)
def create_security_group_rule(
    body: SecurityGroupRuleCreate,
    session: SessionDep,
    who: TenantDep,
    lookup: LookupDep,
    notifier: NotifierDep,
) -> SecurityGroupRuleOut:
    assert who.tenant_id is not None
    group = lookup.get(SecurityGroup, body.security_group_id)
    if body.remote_group_id is not None:
        remote = lookup.get(SecurityGroup, body.remote_group_id)
        if remote.vpc_id != group.vpc_id:
            raise Invalid("body.remote_group_id", "the remote group belongs to another VPC")
    quotas.check(session, who.tenant_id, "security_group_rules", SecurityGroupRule)
    rule = SecurityGroupRule(tenant_id=who.tenant_id, **body.model_dump())
    session.add(rule)
    mark_group_changed(session, group)
    session.flush()
    notifier.groups_changed(session, {group.id})
    return SecurityGroupRuleOut.model_validate(rule)


@router.get("/v1/security-group-rules", responses=problems(400, 401, 422))
def list_security_group_rules(
    pages: PagesDep,
    who: PrincipalDep,
    security_group_id: str | None = None,
    remote_group_id: str | None = None,
    direction: Literal["ingress", "egress"] | None = None,
) -> SecurityGroupRuleList:
    return pages.of(
        SecurityGroupRuleList,
        SecurityGroupRule,
        who,
        {
            "security_group_id": security_group_id,
            "remote_group_id": remote_group_id,
            "direction": direction,
        },
    )


@router.get("/v1/security-group-rules/{rule_id}", responses=problems(401, 404))
def get_security_group_rule(rule_id: str, lookup: LookupDep) -> SecurityGroupRuleOut:
    return SecurityGroupRuleOut.model_validate(lookup.target(SecurityGroupRule, rule_id))


@router.patch("/v1/security-group-rules/{rule_id}", responses=problems(401, 404, 409, 412, 422))
def update_security_group_rule(
    rule_id: str, body: SecurityGroupRuleUpdate, session: SessionDep, lookup: LookupDep
) -> SecurityGroupRuleOut:
    rule = lookup.target(SecurityGroupRule, rule_id)
    apply_changes(rule, body.changes(rule))
    session.flush()
    return SecurityGroupRuleOut.model_validate(rule)


@router.delete(
    "/v1/security-group-rules/{rule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 404, 409, 412),
)
def delete_security_group_rule(
    rule_id: str, session: SessionDep, lookup: LookupDep, notifier: NotifierDep
) -> None:
    rule = lookup.target(SecurityGroupRule, rule_id)
    mark_group_changed(session, session.get(SecurityGroup, rule.security_group_id))
    notifier.groups_changed(session, {rule.security_group_id})
    session.delete(rule)
