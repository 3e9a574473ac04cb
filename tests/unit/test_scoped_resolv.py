"""A scoped observation reads resolv.conf only for its namespaces; merging keeps the rest.

At 1000 ports a host has 1000 of our resolv.conf files: reading them all on every
observation was an O(ports) cost in a one-port change.
"""

from __future__ import annotations

from workers.agent.observed import Observed, Scope


def test_merge_replaces_resolv_of_scoped_namespaces_only() -> None:
    cached = Observed(resolv={"ns-a": "a", "ns-b": "b", "ns-gone": "g"})
    part = Observed(resolv={"ns-a": "a2", "ns-new": "n"})
    scope = Scope(netns=frozenset({"ns-a", "ns-gone", "ns-new"}))
    merged = cached.merged(part, scope)
    assert merged.resolv == {"ns-a": "a2", "ns-b": "b", "ns-new": "n"}
