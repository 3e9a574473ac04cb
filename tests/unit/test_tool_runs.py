"""Independent tool runs overlap: every `conntrack -D` of a cut is started before the
first is waited for (conntrack takes one filter a run; a removed port's cut is two)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from workers.agent.drivers import conntrack


class _Recorded:
    events: list[tuple[str, str]] = []

    def __init__(self, argv: list[str], **_: Any) -> None:
        self.argv, self.returncode = argv, 1
        self.events.append(("start", " ".join(argv[2:])))

    def communicate(
        self, input: str | None = None, timeout: float | None = None
    ) -> tuple[str, str]:
        self.events.append(("wait", " ".join(self.argv[2:])))
        return "", "conntrack v1.4.7 (conntrack-tools): 2 flow entries have been deleted.\n"

    def poll(self) -> int:
        return self.returncode


def test_a_cut_starts_every_conntrack_before_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    _Recorded.events = []
    monkeypatch.setattr(subprocess, "Popen", _Recorded)
    filters = [{"orig_src": "10.0.0.5"}, {"orig_dst": "10.0.0.5"}, {"proto": "tcp", "dport": 22}]
    assert conntrack.delete_all(None, filters) == 6
    kinds = [kind for kind, _ in _Recorded.events]
    assert kinds == ["start"] * 3 + ["wait"] * 3
    assert [args for _, args in _Recorded.events[:3]] == [
        "--orig-src 10.0.0.5",
        "--orig-dst 10.0.0.5",
        "-p tcp --dport 22",
    ]
