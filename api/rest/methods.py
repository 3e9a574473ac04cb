"""405 answers name every method of the path (RFC 9110 §15.5.6), not just one route's.

Each route serves one method at a path, and the router answers 405 from the first route
whose path matched; this table gathers, per path template, the methods of all its routes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.routing import compile_path

try:
    from fastapi.routing import iter_route_contexts
except ImportError:  # older FastAPI: app.routes is already flat

    def iter_route_contexts(routes: Any) -> Iterable[Any]:  # type: ignore[misc]
        return list(routes)


class MethodTable:
    def __init__(self, routes: Iterable[Any]) -> None:
        by_path: dict[str, set[str]] = {}
        for route in iter_route_contexts(list(routes)):
            if route.path and route.methods:
                by_path.setdefault(route.path, set()).update(route.methods)
        self._table = [(compile_path(path)[0], frozenset(m)) for path, m in by_path.items()]

    def allow(self, path: str) -> str | None:
        """The Allow header for a concrete request path, or None if no route has it."""
        methods = set().union(*(m for regex, m in self._table if regex.match(path)))
        return ", ".join(sorted(methods)) if methods else None
