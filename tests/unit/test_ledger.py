"""The netns ledger is rewritten whole by rename, and never fsynced: the namespaces it
names live in /run/netns, a tmpfs, so a power loss takes them with it and durability
would buy nothing but a journal commit on every port change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workers.agent.ownership import NetnsLedger


def test_the_ledger_survives_a_new_process_and_is_never_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    ledger = NetnsLedger(tmp_path)
    ledger.add(["a", "b"])
    ledger.discard(["a"])
    assert synced == []
    assert NetnsLedger(tmp_path).names == {"b"}  # what a restarted agent reads
    assert [p.name for p in tmp_path.iterdir()] == ["owned-netns.json"]  # no temp left
