"""Network ACLs (stateless, ordered, per subnet, as AWS's) and their entries.

Entries are their own collection, `/v1/network-acl-entries`, as security group rules
are (`/v1/security-group-rules`): each has an id, an ETag and the full contract. A
subnet is associated by PATCHing its `network_acl_id` (null: no ACL, all allowed).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, status
from pydantic import Field, model_validator

from api.deps import NotifierDep, PrincipalDep, SessionDep, TenantDep
from api.errors import Conflict, problems
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
from models import NetworkAcl, NetworkAclEntry, Vpc
from models.nacl import entry_taken, mark_acl_changed, subnets_with_acl

router = APIRouter(tags=["network-acls"], route_class=ResourceRoute)

RuleNumber = Annotated[int, Field(ge=1, le=32766, description="Evaluated lowest first.")]


class NetworkAclCreate(VpcChildCreate):
    pass


class NetworkAclUpdate(VpcChildUpdate):
    pass


class NetworkAclOut(VpcChildOutput):
    subnet_ids: list[str] = []


class NetworkAclList(Page[NetworkAclOut]):
    pass


class NetworkAclEntryCreate(Input):
    network_acl_id: str
    rule_number: RuleNumber
    direction: Literal["ingress", "egress"]
    action: Literal["allow", "deny"]
    protocol: Literal["tcp", "udp", "icmp", "any"]
    port_min: PortNumber | None = None
    port_max: PortNumber | None = None
    cidr: AnyCidr
    description: Description = ""

    @model_validator(mode="after")
    def _ports(self) -> NetworkAclEntryCreate:
        check_port_range(self.protocol, self.port_min, self.port_max)
        return self


class NetworkAclEntryUpdate(Patch):
    immutable = frozenset(
        {
            "network_acl_id",
            "rule_number",
            "direction",
            "protocol",
            "port_min",
            "port_max",
            "cidr",
        }
    )
    action: Literal["allow", "deny"] | None = NotNull()
    description: Description | None = NotNull()


class NetworkAclEntryOut(TenantOutput):
    network_acl_id: str
    rule_number: int
    direction: str
    action: str
    protocol: str
    port_min: int | None
    port_max: int | None
    cidr: str
    description: str


class NetworkAclEntryList(Page[NetworkAclEntryOut]):
    pass


def _out(session: SessionDep, acl: NetworkAcl) -> NetworkAclOut:
    out = NetworkAclOut.model_validate(acl)
    out.subnet_ids = sorted(subnets_with_acl(session, acl.id))
    return out


# -- ACLs --------------------------------------------------------------------------------


@router.post(
    "/v1/network-acls",
    status_code=status.HTTP_201_CREATED,
    responses=problems(401, 403, 404, 409, 422),
)
def create_network_acl(
    body: NetworkAclCreate, session: SessionDep, who: TenantDep, lookup: LookupDep
) -> NetworkAclOut:
    assert who.tenant_id is not None
    lookup.get(Vpc, body.vpc_id)
    quotas.check(session, who.tenant_id, "network_acls", NetworkAcl)
    acl = NetworkAcl(tenant_id=who.tenant_id, status="active", **body.model_dump())
    session.add(acl)
    session.flush()
    return _out(session, acl)


@router.get("/v1/network-acls", responses=problems(400, 401, 422))
def list_network_acls(
    pages: PagesDep,
    session: SessionDep,
    who: PrincipalDep,
    vpc_id: str | None = None,
    name: str | None = None,
    tag: str | None = None,
) -> NetworkAclList:
    return pages.of(
        NetworkAclList,
        NetworkAcl,
        who,
        {"vpc_id": vpc_id, "name": name, "tag": tag},
        render=lambda a: _out(session, a),
    )


@router.get("/v1/network-acls/{network_acl_id}", responses=problems(401, 404))
def get_network_acl(network_acl_id: str, session: SessionDep, lookup: LookupDep) -> NetworkAclOut:
    return _out(session, lookup.target(NetworkAcl, network_acl_id))


@router.patch("/v1/network-acls/{network_acl_id}", responses=problems(401, 404, 409, 412, 422))
def update_network_acl(
    network_acl_id: str, body: NetworkAclUpdate, session: SessionDep, lookup: LookupDep
) -> NetworkAclOut:
    acl = lookup.target(NetworkAcl, network_acl_id)
    apply_changes(acl, body.changes(acl))
    session.flush()
    return _out(session, acl)


@router.delete(
    "/v1/network-acls/{network_acl_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 404, 409, 412),
)
def delete_network_acl(network_acl_id: str, session: SessionDep, lookup: LookupDep) -> None:
    acl = lookup.target(NetworkAcl, network_acl_id)
    blockers.network_acl(session, acl.id)
    session.delete(acl)


# -- entries -----------------------------------------------------------------------------


@router.post(
    "/v1/network-acl-entries",
    status_code=status.HTTP_201_CREATED,
    responses=problems(401, 403, 404, 409, 422),
)
def create_network_acl_entry(
    body: NetworkAclEntryCreate,
    session: SessionDep,
    who: TenantDep,
    lookup: LookupDep,
    notifier: NotifierDep,
) -> NetworkAclEntryOut:
    assert who.tenant_id is not None
    acl = lookup.get(NetworkAcl, body.network_acl_id)
    taken = entry_taken(session, acl.id, body.direction, body.rule_number)
    if taken is not None:
        raise Conflict(f"the ACL already has {body.direction} entry {body.rule_number} ({taken})")
    quotas.check(session, who.tenant_id, "network_acl_entries", NetworkAclEntry)
    entry = NetworkAclEntry(tenant_id=who.tenant_id, **body.model_dump())
    session.add(entry)
    mark_acl_changed(session, acl)
    session.flush()
    notifier.resources_changed(session, "network_acl", {acl.id})
    return NetworkAclEntryOut.model_validate(entry)


@router.get("/v1/network-acl-entries", responses=problems(400, 401, 422))
def list_network_acl_entries(
    pages: PagesDep,
    who: PrincipalDep,
    network_acl_id: str | None = None,
    direction: Literal["ingress", "egress"] | None = None,
) -> NetworkAclEntryList:
    return pages.of(
        NetworkAclEntryList,
        NetworkAclEntry,
        who,
        {"network_acl_id": network_acl_id, "direction": direction},
    )


@router.get("/v1/network-acl-entries/{entry_id}", responses=problems(401, 404))
def get_network_acl_entry(entry_id: str, lookup: LookupDep) -> NetworkAclEntryOut:
    return NetworkAclEntryOut.model_validate(lookup.target(NetworkAclEntry, entry_id))


@router.patch("/v1/network-acl-entries/{entry_id}", responses=problems(401, 404, 409, 412, 422))
def update_network_acl_entry(
    entry_id: str,
    body: NetworkAclEntryUpdate,
    session: SessionDep,
    lookup: LookupDep,
    notifier: NotifierDep,
) -> NetworkAclEntryOut:
    entry = lookup.target(NetworkAclEntry, entry_id)
    changes = body.changes(entry)
    action_changed = "action" in changes and changes["action"] != entry.action
    apply_changes(entry, changes)
    if action_changed:
        mark_acl_changed(session, session.get(NetworkAcl, entry.network_acl_id))
        notifier.resources_changed(session, "network_acl", {entry.network_acl_id})
    session.flush()
    return NetworkAclEntryOut.model_validate(entry)


@router.delete(
    "/v1/network-acl-entries/{entry_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 404, 409, 412),
)
def delete_network_acl_entry(
    entry_id: str, session: SessionDep, lookup: LookupDep, notifier: NotifierDep
) -> None:
    entry = lookup.target(NetworkAclEntry, entry_id)
    mark_acl_changed(session, session.get(NetworkAcl, entry.network_acl_id))
    notifier.resources_changed(session, "network_acl", {entry.network_acl_id})
    session.delete(entry)
