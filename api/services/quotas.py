"""Per-tenant quotas, claimed while a create runs and settled just before its commit.

A quota check counts a tenant's rows and then inserts; two requests (in any API process)
racing past the count would both insert. A lock per (tenant, kind) taken at the check and
held to the commit made every create of one tenant wait for the whole of the one before
(issue 14: port creates at 32 clients ran one at a time). So the check only records a
claim on the session, and `settle` (a `before_commit` hook) makes it binding at the last
moment: with this transaction's rows flushed, it takes the lock, counts again and the
COMMIT follows at once. Creates run in parallel; only that count and the COMMIT queue.

The count after the lock is exact on Postgres: under READ COMMITTED each statement sees
what committed before it began, and the previous holder committed before its
transaction-scoped lock was released. Deleted rows count no more and rows made without
a check (a group's default rules) count all the same: nothing to keep in step. SQLite
serialises writers (BEGIN IMMEDIATE), so there the count alone is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from api.errors import QuotaExceeded
from models.query import count
from models.tenant import lock_quota, quotas_of

CLAIMS_KEY = "quota_claims"


@dataclass
class Claim:
    model: Any
    adding: int


def check(session: Session, tenant_id: str, resource: str, model: Any, adding: int = 1) -> None:
    """Claim room for `adding` more of `resource`; the claim is settled at commit."""
    claims: dict[tuple[str, str], Claim] = session.info.setdefault(CLAIMS_KEY, {})
    claim = claims.setdefault((tenant_id, resource), Claim(model, 0))
    claim.adding += adding


def settle(session: Session) -> None:
    """Hold every claim of the committing transaction, or raise QuotaExceeded.

    Locks are taken in sorted order, so two transactions with several claims never
    wait for each other in a cycle.
    """
    if session.in_nested_transaction():  # a savepoint's release (an allocation attempt)
        return
    claims: dict[tuple[str, str], Claim] = session.info.pop(CLAIMS_KEY, {})
    if not claims:
        return
    session.flush()  # this transaction's own rows count
    limits = {tenant_id: quotas_of(session, tenant_id) for tenant_id, _ in claims}
    for (tenant_id, resource), claim in sorted(claims.items(), key=lambda item: item[0]):
        lock_quota(session, tenant_id, resource)  # held until the COMMIT that follows
        limit = limits[tenant_id][resource]
        used = count(session, claim.model, claim.model.tenant_id == tenant_id)
        if used > limit:
            before = max(used - claim.adding, 0)
            raise QuotaExceeded(
                f"quota for {resource} is {limit} and {before} are in use; "
                "ask the admin to raise it (PATCH /v1/tenants/{id}/quotas)",
                quota={"resource": resource, "limit": limit, "used": before},
            )
