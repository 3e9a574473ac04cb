"""Request dependencies: the DB session (owner of commit/rollback) and the caller's identity."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import Forbidden, Unauthorized
from api.services.notify import Notifier
from models.tenant import find_token

log = logging.getLogger("vpcd.api")
AfterCommit = Callable[[], None]
SESSION_SCOPE_KEY = "vpcd.session"  # where the Idempotency-Key middleware's route finds it


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request: commit when the route returns, roll back on error.

    Work queued in `session.info["after_commit"]` (host pokes) runs only once the commit
    succeeded, and is dropped on rollback.
    """
    session: Session = request.app.state.sessionmaker()
    session.info["after_commit"] = []
    request.scope[SESSION_SCOPE_KEY] = session  # an Idempotency-Key's answer commits with it
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        session.info["after_commit"] = []
        raise
    finally:
        hooks: list[AfterCommit] = session.info.pop("after_commit", [])
        request.scope.pop(SESSION_SCOPE_KEY, None)
        session.close()
    for hook in hooks:
        try:
            hook()
        except Exception:  # the commit stands; the controller's sweep finds dirty hosts
            log.exception("after-commit hook failed")


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


class DbAdmission:
    """Admit at most as many requests at once as the DB pool has connections.

    A request's session keeps its connection between the thread-pool hops of its sync
    dependencies and route. Without this bound, a burst larger than the pool leaves every
    pool thread blocked on checkout while the sessions holding connections wait for a
    thread: nothing moves until the pool timeout, and the burst gets 500s. Waiting here
    costs no thread. Liveness and metrics use no connection and are never held back.
    """

    EXEMPT = frozenset({"/healthz", "/metrics"})

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = asyncio.Semaphore(limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.EXEMPT:
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a semaphore serves one loop (TestClient makes several)
            self._loop, self._slots = loop, asyncio.Semaphore(self.limit)
        async with self._slots:
            await self.app(scope, receive, send)


@dataclass(frozen=True)
class Principal:
    tenant_id: str | None  # None: the admin

    @property
    def is_admin(self) -> bool:
        return self.tenant_id is None

    @property
    def key(self) -> str:
        return self.tenant_id or "admin"


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer ...` header, or None."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def get_principal(request: Request, session: SessionDep) -> Principal:
    token = bearer_token(request.headers.get("authorization", ""))
    if token is None:
        raise Unauthorized("missing bearer token")
    row = find_token(session, token)
    if row is None:
        raise Unauthorized("unknown bearer token")
    return Principal(row.tenant_id)


PrincipalDep = Annotated[Principal, Depends(get_principal, scope="function")]


def get_notifier(request: Request) -> Notifier:
    notifier: Notifier = request.app.state.notifier
    return notifier


NotifierDep = Annotated[Notifier, Depends(get_notifier)]


def require_admin(principal: PrincipalDep) -> Principal:
    if not principal.is_admin:
        raise Forbidden("this operation is for the admin only")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin, scope="function")]


def require_tenant(principal: PrincipalDep) -> Principal:
    """Creating tenant resources needs a tenant token; the admin reads and deletes across."""
    if principal.is_admin:
        raise Forbidden("create tenant resources with that tenant's token")
    return principal


TenantDep = Annotated[Principal, Depends(require_tenant, scope="function")]
