"""Bearer tokens: who a request is, verified once and then remembered for a few seconds.

Verifying a token is a database round trip; at a few thousand requests a second it was a
sixth of a GET's cost (issue 14). `TokenCache` keeps each verified token's principal for
`ttl` seconds, keyed by the token's hash:

- a revocation made by this process (a tenant deleted) empties the cache when it commits,
  so it takes effect at once here; a verification already running when the revocation
  committed does not store its (possibly stale) answer;
- a revocation made elsewhere (another API worker, `vpcd admin-token --rotate`, a restart
  with another VPCD_ADMIN_TOKEN) takes effect here within `ttl` seconds.

Unknown tokens are never cached: each costs its own lookup.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from models.tenant import find_token, hash_token

MAX_ENTRIES = 10_000


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


class TokenCache:
    def __init__(
        self,
        sessionmaker: sessionmaker[Session],
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._generation = 0
        self._lock = threading.Lock()

    def cached(self, token: str) -> Principal | None:
        """The token's principal if verified less than `ttl` ago (no I/O: call it anywhere)."""
        entry = self._entries.get(hash_token(token))
        if entry is not None and entry[1] > self.clock():
            return entry[0]
        return None

    def verify(self, token: str) -> Principal | None:
        """The token's principal, from the cache or else the database (blocking I/O)."""
        principal = self.cached(token)
        if principal is not None:
            return principal
        generation = self._generation
        with self.sessionmaker() as session:
            row = find_token(session, token)
        if row is None:
            return None
        principal = Principal(row.tenant_id)
        with self._lock:
            if generation == self._generation:  # no revocation committed meanwhile
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.clear()
                self._entries[hash_token(token)] = (principal, self.clock() + self.ttl)
        return principal

    def revoked(self) -> None:
        """Tokens were revoked and committed: forget every verification made until now."""
        with self._lock:
            self._generation += 1
            self._entries.clear()
