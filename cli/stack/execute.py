"""Carry a plan out against the API, safely under retries and concurrent edits.

- Every POST and PATCH carries an Idempotency-Key derived from the stack, the resource and
  the request, so a request retried after a lost answer is answered, not repeated. A replayed
  create whose resource has since been deleted (the same stack applied, destroyed and applied
  again within the API's key lifetime) moves on to the key's next generation.
- Every PATCH and DELETE carries If-Match with the revision the plan saw: a resource changed
  by someone else meanwhile is a 412, reported as such, and nothing of it is overwritten.
  Our own child changes (a rule, an interface) move the parent's revision too; the parent's
  revision is re-read after them, before its delete.
- Order: creates and updates kind by kind in dependency order (a kind's fields first, then
  its children, so a rule can name a group made in the same run); deletes in reverse.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from cli.client import Api, problem_lines
from cli.stack.kinds import BY_NAME, ORDER, Collection
from cli.stack.live import children_of
from cli.stack.plan import Pending, Plan, Resolver, Step

RETRIES = 3  # a request whose answer was lost is sent again (same key) this many times


def pause(seconds: float) -> None:
    """Wait between polls and retries (tests replace it to drive hosts meanwhile)."""
    time.sleep(seconds)


class ApplyFailed(Exception):
    """Apply stopped: what failed, on which resource, and what to do next."""


class _AsIs(dict[str, str]):
    """Field names in API problems as the stack file spells them (no CLI flags here)."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> str:
        return key


def idempotency_key(stack: str, address: str, method: str, path: str, body: Any, gen: int) -> str:
    """Deterministic: the same request of the same stack always gets the same key."""
    blob = json.dumps([stack, address, method, path, body, gen], sort_keys=True, default=str)
    return f"vpcctl-{stack}-{hashlib.sha256(blob.encode()).hexdigest()[:40]}"


