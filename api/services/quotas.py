"""Per-tenant quotas, claimed while a create runs and enforced inside its commit.

A quota check that counts a tenant's rows and then inserts races: two requests (in any
API process) both pass the count. Locking the tenant's quota from the check to the commit
made every create of one tenant wait for the whole of the one before (issue 14: port
creates at 32 clients ran one at a time, the lock holder further slowed by waits for its
process's GIL between its statements).

So the database keeps each tenant's count per kind (`quota_usage`, maintained by triggers
on insert and delete: migration 0020) and a create only claims room: `check` records the
claim on the session, and `settle`, a `before_commit` hook, hands the claim to the
database. On Postgres the triggers are deferred to COMMIT: the counter row is locked,
incremented and compared with the claimed limit there and only there, so creates run in
parallel and queue only inside COMMIT, with no round trip to the application in
between. A claim past its limit fails the COMMIT with SQLSTATE VQ001, which `install`
turns into the 409. On SQLite writers run one at a time (BEGIN IMMEDIATE): `settle`
flushes and compares the counter itself.

Rows made without a claim (a new group's default rules) are counted all the same, and
only a kind that was claimed can fail a commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.errors import QuotaExceeded
from models.tenant import quota_limit, quota_used, quotas_of

CLAIMS_KEY = "quota_claims"
OVER_QUOTA_SQLSTATE = "VQ001"  # raised by the vpcd_quota_count() trigger (migration 0020)


@dataclass
class Claim:
    adding: int


def check(session: Session, tenant_id: str, resource: str, model: Any, adding: int = 1) -> None:
    """Claim room for `adding` more of `resource` (rows of `model`); enforced at commit."""
    del model  # the counter of `resource` counts the rows of its table
    claims: dict[tuple[str, str], Claim] = session.info.setdefault(CLAIMS_KEY, {})
    claims.setdefault((tenant_id, resource), Claim(0)).adding += adding


def install(factory: sessionmaker[Session], engine: Engine) -> None:
    """Settle claims before each commit of `factory`'s sessions; a claim past its limit,
    failing Postgres's COMMIT, becomes QuotaExceeded."""
    sa.event.listen(factory, "before_commit", settle)
    sa.event.listen(engine, "handle_error", _over_quota)


def settle(session: Session) -> None:
    """Hand the transaction's claims to the database (Postgres), or enforce them (SQLite)."""
    if session.in_nested_transaction():  # a savepoint's release (an allocation attempt)
        return
    claims: dict[tuple[str, str], Claim] = session.info.pop(CLAIMS_KEY, {})
    if not claims:
        return
    if session.get_bind().dialect.name == "postgresql":
        # One round trip: each claimed kind's "tenant limit" for the triggers at COMMIT.
        session.execute(
            sa.select(
                *(
                    sa.func.set_config(
                        f"vpcd.quota_{resource}",
                        sa.literal(f"{tenant_id} ")
                        + sa.cast(quota_limit(tenant_id, resource), sa.Text),
                        True,
                    )
                    for tenant_id, resource in sorted(claims)
                )
            )
        )
        return
    session.flush()  # the triggers count this transaction's rows
    for tenant_id, resource in sorted(claims):
        limit = quotas_of(session, tenant_id)[resource]
        used = quota_used(session, tenant_id, resource)
        if used > limit:
            raise exceeded(resource, limit, max(used - claims[tenant_id, resource].adding, 0))


def exceeded(resource: str, limit: int, used: int) -> QuotaExceeded:
    return QuotaExceeded(
        f"quota for {resource} is {limit} and {used} are in use; "
        "ask the admin to raise it (PATCH /v1/tenants/{id}/quotas)",
        quota={"resource": resource, "limit": limit, "used": used},
    )


def _over_quota(context: sa.engine.ExceptionContext) -> BaseException | None:
    orig = context.original_exception
    if getattr(orig, "sqlstate", None) != OVER_QUOTA_SQLSTATE:
        return None
    diag = getattr(orig, "diag", None)
    resource, limit, used = str(getattr(diag, "message_detail", "") or "").split()
    return exceeded(resource, int(limit), int(used))
