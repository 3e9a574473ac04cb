"""The plan: a pure diff of the stack file against the live state.

A resource is matched to its key by the tag `stack-key:<key>`; a wanted field that differs
from the live value (drift included) is an update, an immutable one is an error naming the
line; what the stack's tag still carries but the file no longer names is a delete. Steps
come in the order `execute` runs them: creates and updates in dependency order, deletes in
reverse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cli.stack.kinds import BY_NAME, ORDER, External, Kind, Ref, key_tag
from cli.stack.live import Live
from cli.stack.parse import Item, Stack, StackErrors, Want
from cli.stack.yamlmarks import StackError


@dataclass(frozen=True)
class Pending:
    """A reference to a resource this plan creates: its id is known only after apply."""

    ref: Ref

    def __str__(self) -> str:
        return f"(new {self.ref})"


@dataclass
class Change:
    field: str
    old: Any  # as displayed
    new: Any  # as displayed
    value: Any  # what to send, references still by name


@dataclass
class Step:
    action: str  # create, update or delete
    kind: str
    key: str
    line: int | None = None
    id: str | None = None
    revision: int | None = None
    changes: list[Change] = field(default_factory=list)
    add: list[Item] = field(default_factory=list)
    remove: list[dict[str, Any]] = field(default_factory=list)
    want: Want | None = None

    @property
    def address(self) -> str:
        return f"{self.kind}/{self.key}"


@dataclass
class Plan:
    stack: str
    steps: list[Step]
    unchanged: list[str]
    ids: dict[tuple[str, str], str]  # (kind, key) -> id of what exists already
    externals: dict[str, str]
    names: dict[str, str] = field(default_factory=dict)  # id -> address, for display

    @property
    def changed(self) -> bool:
        return bool(self.steps)


class Resolver:
    """Names in the file -> ids: known ones from the live state, the rest `Pending`."""

    def __init__(self, ids: dict[tuple[str, str], str], externals: dict[str, str]) -> None:
        self.ids = ids
        self.externals = externals

    def value(self, v: Any) -> Any:
        if isinstance(v, Ref):
            return self.ids.get((v.kind, v.key), Pending(v))
        if isinstance(v, External):
            return self.externals[v.name]
        if isinstance(v, tuple):  # a list of references: order does not matter to the API
            return sorted((self.value(r) for r in v), key=str)
        return v

    def item(self, coll_fields: Any, values: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(_freeze(self.value(values.get(f.api))) for f in coll_fields)


def _freeze(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    return v


def _norm(api_field: str, v: Any) -> Any:
    if api_field in ("tags", "security_group_ids") and isinstance(v, list):
        return sorted(v, key=str)
    return v


def diff(stack: Stack, live: Live) -> Plan:
    """Compare; raises StackErrors for what cannot be done (immutable fields, unknown names)."""
    errors: list[StackError] = []
    matched, extra = _match(stack, live)
    ids = {k: r["id"] for k, r in matched.items()}
    names = {r["id"]: f"{k[0]}/{k[1]}" for k, r in matched.items()}
    names.update({ident: name for name, ident in live.externals.items()})
    for want in stack.wants.values():
        for api_field, v in want.fields.items():
            if isinstance(v, External) and v.name not in live.externals:
                known = ", ".join(sorted(live.externals)) or "none"
                errors.append(
                    StackError(
                        want.lines.get(api_field),
                        f"{want.address}: no external network is named {v.name!r} "
                        f"(there are: {known})",
                    )
                )
    if errors:
        raise StackErrors(errors)
    resolve = Resolver(ids, live.externals)
    steps: list[Step] = []
    unchanged: list[str] = []
    for kind_name in ORDER:
        kind = BY_NAME[kind_name]
        for want in stack.of(kind_name):
            current = matched.get((kind_name, want.key))
            step = (
                _create(kind, want, resolve, names)
                if current is None
                else _update(kind, want, current, live, resolve, names, errors)
            )
            if step is None:
                unchanged.append(want.address)
            else:
                steps.append(step)
    for kind_name in reversed(ORDER):
        for key, current in extra.get(kind_name, []):
            steps.append(
                Step(
                    "delete",
                    kind_name,
                    key,
                    id=current["id"],
                    revision=current.get("revision"),
                    remove=list(live.children.get(current["id"], [])),
                )
            )
    if errors:
        raise StackErrors(errors)
    return Plan(stack.name, steps, unchanged, ids, live.externals, names)


def _match(
    stack: Stack, live: Live
) -> tuple[dict[tuple[str, str], dict[str, Any]], dict[str, list[tuple[str, dict[str, Any]]]]]:
    """Live resources by their key; the rest (unknown key, or a repeat of one) to delete."""
    matched: dict[tuple[str, str], dict[str, Any]] = {}
    extra: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for kind_name in ORDER:
        for resource in sorted(live.of(kind_name), key=lambda r: r.get("created_at") or ""):
            tags = resource.get("tags") or []
            keys = [t[len(key_tag("")) :] for t in tags if t.startswith(key_tag(""))]
            key = keys[0] if keys else resource.get("name") or resource["id"]
            if (kind_name, key) in stack.wants and (kind_name, key) not in matched:
                matched[(kind_name, key)] = resource
            else:
                extra.setdefault(kind_name, []).append((key, resource))
    for found in extra.values():
        found.sort(key=lambda pair: pair[0])
    return matched, extra


def _shown(v: Any, names: dict[str, str]) -> Any:
    if isinstance(v, list):
        return [_shown(x, names) for x in v]
    if isinstance(v, str) and v in names:
        return names[v]
    return v


def _create(kind: Kind, want: Want, resolve: Resolver, names: dict[str, str]) -> Step:
    changes = [
        Change(f, None, _shown(resolve.value(v), names), v)
        for f, v in want.fields.items()
        if v is not None and v != [] and v != ""
    ]
    return Step(
        "create", kind.name, want.key, want.line, changes=changes, add=want.items, want=want
    )


def _update(
    kind: Kind,
    want: Want,
    current: dict[str, Any],
    live: Live,
    resolve: Resolver,
    names: dict[str, str],
    errors: list[StackError],
) -> Step | None:
    step = Step(
        "update",
        kind.name,
        want.key,
        want.line,
        id=current["id"],
        revision=current.get("revision"),
        want=want,
    )
    immutable = {f.api for f in kind.fields if f.immutable}
    for api_field, v in want.fields.items():
        new = _norm(api_field, resolve.value(v))
        old = _norm(api_field, current.get(api_field))
        if new == old:
            continue
        if api_field in immutable:
            errors.append(
                StackError(
                    want.lines.get(api_field),
                    f"{want.address}: {api_field} cannot change in place "
                    f"(live {_shown(old, names)}, file {_shown(new, names)}); "
                    "give the resource a new name in the file to replace it",
                )
            )
            continue
        step.changes.append(Change(api_field, _shown(old, names), _shown(new, names), v))
    coll = kind.collection
    if coll is not None:
        have = {resolve.item(coll.fields, c): c for c in live.children.get(current["id"], [])}
        wanted = {resolve.item(coll.fields, i.values): i for i in want.items}
        step.add = [i for ident, i in wanted.items() if ident not in have]
        step.remove = [c for ident, c in have.items() if ident not in wanted]
    return step if step.changes or step.add or step.remove else None
