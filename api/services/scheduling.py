"""Where a new router runs: the up network host carrying the fewest routers (ties by name).

None when no network host is up: the router is then `error` ("no network host is up")
until the controller's sweep finds one (models/placement.py).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from models.base import utcnow
from models.placement import pick_host


def schedule_router(session: Session) -> str | None:
    return pick_host(session, utcnow())
