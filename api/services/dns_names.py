"""A port's dns_name: unique within its VPC, case-insensitively (DNS compares so).

The `dns_names` row is the index and the unique constraint the arbiter, so two requests
racing for one name in one VPC never both win, in any number of API processes.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.errors import Conflict
from api.services.ipam import is_unique_violation
from models import DnsName


def claim(session: Session, port_id: str, vpc_id: str, name: str | None) -> None:
    """Give the port `name` in the VPC (None: no name); 409 when another port has it."""
    session.execute(sa.delete(DnsName).where(DnsName.port_id == port_id))
    if name is None:
        return
    key = name.lower()
    try:
        with session.begin_nested():
            session.add(DnsName(port_id=port_id, vpc_id=vpc_id, name=key))
            session.flush()
    except IntegrityError as exc:
        if not is_unique_violation(exc):
            raise
        owner = session.scalar(
            sa.select(DnsName.port_id).where(DnsName.vpc_id == vpc_id, DnsName.name == key)
        )
        raise Conflict(
            f"dns_name {name!r} is already used by port {owner} in this VPC",
            errors=[{"field": "body.dns_name", "message": f"already used by port {owner}"}],
        ) from exc
