"""Fixtures shared by the controller's DB-tier tests."""

from __future__ import annotations

from typing import Any

import pytest

from workers.controller import tasks


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch, db_url: str) -> list[tuple[str, list[Any]]]:
    """What the controller sends, (task name, args), instead of sending it."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    calls: list[tuple[str, list[Any]]] = []
    monkeypatch.setattr(
        tasks.app, "send_task", lambda name, args=None, **_: calls.append((name, args or []))
    )
    return calls
