"""The live state of a stack: every resource carrying its tag, with their children."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cli.client import MAX_PAGE, Api
from cli.stack.kinds import BY_NAME, KINDS, owner_tag


@dataclass
class Live:
    items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # kind -> resources
    children: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # parent id -> items
    externals: dict[str, str] = field(default_factory=dict)  # external network name -> id

    def of(self, kind: str) -> list[dict[str, Any]]:
        return self.items.get(kind, [])


def children_of(kind: str, resource: dict[str, Any], api: Api | None) -> list[dict[str, Any]]:
    """A resource's collection as the API holds it, each child with the `id` to remove it by."""
    if kind == "routers":  # interfaces: one per subnet, removed by the subnet's id
        return [{"id": s, "subnet_id": s} for s in resource.get("subnet_ids") or []]
    if kind == "security_groups" and api is not None:
        path = BY_NAME[kind].collection.add_path  # type: ignore[union-attr]
        return api.pages(path, {"security_group_id": resource["id"]}, None, MAX_PAGE)
    return []


def read(api: Api, stack: str, needs_externals: bool = True) -> Live:
    """Everything tagged `stack:<name>`; external networks by name when the file names any."""
    live = Live()
    tag = {"tag": owner_tag(stack)}
    for kind in KINDS:
        found = api.pages(kind.path, tag, None, MAX_PAGE)
        live.items[kind.name] = found
        if kind.collection is not None:
            for resource in found:
                live.children[resource["id"]] = children_of(kind.name, resource, api)
    if needs_externals:
        for net in api.pages("/v1/external-networks", {}, None, MAX_PAGE):
            if net.get("name"):
                live.externals.setdefault(net["name"], net["id"])
    return live
