"""An incremental document is validated item by item: only what the delta sets is
validated again; every other item is the last state's own object (so the agent's delta
finds it unchanged by identity), and the result equals validating the whole document."""

from __future__ import annotations

from tests.unit.test_firewall_incremental import _desired, _port
from workers import docdelta
from workers.agent.documents import Documents
from workers.protocol import HostState, ResolverState


def test_a_delta_validates_what_it_sets_and_keeps_the_rest() -> None:
    ports = [_port(n) for n in range(20)]
    before = _desired(ports, 1).state.model_copy(
        update={"resolvers": [ResolverState(subnet_id="s1", domain="a.internal")]}
    )
    new = _port(20)
    after = before.model_copy(
        update={
            "revision": 2,
            "ports": [*ports[:5], *ports[6:], new],
            "resolvers": [ResolverState(subnet_id="s1", domain="b.internal")],
        }
    )
    base_doc, new_doc = before.model_dump(mode="json"), after.model_dump(mode="json")
    delta = docdelta.diff(base_doc, new_doc, 1)
    docs = Documents(last=base_doc, state=HostState.model_validate(base_doc))
    patched = docdelta.patch(base_doc, delta)
    state = docs.validated(patched, delta)
    assert state == HostState.model_validate(patched)
    assert state.revision == 2 and state.resolvers[0].domain == "b.internal"
    kept = {p.id: p for p in docs.state.ports if docs.state is not None}
    assert all(p is kept[p.id] for p in state.ports if p.id != new.id)  # not validated again
    assert ports[5].id not in {p.id for p in state.ports}
    assert docs.validated(patched, None) == state  # a whole document: validated whole


def test_a_delta_on_another_base_is_validated_whole() -> None:
    before = _desired([_port(1)], 1).state
    doc = before.model_dump(mode="json")
    docs = Documents(last=doc, state=before)
    delta = {**docdelta.diff(doc, doc, 7)}
    assert docs.validated(doc, delta) == before
    assert docs.validated(doc, delta).ports[0] is not before.ports[0]
