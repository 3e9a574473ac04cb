"""Where a port is bound: a host's workload namespace and an interface name in it."""

from __future__ import annotations

from sqlalchemy.orm import Session

from api.errors import Conflict, Invalid
from models.hoststate import host_by_name
from models.network import ports_in_netns


def check_host(session: Session, host: str | None, field: str) -> None:
    """A port binds only to a registered host: no agent would ever realise it elsewhere."""
    if host is not None and host_by_name(session, host) is None:
        raise Invalid(field, f"no host named {host!r} is registered (see GET /v1/hosts)")


def check_binding(
    session: Session,
    tenant_id: str,
    host: str | None,
    netns: str | None,
    interface_name: str,
    port_id: str | None = None,
) -> None:
    """A workload namespace on a host is one tenant's, and each interface name in it is once.

    Namespace names are shared by every tenant on a host (as with any name a CNI caller
    gives), so the clash is reported without saying whose the other port is.
    """
    if not host or not netns:
        return
    for other in ports_in_netns(session, host, netns):
        if other.id == port_id:
            continue
        if other.tenant_id != tenant_id:
            raise Conflict(
                f"netns {netns!r} on host {host!r} is in use; choose another name",
                errors=[{"field": "body.netns", "message": "in use on this host"}],
            )
        if other.interface_name == interface_name:
            raise Conflict(
                f"netns {netns!r} on host {host!r} already has {interface_name} (port {other.id})",
                errors=[{"field": "body.interface_name", "message": "in use in this netns"}],
            )
