"""The status verdict of the carriers table: a pure function, checked as a matrix."""

from __future__ import annotations

from typing import get_args

import pytest

from models.carriers import KINDS, Support, verdict
from models.hoststate import Realisation
from workers.protocol import ResourceResult

L2 = Support(1, ("subnets", "ports"))
ALL = Support(1, ("subnets", "ports", "routers"))


def _seen(host: str, revision: int, ok: bool = True, detail: str | None = None) -> Realisation:
    return Realisation(
        host=host, resource_id="x", kind="router", revision=revision, ok=ok, detail=detail
    )


@pytest.mark.parametrize(
    ("needs", "support", "reports", "want"),
    [
        ({}, {}, {}, ("pending", None)),  # nobody carries it: the kind's unplaced status
        ({"h9": "routers"}, {}, {}, ("pending", None)),  # unregistered host: waits
        ({"h1": "routers"}, {"h1": ALL}, {}, ("pending", None)),
        ({"h1": "routers"}, {"h1": ALL}, {"h1": _seen("h1", 3)}, ("active", None)),
        ({"h1": "routers"}, {"h1": ALL}, {"h1": _seen("h1", 2)}, ("pending", None)),  # older
        (
            {"h1": "routers"},
            {"h1": ALL},
            {"h1": _seen("h1", 3, ok=False, detail="EPERM")},
            ("error", "host h1: EPERM"),
        ),
        (
            {"h1": "routers"},
            {"h1": L2},
            {},
            ("error", "host h1 does not support section 'routers' (protocol 1: subnets, ports)"),
        ),
        (  # both reasons, host by host
            {"h1": "routers", "h2": "routers"},
            {"h1": L2, "h2": ALL},
            {"h2": _seen("h2", 3, ok=False)},
            (
                "error",
                "host h1 does not support section 'routers' (protocol 1: subnets, ports); "
                "host h2: failed",
            ),
        ),
        (  # a failure of an older revision is no verdict on this one
            {"h1": "subnets", "h2": "subnets"},
            {"h1": L2, "h2": L2},
            {"h1": _seen("h1", 3), "h2": _seen("h2", 2, ok=False)},
            ("pending", None),
        ),
    ],
)
def test_verdict(
    needs: dict[str, str],
    support: dict[str, Support],
    reports: dict[str, Realisation],
    want: tuple[str, str | None],
) -> None:
    assert verdict(3, needs, support, reports, "pending") == want


def test_a_subnet_nobody_carries_is_active() -> None:
    assert verdict(1, {}, {}, {}, KINDS["subnet"].unplaced) == ("active", None)


def test_every_kind_is_a_report_kind_with_a_status() -> None:
    kinds = set(get_args(ResourceResult.model_fields["kind"].annotation))
    assert set(KINDS) <= kinds
    for kind in KINDS.values():
        assert {"id", "revision", "status", "status_detail"} <= set(kind.table.c.keys())
