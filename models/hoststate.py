"""What each host must carry, and what it reported: the controller's aggregate.

`host_states.dirty` is set in the same transaction as the change that touches the host,
so a poke can be lost but never the fact that the host needs a sync; `revision` is the
monotonic stamp of the host's compiled document (bumped only when its content changes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, lazyload, mapped_column

from models.base import Base, utcnow
from models.host import Host
from models.network import Port, Subnet
from models.routing import RouterInterface


class HostStateRow(Base):
    __tablename__ = "host_states"
    host: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    revision: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    digest: Mapped[str] = mapped_column(sa.String(64), nullable=False, default="")
    dirty: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)


class Realisation(Base):
    """The last result a host reported for one resource."""

    __tablename__ = "realisations"
    host: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    resource_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, index=True)
    kind: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    revision: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    ok: Mapped[bool] = mapped_column(sa.Boolean, nullable=False)
    detail: Mapped[str | None] = mapped_column(sa.Text, nullable=True)


# -- which hosts a change touches -------------------------------------------------------------


def carriers_of_subnets(session: Session, subnet_ids: set[str]) -> dict[str, set[str]]:
    """The hosts that realise each subnet: those with a workload port on it."""
    carriers: dict[str, set[str]] = {}
    if not subnet_ids:
        return carriers
    rows = session.execute(
        sa.select(Port.subnet_id, Port.host)
        .where(
            Port.subnet_id.in_(subnet_ids),
            Port.host.is_not(None),
            Port.device_owner == "",  # router legs are not realised on hosts yet
            Port.netns.is_not(None),  # nor ports with no workload namespace
        )
        .distinct()
    )
    for subnet_id, host in rows:
        if host:
            carriers.setdefault(subnet_id, set()).add(host)
    return carriers


def hosts_of_subnets(session: Session, subnet_ids: set[str]) -> set[str]:
    return set().union(*carriers_of_subnets(session, subnet_ids).values())


def mark_dirty(session: Session, hosts: set[str]) -> set[str]:
    """Flag hosts as needing a sync; returns those that were clean (they need a poke)."""
    newly: set[str] = set()
    for host in sorted(hosts):
        row = session.get(HostStateRow, host, with_for_update=True)
        if row is None:
            session.add(HostStateRow(host=host, dirty=True))
            newly.add(host)
        elif not row.dirty:
            row.dirty = True
            newly.add(host)
    session.flush()
    return newly


# -- what the compiler reads ------------------------------------------------------------------


def host_by_name(session: Session, name: str) -> Host | None:
    return session.scalar(sa.select(Host).where(Host.name == name))


def local_ports(session: Session, host: str) -> list[Port]:
    return list(
        session.scalars(
            sa.select(Port)
            .options(lazyload(Port.security_groups))  # L2 needs none of them
            .where(Port.host == host, Port.device_owner == "", Port.netns.is_not(None))
            .order_by(Port.id)
        )
    )


def subnets_by_id(session: Session, ids: set[str]) -> list[Subnet]:
    if not ids:
        return []
    return list(session.scalars(sa.select(Subnet).where(Subnet.id.in_(ids)).order_by(Subnet.id)))


def routed_subnets(session: Session, ids: set[str]) -> set[str]:
    if not ids:
        return set()
    return set(
        session.scalars(
            sa.select(RouterInterface.subnet_id).where(RouterInterface.subnet_id.in_(ids))
        )
    )


def remote_ports(session: Session, subnet_ids: set[str], host: str) -> list[tuple[Port, str]]:
    """Ports of these subnets on other registered hosts, with that host's VTEP."""
    if not subnet_ids:
        return []
    rows = session.execute(
        sa.select(Port, Host.vtep_ip)
        .options(lazyload(Port.security_groups))
        .join(Host, Host.name == Port.host)
        .where(
            Port.subnet_id.in_(subnet_ids),
            Port.host != host,
            Port.device_owner == "",
            Port.netns.is_not(None),
        )
        .order_by(Port.id)
    )
    return [(p, vtep) for p, vtep in rows]


