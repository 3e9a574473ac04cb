"""Run a request again when the database aborted its transaction to resolve a conflict.

Postgres may end a transaction with serialization_failure (40001) or deadlock_detected
(40P01). Every request is one transaction (api.rest.transaction), so such a request wrote
nothing and its after-commit hooks were dropped: running it again is safe, whatever its
method. The problem handler (api.errors) marks the scope; this middleware, which holds the
request body, discards that 503 before anything reached the client and runs the request
again, a bounded number of times with a short jittered pause. The last 503 (with
Retry-After) goes out when every attempt lost.

Connection failures are never retried here: a commit cut off by a restart may have landed,
so only the client (with an Idempotency-Key) can safely ask again.
"""

from __future__ import annotations

import asyncio
import logging
import random

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import RETRYABLE_SCOPE_KEY
from api.services.idempotency import read_body, replayer

log = logging.getLogger("vpcd.api")
ATTEMPTS = 4
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PAUSE = 0.02  # seconds before the second attempt; doubled after each further loss


class RetryTransient:
    def __init__(self, app: ASGIApp, attempts: int = ATTEMPTS) -> None:
        self.app = app
        self.attempts = attempts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITES:  # reads take no row locks
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        for attempt in range(1, self.attempts + 1):
            last = attempt == self.attempts
            scope[RETRYABLE_SCOPE_KEY] = False
            lost = await self._attempt(scope, body, send, deliver_503=last)
            if not lost:
                return
            log.info("%s %s lost a conflict (attempt %d)", scope["method"], scope["path"], attempt)
            await asyncio.sleep(PAUSE * 2 ** (attempt - 1) * (0.5 + random.random()))

    async def _attempt(self, scope: Scope, body: bytes, send: Send, *, deliver_503: bool) -> bool:
        """Run the app once; True when it lost a conflict and its answer was held back."""
        held = False

        async def relay(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                held = bool(
                    not deliver_503 and message["status"] == 503 and scope.get(RETRYABLE_SCOPE_KEY)
                )
            if not held:
                await send(message)

        await self.app(scope, replayer(body), relay)
        return held
