"""Query strings and path ids: a misspelt or unsupported filter is an error, not an
unfiltered list; text no database takes (a NUL) is a 422 naming the parameter."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from api.errors import Invalid
from api.rest.schemas import UNSTORABLE, unstorable

_QUERY_NAMES: dict[int, frozenset[str]] = {}


def _query_names(dependant: Any) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def reject_unstorable_parameters(request: Request) -> None:
    """A NUL (or lone surrogate) in a path id or a query value is a 422 naming it.

    Postgres refuses such text in any comparison, so it never reaches a query.
    """
    query = request.query_params.multi_items() if request.scope.get("query_string") else []
    errors = [
        {"field": f"{where}.{name}", "message": UNSTORABLE}
        for where, items in (("path", request.path_params.items()), ("query", query))
        for name, value in items
        if isinstance(value, str) and (unstorable(value) or unstorable(name))
    ]
    if errors:
        raise Invalid(errors[0]["field"], UNSTORABLE).with_errors(errors)


async def reject_unknown_query(request: Request) -> None:
    """`/v1/ports?vpc_id=...` would otherwise return every port."""
    if not request.scope.get("query_string") or not request.query_params:
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = _QUERY_NAMES.get(id(route))
    if known is None:
        known = _QUERY_NAMES[id(route)] = frozenset(_query_names(dependant))
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        errors = [
            {
                "field": f"query.{name}",
                "message": "unknown query parameter"
                + (
                    f"; this list filters by {', '.join(sorted(known - {'limit', 'page_token'}))}"
                    if known - {"limit", "page_token"}
                    else ""
                ),
            }
            for name in unknown
        ]
        raise Invalid(errors[0]["field"], errors[0]["message"]).with_errors(errors)