def clear_dirty(session: Session, host: str) -> None:
    """Run and commit *before* compiling: a change committed later sets it again and pokes."""
    session.execute(sa.update(HostStateRow).where(HostStateRow.host == host).values(dirty=False))


def serialise_compiles(session: Session, host: str) -> None:
    """Compiles of one host run one at a time, so a compile that read older rows can never
    be stamped after a newer one. A transaction-scoped advisory lock, not the state row's
    lock, so the API marking the host dirty meanwhile is never held up (SQLite serialises
    writers anyway)."""
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.blake2b(host.encode(), digest_size=8).digest(), "big") >> 1
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))


def lock_state(session: Session, host: str) -> HostStateRow:
    row = session.get(HostStateRow, host, with_for_update=True)
    if row is None:
        try:
            with session.begin_nested():
                session.add(HostStateRow(host=host, revision=0, digest="", dirty=False))
        except IntegrityError:  # created concurrently: wait for it like everyone else
            pass
        row = session.get(HostStateRow, host, with_for_update=True, populate_existing=True)
        assert row is not None
    return row


def stamp(session: Session, host: str, digest: str) -> int:
    """The document's revision, bumped only if its content changed (row locked already)."""
    row = lock_state(session, host)
    if row.digest != digest:
        row.revision += 1
        row.digest = digest
        row.updated_at = utcnow()
    session.flush()
    return row.revision


def dirty_hosts(session: Session) -> list[str]:
    return list(session.scalars(sa.select(HostStateRow.host).where(HostStateRow.dirty.is_(True))))


# -- reports and statuses ---------------------------------------------------------------------


def record_heartbeat(session: Session, name: str, vtep_ip: str, roles: list[str]) -> bool:
    """Register or refresh a host; True when it is new or its VTEP/roles changed."""
    host = host_by_name(session, name)
    now = utcnow()
    if host is None:
        session.add(Host(name=name, vtep_ip=vtep_ip, roles=roles, last_heartbeat=now))
        session.flush()
        return True
    changed = host.vtep_ip != vtep_ip or sorted(host.roles) != sorted(roles)
    if changed:
        host.vtep_ip, host.roles = vtep_ip, roles
        host.touch()
    session.execute(sa.update(Host).where(Host.id == host.id).values(last_heartbeat=now))
    return changed


def record_results(
    session: Session,
    host: str,
    revision: int,
    results: Sequence[tuple[str, str, int, bool, str | None]],
    *,
    full: bool = False,
    duration_ms: float | None = None,
) -> set[str]:
    """Store (kind, id, revision, ok, detail) per resource; return the ids whose result changed.

    A host reports every resource it carries on every sync, so only the differences are
    written (one read, bulk writes) and only they need their status recomputed. Rows of
    resources the host no longer reports are removed. Statuses are written with Core
    UPDATEs, so bookkeeping never bumps a resource's revision.
    """
    now = utcnow()
    current = session.scalar(
        sa.select(Host.realised_revision).where(Host.name == host).with_for_update()
    )
    if current is not None and revision < current:  # an older report overtaken by a newer
        return set()
    session.execute(
        sa.update(Host)
        .where(Host.name == host)
        .values(
            realised_revision=revision,
            last_heartbeat=now,
            last_sync_at=now,
            last_sync_ms=duration_ms,
            last_sync_full=full,
        )
    )
    existing = {
        r.resource_id: r
        for r in session.scalars(sa.select(Realisation).where(Realisation.host == host))
    }
    changed: set[str] = set()
    fresh: list[dict[str, object]] = []
    for kind, rid, rev, ok, detail in results:
        row = existing.pop(rid, None)
        if row is None:
            fresh.append(
                {
                    "host": host,
                    "resource_id": rid,
                    "kind": kind,
                    "revision": rev,
                    "ok": ok,
                    "detail": detail,
                }
            )
        elif (row.kind, row.revision, row.ok, row.detail) != (kind, rev, ok, detail):
            row.kind, row.revision, row.ok, row.detail = kind, rev, ok, detail
        else:
            continue
        changed.add(rid)
    if fresh:
        session.execute(sa.insert(Realisation), fresh)
    gone = sorted(existing)
    for i in range(0, len(gone), 500):
        session.execute(
            sa.delete(Realisation).where(
                Realisation.host == host, Realisation.resource_id.in_(gone[i : i + 500])
            )
        )
    session.flush()
    return changed


