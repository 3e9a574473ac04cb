"""One thread-pool call per request: the route and its whole transaction run in it.

FastAPI runs each sync dependency, the sync route, its response validation and a sync
generator dependency's exit in a thread-pool call of their own: six hand-offs per GET,
each a kernel wake-up, were the largest cost of a request (issue 14). Here:

- the dependencies that do no I/O are `async` (they run on the event loop, no hand-off);
- `get_session` (async) makes the request's Session, which connects only when first used;
  it is no generator: FastAPI's exit stack around one cost a tenth of a create, and the
  route's call below always ends the session (a request failing before its route never
  used it: it holds no connection);
- `ResourceRoute` turns each sync route into an async one that makes a single thread-pool
  call running the route, the commit (or the rollback) and the after-commit hooks (an
  async route's session is ended the same way, after it);
- the response is validated and serialised on the event loop.

GET and HEAD read without a transaction on Postgres (`AUTOCOMMIT`: each statement sees
committed data, as under READ COMMITTED, with no BEGIN/COMMIT round trips). Such a read
that meets a dropped connection (the database restarted since the pool lent it) is run
once more on a fresh connection: the pool checks no connection before lending it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable
from contextvars import ContextVar, copy_context
from typing import Any

from fastapi import Request
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

log = logging.getLogger("vpcd.api")
AfterCommit = Callable[[], None]
READS = frozenset({"GET", "HEAD"})

_SESSION: ContextVar[Session | None] = ContextVar("vpcd_session", default=None)
# A request with an Idempotency-Key commits only once its answer is stored with the change
# (api.rest.preconditions.ResourceRoute): the route marks the scope, the session waits there.
DEFER_SCOPE_KEY = "vpcd.defer_commit"
SESSION_SCOPE_KEY = "vpcd.session"


async def get_session(request: Request) -> Session:
    """The request's Session, ended by the route's call (`in_one_call`). Work queued in
    `session.info["after_commit"]` (host pokes) runs only once the commit succeeded, and
    is dropped on rollback."""
    session = open_session(request)
    if not session.info["read_only"] and request.scope.get(DEFER_SCOPE_KEY):
        session.info["defer_commit"] = True
        request.scope[SESSION_SCOPE_KEY] = session  # the route commits it with its answer
    _SESSION.set(session)
    return session


def open_session(request: Request) -> Session:
    """A Session for the request: GET and HEAD read on the autocommit engine."""
    state = request.app.state
    reads = request.method in READS
    session: Session = (state.read_sessionmaker if reads else state.sessionmaker)()
    session.info["after_commit"] = []
    session.info["read_only"] = reads
    # The app's database threads (api.app): a plain executor call, a third of the CPU of
    # anyio's thread-pool call that it replaces in `in_one_call` (issue 14).
    session.info["threads"] = getattr(state, "threads", None)
    # On the autocommit engine each statement committed as it ran: the end is a close.
    session.info["autocommit"] = reads and getattr(state, "reads_autocommit", False)
    return session


def in_one_call(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """An async route running the sync `endpoint` and its transaction in one pool call."""
    if inspect.iscoroutinefunction(endpoint):
        return _ending_session(endpoint)

    @functools.wraps(endpoint)
    async def route(**kwargs: Any) -> Any:
        session = _SESSION.get()
        threads = None if session is None else session.info.get("threads")
        if threads is None:
            return await run_in_threadpool(transact, endpoint, kwargs, session)
        call = functools.partial(copy_context().run, transact, endpoint, kwargs, session)
        return await asyncio.get_running_loop().run_in_executor(threads, call)

    return route


def _ending_session(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """An async route, then the end of its session (if it took one) as `transact` ends it."""

    @functools.wraps(endpoint)
    async def route(**kwargs: Any) -> Any:
        session = _SESSION.get()
        try:
            result = await endpoint(**kwargs)
        except BaseException:
            if session is not None:
                await run_in_threadpool(finish, session, False)
            raise
        if session is not None and not session.info.get("defer_commit"):
            await run_in_threadpool(finish, session, True)
        return result

    return route


def transact(endpoint: Callable[..., Any], kwargs: dict[str, Any], session: Session | None) -> Any:
    if session is None:
        return endpoint(**kwargs)
    try:
        try:
            result = endpoint(**kwargs)
        except DBAPIError as exc:
            if not (exc.connection_invalidated and session.info.get("read_only")):
                raise
            session.rollback()  # the pool replaced its connections; read again
            result = endpoint(**kwargs)
    except BaseException:
        finish(session, ok=False)
        raise
    if not session.info.get("defer_commit"):
        finish(session, ok=True)
    return result


def _committed(session: Session) -> bool:
    """A read on the autocommit engine that changed nothing: there is nothing to commit
    (a commit's flush and state bookkeeping were a twentieth of a GET)."""
    return bool(
        session.info.get("autocommit")
        and not (session.new or session.dirty or session.deleted or session.info["after_commit"])
    )


def finish(session: Session, ok: bool) -> None:
    """Commit (or roll back), release the connection, then run the after-commit hooks."""
    try:
        if ok:
            if not _committed(session):
                session.commit()
        else:
            session.info["after_commit"] = []
            session.rollback()
    except BaseException:
        session.info["after_commit"] = []
        session.rollback()
        raise
    finally:
        hooks: list[AfterCommit] = session.info.pop("after_commit", [])
        session.close()
    for hook in hooks:
        try:
            hook()
        except Exception:  # the commit stands; the controller's sweep finds dirty hosts
            log.exception("after-commit hook failed")
