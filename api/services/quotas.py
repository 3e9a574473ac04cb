"""Per-tenant quota checks, done in the creating transaction under a per-tenant lock."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from api.errors import QuotaExceeded
from models.query import count
from models.tenant import lock_quota, quotas_of


def check(session: Session, tenant_id: str, resource: str, model: Any, adding: int = 1) -> None:
    lock_quota(session, tenant_id, resource)  # held until commit: the count stays true
    limit = quotas_of(session, tenant_id)[resource]
    used = count(session, model, model.tenant_id == tenant_id)
    if used + adding > limit:
        raise QuotaExceeded(
            f"quota for {resource} is {limit} and {used} are in use; "
            "ask the admin to raise it (PATCH /v1/tenants/{id}/quotas)",
            quota={"resource": resource, "limit": limit, "used": used},
        )