def _verdict(
    revision: int, carriers: set[str], reports: dict[str, Realisation]
) -> tuple[str, str | None]:
    failed = [
        f"host {h}: {r.detail or 'failed'}"
        for h, r in sorted(reports.items())
        if h in carriers and r.revision == revision and not r.ok
    ]
    if failed:
        return "error", "; ".join(failed)[:2000]
    done = all(h in reports and reports[h].revision >= revision and reports[h].ok for h in carriers)
    return ("active", None) if done else ("pending", None)


def _write_statuses(session: Session, model: Any, rows: list[dict[str, Any]]) -> None:
    """One executemany of guarded UPDATEs: a row whose revision moved on is left pending."""
    if not rows:
        return
    table = model.__table__
    stmt = (
        sa.update(table)
        .where(table.c.id == sa.bindparam("rid"), table.c.revision == sa.bindparam("rev"))
        .values(status=sa.bindparam("new_status"), status_detail=sa.bindparam("new_detail"))
    )
    session.connection().execute(stmt, rows)


def refresh_port_status(session: Session, port_ids: set[str]) -> None:
    if not port_ids:
        return
    ports = session.execute(
        sa.select(Port.id, Port.revision, Port.host, Port.status).where(Port.id.in_(port_ids))
    ).all()
    reports = _reports(session, port_ids)
    rows = []
    for pid, rev, host, current in ports:
        carriers = {host} if host else set()
        status, detail = _verdict(rev, carriers, reports.get(pid, {}))
        if not carriers:
            status = "pending"
        if status != current or status == "error":
            rows.append({"rid": pid, "rev": rev, "new_status": status, "new_detail": detail})
    _write_statuses(session, Port, rows)


def refresh_subnet_status(session: Session, subnet_ids: set[str]) -> None:
    if not subnet_ids:
        return
    reports = _reports(session, subnet_ids)
    registered = registered_hosts(session)
    carried = carriers_of_subnets(session, subnet_ids)
    rows = []
    for sid, rev, current in session.execute(
        sa.select(Subnet.id, Subnet.revision, Subnet.status).where(Subnet.id.in_(subnet_ids))
    ).all():
        carriers = carried.get(sid, set()) & registered
        status, detail = _verdict(rev, carriers, reports.get(sid, {}))
        if status != current or status == "error":
            rows.append({"rid": sid, "rev": rev, "new_status": status, "new_detail": detail})
    _write_statuses(session, Subnet, rows)


def pending_subnets(session: Session) -> set[str]:
    return set(session.scalars(sa.select(Subnet.id).where(Subnet.status != "active")))


def registered_hosts(session: Session) -> set[str]:
    return set(session.scalars(sa.select(Host.name)))


def subnets_on_host(session: Session, host: str) -> set[str]:
    return set(session.scalars(sa.select(Port.subnet_id).where(Port.host == host).distinct()))


def subnets_of_ports(session: Session, port_ids: set[str]) -> set[str]:
    if not port_ids:
        return set()
    return set(session.scalars(sa.select(Port.subnet_id).where(Port.id.in_(port_ids))))


def _reports(session: Session, ids: set[str]) -> dict[str, dict[str, Realisation]]:
    out: dict[str, dict[str, Realisation]] = {}
    for row in session.scalars(sa.select(Realisation).where(Realisation.resource_id.in_(ids))):
        out.setdefault(row.resource_id, {})[row.host] = row
    return out
