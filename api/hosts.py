"""Hosts (admin): where agents run; status is derived from the last heartbeat."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import AdminDep, NotifierDep, SessionDep
from api.errors import Conflict, problems
from api.netcheck import HostName, IPv4
from api.rest.pages import Page, PagesDep
from api.rest.preconditions import LookupDep, ResourceRoute
from api.rest.schemas import Input, NotNull, Output, Patch, apply_changes
from api.services import blockers
from models import Host
from models.base import utcnow
from models.host import HEARTBEAT_TIMEOUT, host_named, is_up
from models.hoststate import subnets_on_host

router = APIRouter(prefix="/v1/hosts", tags=["hosts"], route_class=ResourceRoute)

__all__ = ["HEARTBEAT_TIMEOUT", "router"]
Roles = Annotated[list[Literal["compute", "network"]], Field(min_length=1, max_length=2)]


class HostCreate(Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"name": "compute-1", "vtep_ip": "192.0.2.11", "roles": ["compute"]}]
        }
    )

    name: HostName
    vtep_ip: IPv4
    roles: Roles = ["compute"]


class HostUpdate(Patch):
    immutable = frozenset({"name"})
    vtep_ip: IPv4 | None = NotNull()
    roles: Roles | None = NotNull()


class HostSync(BaseModel):
    """The agent's last applied sync."""

    at: datetime
    duration_ms: float | None
    full: bool


class HostOut(Output):
    name: str
    vtep_ip: str
    roles: list[str]
    status: Literal["up", "down"] = Field(description="down after missed heartbeats")
    last_heartbeat: datetime | None
    realised_revision: int
    last_sync: HostSync | None
    protocol_version: int = Field(description="The host-state protocol its agent speaks.")
    sections: list[str] = Field(description="The document sections its agent supports.")
    status_detail: str | None = Field(
        description="Why its agent's last report failed or refused a document."
    )
    capabilities: list[str] = Field(
        description="Kernel features its agent detected: vxlan, macvlan, 8021q, "
        "br_netfilter, ipset."
    )
    physical_networks: list[str] = Field(
        description="Physical networks its agent maps to an interface (flat subnets)."
    )


class HostList(Page[HostOut]):
    pass


def render(host: Host) -> HostOut:
    beat = host.last_heartbeat
    alive = is_up(host, utcnow())
    names = ("id", "created_at", "updated_at", "revision", "name", "vtep_ip", "roles")
    advertised = (
        "protocol_version",
        "sections",
        "status_detail",
        "capabilities",
        "physical_networks",
    )
    sync = None
    if host.last_sync_at is not None:
        sync = HostSync(
            at=host.last_sync_at, duration_ms=host.last_sync_ms, full=bool(host.last_sync_full)
        )
    return HostOut.model_validate(
        {
            **{k: getattr(host, k) for k in names + advertised},
            "status": "up" if alive else "down",
            "last_heartbeat": beat,
            "realised_revision": host.realised_revision,
            "last_sync": sync,
        }
    )


@router.post("", status_code=status.HTTP_201_CREATED, responses=problems(401, 403, 409, 422))
def create_host(body: HostCreate, session: SessionDep, _: AdminDep) -> HostOut:
    if host_named(session, body.name):
        raise Conflict(f"a host named {body.name!r} exists")
    host = Host(**body.model_dump())
    session.add(host)
    session.flush()
    return render(host)


@router.get("", responses=problems(400, 401, 403, 422))
def list_hosts(pages: PagesDep, who: AdminDep, name: str | None = None) -> HostList:
    return pages.of(HostList, Host, who, {"name": name}, render=render)


@router.get("/{host_id}", responses=problems(401, 403, 404))
def get_host(host_id: str, _: AdminDep, lookup: LookupDep) -> HostOut:
    return render(lookup.target(Host, host_id))


@router.patch("/{host_id}", responses=problems(401, 403, 404, 412, 422))
def update_host(
    host_id: str,
    body: HostUpdate,
    session: SessionDep,
    _: AdminDep,
    lookup: LookupDep,
    notifier: NotifierDep,
) -> HostOut:
    """A running agent reasserts its own VTEP and roles with every heartbeat."""
    host = lookup.target(Host, host_id)
    if apply_changes(host, body.changes(host)):
        session.flush()  # its peers' flood and unicast entries point at the VTEP
        notifier.subnets_changed(session, subnets_on_host(session, host.name), host.name)
    session.flush()
    return render(host)


@router.delete(
    "/{host_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 403, 404, 409, 412),
)
def delete_host(host_id: str, session: SessionDep, _: AdminDep, lookup: LookupDep) -> None:
    host = lookup.target(Host, host_id)
    blockers.host(session, host.name)
    session.delete(host)
