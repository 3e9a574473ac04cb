"""`ipam.insert_unique` against a real database: collisions retry, the row comes back."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.errors import Exhausted
from api.services import ipam
from models import Host
from models.db import engine_for, session_factory


def test_insert_unique_retries_a_collision_and_returns_the_inserted_row(
    client: TestClient, db_url: str
) -> None:
    with session_factory(engine_for(db_url)).begin() as session:
        session.add(Host(name="taken", vtep_ip="192.0.2.1"))
        session.flush()
        row = ipam.insert_unique(
            session, iter(["taken", "free"]), lambda n: Host(name=n, vtep_ip="192.0.2.2")
        )
        assert isinstance(row, Host) and row.name == "free" and row.id
        assert session.get(Host, row.id) is row


def test_insert_unique_runs_out(client: TestClient, db_url: str) -> None:
    with session_factory(engine_for(db_url)).begin() as session:
        session.add(Host(name="taken", vtep_ip="192.0.2.1"))
        session.flush()
        with pytest.raises(StopIteration):
            ipam.insert_unique(session, iter(["taken"]), lambda n: Host(name=n, vtep_ip="x"))
        with pytest.raises(Exhausted):
            ipam.insert_unique(session, iter(["taken"] * 1000), lambda n: Host(name=n, vtep_ip="x"))
