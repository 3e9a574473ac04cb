"""Hosts (admin): where agents run; status is derived from the last heartbeat."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, Field

from api.common import (
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
from api.deps import AdminDep, NotifierDep, SessionDep
from api.errors import Conflict, InUse, NotFound, problems
from api.netcheck import HostName, IPv4
from models import Host, Port, Router
from models.base import utcnow
from models.hoststate import subnets_on_host
from models.query import filtered, page

router = APIRouter(prefix="/v1/hosts", tags=["hosts"])

HEARTBEAT_TIMEOUT = timedelta(seconds=30)
Roles = Annotated[list[Literal["compute", "network"]], Field(min_length=1, max_length=2)]


class HostCreate(Input):
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


class HostList(BaseModel):
    items: list[HostOut]
    next_page_token: str | None = None


def render(host: Host) -> HostOut:
    beat = host.last_heartbeat
    alive = beat is not None and utcnow() - beat < HEARTBEAT_TIMEOUT
    names = ("id", "created_at", "updated_at", "revision", "name", "vtep_ip", "roles")
    advertised = ("protocol_version", "sections", "status_detail")
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


def _get(session: SessionDep, ident: str) -> Host:
    host = session.get(Host, ident)
    if host is None:
        raise NotFound("host", ident)
    return host


@router.post("", status_code=status.HTTP_201_CREATED, responses=problems(401, 403, 409, 422))
def create_host(
    body: HostCreate, request: Request, response: Response, session: SessionDep, _: AdminDep
) -> HostOut:
    if session.scalar(sa.select(Host.id).where(Host.name == body.name)):
        raise Conflict(f"a host named {body.name!r} exists")
    host = Host(**body.model_dump())
    session.add(host)
    session.flush()
    created(request, response, f"/v1/hosts/{host.id}", host)
    return render(host)


@router.get("", responses=problems(400, 401, 403, 422))
def list_hosts(
    session: SessionDep,
    _: AdminDep,
    name: str | None = None,
    limit: Limit = 100,
    page_token: PageToken = None,
) -> HostList:
    stmt = filtered(session, Host, sa.select(Host), {"name": name})
    rows, cursor = page(session, Host, stmt, limit, decode_token(page_token))
    return HostList(items=[render(h) for h in rows], next_page_token=encode_token(cursor))


@router.get("/{host_id}", responses=problems(401, 403, 404))
def get_host(host_id: str, response: Response, session: SessionDep, _: AdminDep) -> HostOut:
    host = _get(session, host_id)
    set_etag(response, host)
    return render(host)


@router.patch("/{host_id}", responses=problems(401, 403, 404, 412, 422))
def update_host(
    host_id: str,
    body: HostUpdate,
    request: Request,
    response: Response,
    session: SessionDep,
    _: AdminDep,
    notifier: NotifierDep,
) -> HostOut:
    """A running agent reasserts its own VTEP and roles with every heartbeat."""
    host = _get(session, host_id)
    check_if_match(request, host)
    if apply_changes(host, body.changes()):
        session.flush()  # its peers' flood and unicast entries point at the VTEP
        notifier.subnets_changed(session, subnets_on_host(session, host.name), host.name)
    session.flush()
    set_etag(response, host)
    return render(host)


@router.delete(
    "/{host_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 403, 404, 409, 412),
)
def delete_host(host_id: str, request: Request, session: SessionDep, _: AdminDep) -> None:
    host = _get(session, host_id)
    check_if_match(request, host)
    blocking = [
        ("port", p)
        for p in session.scalars(
            sa.select(Port.id).where(Port.host == host.name, Port.device_owner == "")
        )
    ]
    blocking += [
        ("router", r) for r in session.scalars(sa.select(Router.id).where(Router.host == host.name))
    ]
    if blocking:
        raise InUse("ports or routers are bound to this host", blocking)
    session.delete(host)
