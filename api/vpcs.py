"""VPCs. Each is created with its default security group, which goes with it."""

from __future__ import annotations

from fastapi import APIRouter, status
from pydantic import ConfigDict, Field

from api.deps import NotifierDep, PrincipalDep, SessionDep, TenantDep
from api.errors import problems
from api.netcheck import DnsDomain, VpcCidr, default_dns_domain
from api.rest.pages import Page, PagesDep
from api.rest.preconditions import LookupDep, ResourceRoute
from api.rest.schemas import (
    Description,
    Input,
    Name,
    NotNull,
    Patch,
    Tags,
    TenantOutput,
    apply_changes,
)
from api.services import blockers, quotas
from models import Vpc
from models.base import new_id
from models.security import add_default_group, delete_default_group

router = APIRouter(prefix="/v1/vpcs", tags=["vpcs"], route_class=ResourceRoute)


class VpcCreate(Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"name": "web", "cidr": "10.0.0.0/16", "tags": ["env:dev"]}]
        }
    )

    name: Name = ""
    description: Description = ""
    cidr: VpcCidr
    dns_domain: DnsDomain | None = Field(
        default=None,
        description="Names of the VPC's ports resolve under it; "
        "defaults to <vpc-name>.vpc.internal.",
    )
    tags: Tags = []


class VpcUpdate(Patch):
    immutable = frozenset({"cidr"})
    name: Name | None = NotNull()
    description: Description | None = NotNull()
    dns_domain: DnsDomain | None = NotNull()
    tags: Tags | None = NotNull()


class VpcOut(TenantOutput):
    name: str
    description: str
    cidr: str
    dns_domain: str
    tags: list[str]
    default_security_group_id: str | None


class VpcList(Page[VpcOut]):
    pass


@router.post("", status_code=status.HTTP_201_CREATED, responses=problems(401, 403, 409, 422))
def create_vpc(body: VpcCreate, session: SessionDep, who: TenantDep) -> VpcOut:
    assert who.tenant_id is not None
    quotas.check(session, who.tenant_id, "vpcs", Vpc)
    group_id, vpc_id = new_id(), new_id()
    fields = body.model_dump()
    if fields["dns_domain"] is None:
        fields["dns_domain"] = default_dns_domain(body.name, vpc_id)
    vpc = Vpc(id=vpc_id, tenant_id=who.tenant_id, default_security_group_id=group_id, **fields)
    session.add(vpc)
    session.flush()
    add_default_group(session, who.tenant_id, vpc.id, group_id)
    return VpcOut.model_validate(vpc)


@router.get("", responses=problems(400, 401, 422))
def list_vpcs(
    pages: PagesDep,
    who: PrincipalDep,
    name: str | None = None,
    tag: str | None = None,
    cidr: str | None = None,
) -> VpcList:
    return pages.of(VpcList, Vpc, who, {"name": name, "tag": tag, "cidr": cidr})


@router.get("/{vpc_id}", responses=problems(401, 404))
def get_vpc(vpc_id: str, lookup: LookupDep) -> VpcOut:
    return VpcOut.model_validate(lookup.target(Vpc, vpc_id))


@router.patch("/{vpc_id}", responses=problems(401, 404, 409, 412, 422))
def update_vpc(
    vpc_id: str, body: VpcUpdate, session: SessionDep, lookup: LookupDep, notifier: NotifierDep
) -> VpcOut:
    vpc = lookup.target(Vpc, vpc_id)
    old_domain = vpc.dns_domain
    apply_changes(vpc, body.changes(vpc))
    if vpc.dns_domain != old_domain:
        notifier.names_changed(session, vpc.id)
    session.flush()
    return VpcOut.model_validate(vpc)


@router.delete(
    "/{vpc_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(401, 404, 409, 412)
)
def delete_vpc(vpc_id: str, session: SessionDep, lookup: LookupDep) -> None:
    vpc = lookup.target(Vpc, vpc_id)
    blockers.vpc(session, vpc.id)
    delete_default_group(session, vpc.default_security_group_id)
    session.delete(vpc)
