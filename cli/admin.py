"""`vpcd admin-token --rotate`: revoke the admin token and mint a new one.

The new token is minted by the same code path as at the API's first start
(`api.app.ensure_admin_token`): stored as its hash, printed once.
"""

from __future__ import annotations

from api.app import ensure_admin_token
from api.settings import Settings
from models.db import engine_for, session_factory
from models.tenant import revoke_admin_tokens


def rotate_admin_token(database_url: str) -> str:
    """Revoke every admin token on `database_url` and return a new one (printed once)."""
    settings = Settings(database_url=database_url)
    if settings.vpcd_admin_token:
        raise ValueError(
            "VPCD_ADMIN_TOKEN is set: that value is the admin token; change it where the"
            " API is configured and restart it, or unset it here to mint a new one"
        )
    with session_factory(engine_for(database_url)).begin() as session:
        revoke_admin_tokens(session)
    token = ensure_admin_token(settings)
    if token is None:  # another process minted one between the two transactions
        raise ValueError("an admin token appeared while rotating; run --rotate again")
    return token
