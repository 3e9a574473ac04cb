"""Incremental documents: a delta patched onto its base is the new document."""

from __future__ import annotations

from typing import Any

from workers import docdelta
from workers.agent.documents import Documents
from workers.protocol import HostState, PortState, Report, ResourceResult, SubnetState


def _doc(revision: int, ports: list[int], subnet_mtu: int = 1450) -> dict[str, Any]:
    sub = SubnetState(id="s", revision=1, vni=7, cidr="10.0.0.0/24", gateway_ip="10.0.0.1")
    return HostState(
        host="h",
        revision=revision,
        vtep_ip="192.0.2.1",
        subnets=[sub.model_copy(update={"mtu": subnet_mtu})],
        ports=[
            PortState(
                id=f"p{i}",
                revision=i,
                subnet_id="s",
                netns=f"n{i}",
                mac=f"02:00:00:00:00:{i:02x}",
                ip=f"10.0.0.{i + 10}",
                prefixlen=24,
            )
            for i in ports
        ],
    ).wire(["subnets", "ports"])


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def norm(doc: dict[str, Any]) -> dict[str, Any]:
        key = docdelta.item_key
        return {k: sorted(v, key=key) if isinstance(v, list) else v for k, v in doc.items()}

    return norm(a) == norm(b)


def test_patch_of_diff_is_the_new_document() -> None:
    cases = [
        (_doc(1, [1, 2, 3]), _doc(2, [1, 2, 3, 4])),  # added
        (_doc(1, [1, 2, 3]), _doc(2, [1, 3])),  # removed
        (_doc(1, [1, 2]), _doc(2, [1, 2], subnet_mtu=1400)),  # changed
        (_doc(1, []), _doc(2, [5, 6])),
        (_doc(1, [1]), _doc(2, [1])),  # nothing but the revision
    ]
    for base, new in cases:
        delta = docdelta.diff(base, new, base["revision"])
        assert docdelta.is_delta(delta) and delta[docdelta.BASE] == base["revision"]
        patched = docdelta.patch(base, delta)
        assert _same(patched, new)
        assert HostState.model_validate(patched).revision == new["revision"]


def test_a_delta_carries_only_what_changed() -> None:
    base, new = _doc(1, list(range(100))), _doc(2, [*range(100), 100])
    delta = docdelta.diff(base, new, 1)
    assert list(delta["changes"]) == ["ports"]
    assert [p["id"] for p in delta["changes"]["ports"]["set"]] == ["p100"]
    assert delta["changes"]["ports"]["remove"] == []


def _report(revision: int, results: list[tuple[str, int, bool]]) -> Report:
    return Report(
        host="h",
        revision=revision,
        ok=True,
        results=[ResourceResult(kind="port", id=i, revision=r, ok=ok) for i, r, ok in results],
    )


def test_partial_reports_name_changes_and_removals_only() -> None:
    docs = Documents()
    full = docs.changed_only(_report(1, [("a", 1, True), ("b", 1, True)]), partial=False)
    assert not full.partial and len(full.results) == 2  # whole document: full report
    part = docs.changed_only(_report(2, [("a", 1, True), ("b", 2, False)]), partial=True)
    assert part.partial and [r.id for r in part.results] == ["b"] and part.removed == []
    part = docs.changed_only(_report(3, [("b", 2, False), ("c", 1, True)]), partial=True)
    assert [r.id for r in part.results] == ["c"] and part.removed == ["a"]