class Executor:
    def __init__(
        self,
        api: Api,
        plan: Plan,
        say: Callable[[str], None],
    ) -> None:
        self.api = api
        self.plan = plan
        self.say = say
        self.resolve = Resolver(dict(plan.ids), plan.externals)
        self.stale: set[str] = set()  # ids whose revision our own child changes moved

    # ------------------------------------------------------------------ HTTP

    def send(
        self,
        method: str,
        path: str,
        address: str,
        body: Any = None,
        revision: int | None = None,
        key: str | None = None,
    ) -> httpx.Response:
        headers = {"Accept": "application/json"}
        if self.api.token:
            headers["Authorization"] = f"Bearer {self.api.token}"
        if revision is not None:
            headers["If-Match"] = f'"{revision}"'
        if key is not None:
            headers["Idempotency-Key"] = key
        lost = False
        for attempt in range(RETRIES + 1):
            try:
                r = self.api.client.request(method, path, json=body, headers=headers)
                break
            except httpx.TransportError as exc:
                if attempt == RETRIES:
                    raise ApplyFailed(
                        f"{address}: {method} {path}: no answer from {self.api.url} ({exc}); "
                        "run apply again: it carries on where this one stopped"
                    ) from exc
                lost = True
                pause(0.2 * (attempt + 1))
        if method == "DELETE" and lost and r.status_code == 404:
            return r  # the first try went through; its answer was lost
        if r.status_code == 412:
            raise ApplyFailed(
                f"{address}: changed by someone else since this plan was made "
                f"(412 Precondition Failed on {method} {path}); it was not overwritten. "
                "Run `vpcctl plan` to see the change, then apply again."
            )
        if r.is_error:
            lines = problem_lines(r, _AsIs(), has_token=bool(self.api.token))
            raise ApplyFailed(f"{address}: {method} {path} failed: " + "\n  ".join(lines))
        return r

    def body(self, values: dict[str, Any], address: str) -> dict[str, Any]:
        out = {}
        for name, v in values.items():
            resolved = self.resolve.value(v)
            pending = [x for x in (resolved if isinstance(resolved, list) else [resolved])]
            if any(isinstance(x, Pending) for x in pending):
                raise ApplyFailed(f"{address}: {name} names something not created yet")
            out[name] = resolved
        return out

    # ------------------------------------------------------------------ the run

    def run(self) -> None:
        steps = self.plan.steps
        for kind in ORDER:
            mine = [s for s in steps if s.kind == kind and s.action != "delete"]
            for step in mine:
                self.create(step) if step.action == "create" else self.update(step)
            for step in mine:
                self.children(step)
        for kind in reversed(ORDER):
            gone = [s for s in steps if s.kind == kind and s.action == "delete"]
            for step in gone:
                self.children(step)
            for step in gone:
                self.delete(step)

    def create(self, step: Step) -> None:
        kind = BY_NAME[step.kind]
        assert step.want is not None
        values = {k: v for k, v in step.want.fields.items() if v is not None}
        body = self.body(values, step.address)
        for gen in range(16):
            key = idempotency_key(self.plan.stack, step.address, "POST", kind.path, body, gen)
            r = self.send("POST", kind.path, step.address, body, key=key)
            made = r.json()
            replayed = r.headers.get("idempotent-replayed") == "true"
            if not replayed or self._exists(f"{kind.path}/{made['id']}", step.address):
                break
        else:
            raise ApplyFailed(f"{step.address}: every idempotency key generation is used up")
        self.resolve.ids[(step.kind, step.key)] = made["id"]
        step.id = made["id"]
        self.say(f"+ {step.address} created ({made['id']})")

    def _exists(self, path: str, address: str) -> bool:
        try:
            self.send("GET", path, address)
        except ApplyFailed:
            return False
        return True

    def update(self, step: Step) -> None:
        if not step.changes:
            return
        assert step.id is not None
        path = f"{BY_NAME[step.kind].path}/{step.id}"
        body = self.body({c.field: c.value for c in step.changes}, step.address)
        key = idempotency_key(
            self.plan.stack, step.address, "PATCH", path, [body, step.revision], 0
        )
        r = self.send("PATCH", path, step.address, body, revision=step.revision, key=key)
        step.revision = r.json().get("revision")
        self.say(f"~ {step.address} updated ({', '.join(c.field for c in step.changes)})")

    def children(self, step: Step) -> None:
        coll = BY_NAME[step.kind].collection
        if coll is None:
            return
        parent = step.id or self.resolve.ids[(step.kind, step.key)]
        if step.action == "create":
            self._settle_made(coll, step, parent)
        if not (step.add or step.remove):
            return
        for child in step.remove:
            self._remove(coll, parent, child, step.address)
        if step.action != "delete":
            for item in step.add:
                self._add(coll, parent, item.values, step.address)
        self.stale.add(parent)

    def _settle_made(self, coll: Collection, step: Step, parent: str) -> None:
        """A resource the API made with children of its own (a new group's allow-all
        egress rules, as on AWS): the file is the whole truth, as with Terraform, so those
        it does not declare go and those it does are not added twice."""
        have = {
            self.resolve.item(coll.fields, c): c
            for c in children_of(step.kind, {"id": parent}, self.api)
        }
        wanted = {self.resolve.item(coll.fields, i.values) for i in step.add}
        step.remove = [c for ident, c in have.items() if ident not in wanted]
        step.add = [i for i in step.add if self.resolve.item(coll.fields, i.values) not in have]

    def _add(self, coll: Collection, parent: str, values: dict[str, Any], address: str) -> None:
        body = self.body({k: v for k, v in values.items() if v is not None}, address)
        if coll.parent_field:
            body[coll.parent_field] = parent
        path = coll.add_path.format(id=parent)
        key = idempotency_key(self.plan.stack, address, "POST", path, body, 0)
        self.send("POST", path, address, body, key=key)
        self.say(f"+ {address} {coll.key}: {describe(body, self.plan.names)}")

    def _remove(self, coll: Collection, parent: str, child: dict[str, Any], address: str) -> None:
        path = coll.remove_path.format(id=parent, item=child["id"])
        r = self.send("DELETE", path, address, revision=child.get("revision"))
        if r.status_code != 404:
            self.say(f"- {address} {coll.key}: {describe(child, self.plan.names)}")

    def delete(self, step: Step) -> None:
        assert step.id is not None
        path = f"{BY_NAME[step.kind].path}/{step.id}"
        revision = step.revision
        if step.id in self.stale:  # our own child removals moved it on
            revision = self.send("GET", path, step.address).json().get("revision")
        self.send("DELETE", path, step.address, revision=revision)
        self.say(f"- {step.address} deleted ({step.id})")


def describe(child: dict[str, Any], names: dict[str, str] | None = None) -> str:
    """A rule or an interface on one line, ids shown as the file's names where known."""
    skip = {"id", "revision", "tenant_id", "created_at", "updated_at", "security_group_id"}
    named = names or {}
    return " ".join(
        f"{k}={named.get(v, v) if isinstance(v, str) else v}"
        for k, v in child.items()
        if v not in (None, "") and k not in skip
    )


def wait_active(
    api: Api,
    stack: str,
    timeout: float,
    console: Console,
    read: Callable[[], list[tuple[str, dict[str, Any]]]],
) -> None:
    """Poll the stack's realised resources until all are `active`; stop on the first `error`."""
    deadline = time.monotonic() + timeout
    with Progress(
        TextColumn("[bold]realising[/bold] {task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(stack, total=None)
        while True:
            resources = read()
            failed = [(a, r) for a, r in resources if r.get("status") == "error"]
            if failed:
                lines = [
                    f"{a} is in error: {r.get('status_detail') or 'no detail'}" for a, r in failed
                ]
                raise ApplyFailed("\n".join(lines))
            waiting = [a for a, r in resources if r.get("status") != "active"]
            progress.update(
                task,
                total=len(resources),
                completed=len(resources) - len(waiting),
                description=", ".join(waiting[:3]) + (" …" if len(waiting) > 3 else ""),
            )
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise ApplyFailed(
                    f"still not active after {timeout:g}s: {', '.join(waiting)} "
                    "(is every host's agent up? `vpcctl hosts list`)"
                )
            pause(0.5)
