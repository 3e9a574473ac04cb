"""The last document this controller process sent each host: the base of its next delta.

Held in memory only: after a restart every host first gets a whole document again. A
delta is sent only on a base older than the new document; anything else goes whole
(e.g. a host whose revisions started again). The newest send is always the next base:
if two sends of one host crossed on the worker's threads, the agent holds another
revision than that base, asks for the whole document, and gets it. The very document
sent last is not sent again unless asked (`again`): a poke racing the sweeper, or a peer
recompiled for nothing, costs a compile, not a message.
"""

from __future__ import annotations

import threading
from typing import Any

from workers import docdelta


class SentDocuments:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._docs: dict[str, dict[str, Any]] = {}

    def message(
        self, host: str, body: dict[str, Any], *, deltas: bool, again: bool = True
    ) -> dict[str, Any] | None:
        """What to send `host` for document `body`: a delta on the last document sent
        when the host takes deltas and there is an older one, else `body` whole; None
        when `body` is the very document sent last and not to be sent `again`."""
        with self._lock:
            base = self._docs.get(host)
            if not again and base == body:
                return None
            self._docs[host] = body
        if not deltas or base is None or base["revision"] >= body["revision"]:
            return body
        return docdelta.diff(base, body, base["revision"])

    def forget(self, host: str) -> None:
        with self._lock:
            self._docs.pop(host, None)


SENT = SentDocuments()
