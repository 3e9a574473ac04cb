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
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, utcnow
from models.host import HEARTBEAT_TIMEOUT, Host
from models.network import Port


class HostStateRow(Base):
    __tablename__ = "host_states"
    host: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    revision: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    digest: Mapped[str] = mapped_column(sa.String(64), nullable=False, default="")
    dirty: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
    # When the oldest change the host has not realised yet was committed (set with `dirty`,
    # cleared when a report shows everything compiled realised): the realisation lag.
    pending_since: Mapped[datetime | None] = mapped_column(nullable=True)


class Realisation(Base):
    """The last result a host reported for one resource."""

    __tablename__ = "realisations"
    host: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    resource_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, index=True)
    kind: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    revision: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    ok: Mapped[bool] = mapped_column(sa.Boolean, nullable=False)
    detail: Mapped[str | None] = mapped_column(sa.Text, nullable=True)


# -- which hosts need a sync -----------------------------------------------------------------


def _locked_states(session: Session, names: Sequence[str]) -> dict[str, HostStateRow]:
    """The state rows of these hosts that exist, locked in host order in one statement
    (a change may touch 500 hosts; two lockers of the same hosts queue, never deadlock)."""
    return {
        r.host: r
        for r in session.scalars(
            sa.select(HostStateRow)
            .where(HostStateRow.host.in_(names))
            .order_by(HostStateRow.host)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    }


def mark_dirty(session: Session, hosts: set[str]) -> set[str]:
    """Flag hosts as needing a sync; returns those that were clean (they need a poke)."""
    newly: set[str] = set()
    if not hosts:
        return newly
    now = utcnow()
    names = sorted(hosts)
    rows = _locked_states(session, names)
    for host in names:
        row = rows.get(host)
        if row is None:
            session.add(HostStateRow(host=host, dirty=True, pending_since=now))
            newly.add(host)
            continue
        if row.pending_since is None:
            row.pending_since = now
        if not row.dirty:
            row.dirty = True
            newly.add(host)
    session.flush()
    return newly


def _settle(row: HostStateRow, realised: int | None, now: datetime) -> float | None:
    """Clear the row's pending changes if the host realised everything compiled and
    nothing newer waits: how long the oldest took from commit (None: not settled)."""
    since = row.pending_since
    if since is None or row.dirty or realised is None or realised < row.revision:
        return None
    row.pending_since = None
    return max(0.0, (now - since).total_seconds())


def settle(session: Session, host: str, realised: int | None) -> float | None:
    """The host realised `realised` (None: the revision it last reported). When that is
    everything compiled and nothing newer waits, the pending changes are done: return
    how long the oldest took from commit (None when nothing was pending)."""
    row = session.get(HostStateRow, host, with_for_update=True)
    if row is None:
        return None
    if realised is None:
        realised = session.scalar(sa.select(Host.realised_revision).where(Host.name == host))
    settled = _settle(row, realised, utcnow())
    session.flush()
    return settled


def settle_many(session: Session, hosts: Sequence[str]) -> dict[str, float]:
    """`settle` for many hosts at the revision each has realised, in one transaction,
    their rows locked in host order (a batch settled each in a transaction of its own:
    520 round trips, each queued behind the API's locks during a burst): host ->
    seconds its changes took."""
    if not hosts:
        return {}
    rows = _locked_states(session, sorted(set(hosts)))
    if not any(r.pending_since is not None for r in rows.values()):
        return {}
    stmt = sa.select(Host.name, Host.realised_revision).where(Host.name.in_(sorted(rows)))
    realised: dict[str, int | None] = {name: rev for name, rev in session.execute(stmt)}
    now = utcnow()
    out: dict[str, float] = {}
    for host, row in rows.items():
        settled = _settle(row, realised.get(host), now)
        if settled is not None:
            out[host] = settled
    session.flush()
    return out


def host_names(session: Session) -> list[str]:
    """Every registered host, by name."""
    return list(session.scalars(sa.select(Host.name).order_by(Host.name)))


def revisions(session: Session) -> list[tuple[str, int, int, bool]]:
    """Per host: (name, desired revision, realised revision, dirty), for the lag gauges."""
    rows = session.execute(
        sa.select(Host.name, HostStateRow.revision, Host.realised_revision, HostStateRow.dirty)
        .join(HostStateRow, HostStateRow.host == Host.name, isouter=True)
        .order_by(Host.name)
    )
    return [(name, rev or 0, real or 0, bool(dirty)) for name, rev, real, dirty in rows]


def clear_dirty(session: Session, hosts: Sequence[str]) -> set[str]:
    """Run and commit *before* compiling: a change committed later sets it again and pokes.
    Returns the hosts that were dirty (a change waited for this push)."""
    if not hosts:
        return set()
    names = sorted(set(hosts))
    # Locked in host order first, as `mark_dirty` and `stamp_many` lock them: a bare
    # UPDATE locks in the table's order and deadlocked with API requests marking hosts
    # (seen in a burst, a batch of 520 hosts failed and waited for the sweeper).
    dirty = list(
        session.scalars(
            sa.select(HostStateRow.host)
            .where(HostStateRow.host.in_(names), HostStateRow.dirty.is_(True))
            .order_by(HostStateRow.host)
            .with_for_update()
        )
    )
    if not dirty:
        return set()
    result = session.execute(
        sa.update(HostStateRow)
        .where(HostStateRow.host.in_(dirty), HostStateRow.dirty.is_(True))
        .values(dirty=False)
        .returning(HostStateRow.host)
    )
    return set(result.scalars())


def compile_lock_key(host: str) -> int:
    """The advisory lock key a compile of `host` holds (a positive bigint)."""
    return int.from_bytes(hashlib.blake2b(host.encode(), digest_size=8).digest(), "big") >> 1


def serialise_compiles(session: Session, hosts: Sequence[str]) -> None:
    """Compiles of one host run one at a time, so a compile that read older rows can never
    be stamped after a newer one. Transaction-scoped advisory locks, not the state rows'
    locks, so the API marking a host dirty meanwhile is never held up (SQLite serialises
    writers anyway); taken in one statement, in key order, so two batches sharing hosts
    wait for each other rather than deadlock."""
    if session.get_bind().dialect.name != "postgresql" or not hosts:
        return
    keys = sorted({compile_lock_key(h) for h in hosts})
    ordered = sa.select(sa.func.unnest(sa.literal(keys, sa.ARRAY(sa.BigInteger))).label("k"))
    sub = ordered.order_by("k").subquery()
    session.execute(sa.select(sa.func.count(sa.func.pg_advisory_xact_lock(sub.c.k))))


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


def stamp_many(session: Session, digests: dict[str, str]) -> dict[str, int]:
    """Each host's document revision, bumped only where its content changed: the state
    rows locked in host order (`_locked_states`), one read for all of them."""
    if not digests:
        return {}
    rows = _locked_states(session, sorted(digests))
    now = utcnow()
    for host in sorted(digests):
        row = rows.get(host) or lock_state(session, host)
        if row.digest != digests[host]:
            row.revision += 1
            row.digest = digests[host]
            row.updated_at = now
        rows[host] = row
    session.flush()
    return {host: rows[host].revision for host in digests}


def dirty_hosts(session: Session) -> list[str]:
    return list(session.scalars(sa.select(HostStateRow.host).where(HostStateRow.dirty.is_(True))))


def dirty_among(session: Session, hosts: set[str]) -> set[str]:
    """Of `hosts`, those marked dirty: a change waits for them (its poke may be lost)."""
    if not hosts:
        return set()
    return set(
        session.scalars(
            sa.select(HostStateRow.host).where(
                HostStateRow.host.in_(sorted(hosts)), HostStateRow.dirty.is_(True)
            )
        )
    )


def lagging_hosts(session: Session, compiled_before: datetime) -> list[str]:
    """Hosts that are up but have not realised a revision compiled before `compiled_before`.

    Their document was sent, and then lost (a bus restart drops what it held): no dirty
    flag is left to say so, so the sweep pushes them again. A host still applying it just
    skips the copy (it is not newer than the one it has).
    """
    now = utcnow()
    return list(
        session.scalars(
            sa.select(HostStateRow.host)
            .join(Host, Host.name == HostStateRow.host)
            .where(
                HostStateRow.dirty.is_(False),
                HostStateRow.revision > sa.func.coalesce(Host.realised_revision, 0),
                HostStateRow.updated_at < compiled_before,
                Host.last_heartbeat > now - HEARTBEAT_TIMEOUT,
                # an agent that refused the document whole (record_refusal) has it already
                sa.func.coalesce(Host.status_detail, "").not_like("refused%"),
            )
            .order_by(HostStateRow.host)
        )
    )


# -- reports and statuses ---------------------------------------------------------------------


def record_heartbeat(
    session: Session,
    name: str,
    vtep_ip: str,
    roles: list[str],
    protocol_version: int,
    sections: list[str],
    capabilities: list[str] | None = None,
    physical_networks: list[str] | None = None,
) -> bool:
    """Register or refresh a host; True when it is new or its VTEP, roles, protocol
    version, sections, kernel capabilities or physical networks changed (its document
    and its peers' need a recompile)."""
    host = host_by_name(session, name)
    now = utcnow()
    advertised: dict[str, Any] = {"protocol_version": protocol_version, "sections": sections}
    if capabilities is not None:
        advertised["capabilities"] = sorted(capabilities)
    if physical_networks is not None:
        advertised["physical_networks"] = sorted(physical_networks)
    if host is None:
        session.add(Host(name=name, vtep_ip=vtep_ip, roles=roles, last_heartbeat=now, **advertised))
        session.flush()
        return True
    changed = (
        host.vtep_ip != vtep_ip
        or sorted(host.roles) != sorted(roles)
        or any(getattr(host, k) != v for k, v in advertised.items())
    )
    if changed:
        host.vtep_ip, host.roles = vtep_ip, roles
        for key, value in advertised.items():
            setattr(host, key, value)
        host.touch()
    session.execute(sa.update(Host).where(Host.id == host.id).values(last_heartbeat=now))
    return changed


def touch_heartbeats(session: Session, hosts: Sequence[str], at: datetime) -> None:
    """These hosts beat at `at` (or later), advertising nothing new: one statement."""
    if hosts:
        session.execute(
            sa.update(Host)
            .where(
                Host.name.in_(sorted(hosts)),
                sa.or_(Host.last_heartbeat.is_(None), Host.last_heartbeat < at),
            )
            .values(last_heartbeat=at)
        )


def host_by_name(session: Session, name: str) -> Host | None:
    return session.scalar(sa.select(Host).where(Host.name == name))


def hosts_by_name(session: Session, names: Sequence[str]) -> list[Host]:
    """The registered ones of these hosts, by name."""
    if not names:
        return []
    return list(
        session.scalars(
            sa.select(Host).where(Host.name.in_(sorted(set(names)))).order_by(Host.name)
        )
    )


def record_refusal(session: Session, host: str, detail: str | None) -> None:
    """The agent refused a document whole: nothing it realised changed, the host shows why."""
    session.execute(
        sa.update(Host).where(Host.name == host).values(status_detail=detail or "refused")
    )


def record_results(
    session: Session,
    host: str,
    revision: int,
    results: Sequence[tuple[str, str, int, bool, str | None]],
    *,
    full: bool = False,
    duration_ms: float | None = None,
    detail: str | None = None,
    partial: bool = False,
    removed: Sequence[str] = (),
) -> dict[str, set[str]]:
    """Store (kind, id, revision, ok, detail) per resource; return, per kind, the ids whose
    result changed or went away (only their statuses need recomputing).

    A full report names every resource the host carries, so only the differences are
    written (one read, bulk writes) and rows of resources it no longer reports are
    removed. A `partial` report (an answer to an incremental document) names only the
    results that changed and, in `removed`, the resources the host no longer carries:
    only those rows are read and written. `detail` is the report's host-level one
    (None when it went well).
    """
    now = utcnow()
    current = session.scalar(
        sa.select(Host.realised_revision).where(Host.name == host).with_for_update()
    )
    if current is not None and revision < current:  # an older report overtaken by a newer
        return {}
    session.execute(
        sa.update(Host)
        .where(Host.name == host)
        .values(
            realised_revision=revision,
            last_heartbeat=now,
            last_sync_at=now,
            last_sync_ms=duration_ms,
            last_sync_full=full,
            status_detail=detail,
        )
    )
    rows = sa.select(Realisation).where(Realisation.host == host)
    if partial:
        named = sorted({rid for _, rid, _, _, _ in results} | set(removed))
        rows = rows.where(Realisation.resource_id.in_(named))
    existing = {r.resource_id: r for r in session.scalars(rows)}
    changed: dict[str, set[str]] = {}
    fresh: list[dict[str, object]] = []
    for kind, rid, rev, ok, why in results:
        row = existing.pop(rid, None)
        if row is None:
            fresh.append(
                {
                    "host": host,
                    "resource_id": rid,
                    "kind": kind,
                    "revision": rev,
                    "ok": ok,
                    "detail": why,
                }
            )
        elif (row.kind, row.revision, row.ok, row.detail) != (kind, rev, ok, why):
            row.kind, row.revision, row.ok, row.detail = kind, rev, ok, why
        else:
            continue
        changed.setdefault(kind, set()).add(rid)
    if fresh:
        session.execute(sa.insert(Realisation), fresh)
    gone = sorted(existing) if not partial else sorted(set(existing) & set(removed))
    for rid in gone:
        changed.setdefault(existing[rid].kind, set()).add(rid)
    for i in range(0, len(gone), 500):
        session.execute(
            sa.delete(Realisation).where(
                Realisation.host == host, Realisation.resource_id.in_(gone[i : i + 500])
            )
        )
    session.flush()
    return changed


def subnets_on_host(session: Session, host: str) -> set[str]:
    return set(session.scalars(sa.select(Port.subnet_id).where(Port.host == host).distinct()))
