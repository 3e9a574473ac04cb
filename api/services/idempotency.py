"""Idempotency-Key for POST and PATCH (DESIGN §3).

Same key and same request: the first response (status, body, Location/ETag) is replayed.
Same key, other request: 422. First request still running: 409. Keys live 24 h per
principal. The record is claimed in its own transaction before the request runs, so two
API processes racing on one key cannot both execute it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from enum import Enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import TokenCache, bearer_token
from api.errors import PROBLEM_MEDIA_TYPE, BadRequest, Conflict, Invalid
from api.settings import Settings
from models.base import utcnow
from models.idempotency import IdempotencyRecord

# What a replay repeats besides status and body: a 405 keeps its Allow, a 401 its challenge.
REPLAYED_HEADERS = ("location", "etag", "content-type", "allow", "www-authenticate", "retry-after")
MAX_KEY_LENGTH = 255


class Claim(Enum):
    PROCEED = "proceed"
    IN_FLIGHT = "in_flight"
    MISMATCH = "mismatch"
    REPLAY = "replay"


class IdempotencyMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        sessionmaker: sessionmaker[Session],
        settings: Settings,
        tokens: TokenCache | None = None,  # the app's, so revocations reach both at once
    ):
        self.app = app
        self.sessionmaker = sessionmaker
        self.tokens = tokens or TokenCache(sessionmaker, settings.token_cache_seconds)
        self.ttl = timedelta(seconds=settings.idempotency_ttl_seconds)
        self.stale = timedelta(seconds=settings.idempotency_inflight_seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PATCH"):
            await self.app(scope, receive, send)
            return
        key = _header(scope, b"idempotency-key")
        if key is None or not _routed(scope):  # unknown path or method: 404/405 as usual
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        replay_receive = _replayer(body)
        if not 1 <= len(key) <= MAX_KEY_LENGTH:
            await _problem(
                send,
                scope,
                BadRequest(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters"),
            )
            return
        principal = await self._principal(_header(scope, b"authorization") or "")
        if principal is None:  # let auth answer 401
            await self.app(scope, replay_receive, send)
            return
        fingerprint = hashlib.sha256(
            b"\0".join(
                [
                    scope["method"].encode(),
                    scope["path"].encode("utf-8", "surrogatepass"),
                    scope.get("query_string", b""),
                    body,
                ]
            )
        ).hexdigest()
        claim, record = await run_in_threadpool(self._claim, principal, key, fingerprint)
        if claim is Claim.MISMATCH:
            await _problem(
                send,
                scope,
                Invalid(
                    "Idempotency-Key",
                    "was already used with a different request",
                    "this Idempotency-Key was used with a different method, path or body",
                ),
            )
            return
        if claim is Claim.IN_FLIGHT:
            await _problem(
                send, scope, Conflict("the request with this Idempotency-Key is still running")
            )
            return
        if claim is Claim.REPLAY:
            assert record is not None
            await _send_stored(send, record)
            return
        await self._execute(scope, replay_receive, send, principal, key)

    async def _execute(
        self, scope: Scope, receive: Receive, send: Send, principal: str, key: str
    ) -> None:
        status = 500
        stored_headers: dict[str, str] = {}
        chunks: list[bytes] = []
        stored = False

        async def store() -> None:
            nonlocal stored
            if not stored:
                stored = True
                await run_in_threadpool(
                    self._finish, principal, key, status, stored_headers, b"".join(chunks)
                )

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                for k, v in message.get("headers", []):
                    name = k.decode("latin-1").lower()
                    if name in REPLAYED_HEADERS:
                        stored_headers[name] = v.decode("latin-1")
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    # Stored before the client sees the end of the response, so a retry
                    # that follows at once is replayed rather than told "still running".
                    await store()
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            await store()

    async def _principal(self, authorization: str) -> str | None:
        token = bearer_token(authorization)
        if token is None:
            return None
        who = self.tokens.cached(token) or await run_in_threadpool(self.tokens.verify, token)
        return None if who is None else who.key

    def _claim(
        self, principal: str, key: str, fingerprint: str
    ) -> tuple[Claim, IdempotencyRecord | None]:
        now = utcnow()
        with self.sessionmaker() as session:
            with session.begin():
                session.execute(
                    sa.delete(IdempotencyRecord).where(
                        IdempotencyRecord.principal == principal,
                        IdempotencyRecord.created_at < now - self.ttl,
                    )
                )
            try:
                with session.begin():
                    session.add(
                        IdempotencyRecord(
                            principal=principal, key=key, fingerprint=fingerprint, created_at=now
                        )
                    )
                return Claim.PROCEED, None
            except IntegrityError:
                pass
            with session.begin():
                rec = session.get(IdempotencyRecord, (principal, key), with_for_update=True)
                if rec is None:  # expired and removed meanwhile: let the client retry
                    return Claim.IN_FLIGHT, None
                if rec.fingerprint != fingerprint:
                    return Claim.MISMATCH, None
                if rec.status_code is not None:
                    session.expunge(rec)
                    return Claim.REPLAY, rec
                if rec.created_at < now - self.stale:  # its process died: take it over
                    rec.created_at = now
                    return Claim.PROCEED, None
                return Claim.IN_FLIGHT, None

    def _finish(
        self, principal: str, key: str, status: int, headers: dict[str, str], body: bytes
    ) -> None:
        with self.sessionmaker.begin() as session:
            rec = session.get(IdempotencyRecord, (principal, key))
            if rec is None:
                return
            if status >= 500:  # not a result worth replaying; free the key
                session.delete(rec)
                return
            rec.status_code, rec.headers, rec.body = status, headers, body


def _header(scope: Scope, name: bytes) -> str | None:
    """One request header, decoded as HTTP defines header bytes (ISO-8859-1, RFC 9110 §5.5).

    Only the headers this middleware needs are read: any other header may hold any bytes.
    """
    for key, value in scope["headers"]:
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _routed(scope: Scope) -> bool:
    """Whether a route of the app takes this path and method.

    The middleware runs before routing: an unknown path or method must get its 404 or 405,
    never be claimed (or refused) as an idempotent request.
    """
    router = getattr(scope.get("app"), "router", None)
    if router is None:
        return True
    return any(route.matches(scope)[0] is Match.FULL for route in router.routes)


async def _read_body(receive: Receive) -> bytes:
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(parts)


def _replayer(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


async def _send_stored(send: Send, rec: IdempotencyRecord) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (rec.headers or {}).items()]
    headers.append((b"idempotent-replayed", b"true"))
    await send({"type": "http.response.start", "status": rec.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": rec.body or b""})


async def _problem(send: Send, scope: Scope, err: Any) -> None:
    body = json.dumps(err.problem(scope["path"])).encode()
    await send(
        {
            "type": "http.response.start",
            "status": err.status,
            "headers": [(b"content-type", PROBLEM_MEDIA_TYPE.encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
