"""Request dependencies: the DB session (api.rest.transaction) and the caller's identity.

Those doing no I/O are `async`: FastAPI runs a sync dependency in a thread-pool call."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import Principal, TokenCache, bearer_token
from api.errors import Forbidden, Unauthorized
from api.rest.transaction import get_session
from api.services.notify import Notifier

__all__ = ["Principal", "SessionDep", "bearer_token", "get_session"]


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


class DbAdmission:
    """Admit at most as many requests at once as the DB pool has connections.

    A request holds a connection only inside its thread-pool calls, but a burst larger
    than the pool would still park every pool thread on checkout, in front of requests
    that need no connection from the pool. Waiting here costs no thread. Liveness and
    metrics use no connection and are never held back.
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


async def get_principal(request: Request) -> Principal:
    """The caller: a token verified in the last few seconds costs no I/O (api.auth)."""
    token = bearer_token(request.headers.get("authorization", ""))
    if token is None:
        raise Unauthorized("missing bearer token")
    tokens: TokenCache = request.app.state.tokens
    principal = tokens.cached(token) or await run_in_threadpool(tokens.verify, token)
    if principal is None:
        raise Unauthorized("unknown bearer token")
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal, scope="function")]


async def get_notifier(request: Request) -> Notifier:
    notifier: Notifier = request.app.state.notifier
    return notifier


NotifierDep = Annotated[Notifier, Depends(get_notifier)]


async def get_tokens(request: Request) -> TokenCache:
    tokens: TokenCache = request.app.state.tokens
    return tokens


TokensDep = Annotated[TokenCache, Depends(get_tokens)]


async def require_admin(principal: PrincipalDep) -> Principal:
    if not principal.is_admin:
        raise Forbidden("this operation is for the admin only")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin, scope="function")]


async def require_tenant(principal: PrincipalDep) -> Principal:
    """Creating tenant resources needs a tenant token; the admin reads and deletes across."""
    if principal.is_admin:
        raise Forbidden("create tenant resources with that tenant's token")
    return principal


TenantDep = Annotated[Principal, Depends(require_tenant, scope="function")]
