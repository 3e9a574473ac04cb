"""schemathesis against a live server on Postgres, as a tenant and as the admin (issue 14).

Every check (`--checks all`, less the exclusions named with their reasons in
bench/fuzz.py) and every phase (examples, coverage, fuzzing, stateful), a fixed seed and a
budget that fits CI. Any failure fails this test with schemathesis's report (a curl line
per finding to reproduce it) and the server's log. `python bench/fuzz.py` is the long run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.fuzz import PHASES, Live, fuzz_both, live_server
from tests.conftest import ADMIN_TOKEN, wipe

if os.environ.get("VPCD_TEST_DATABASE_URL", "sqlite://").startswith("sqlite"):
    pytest.skip("fuzzes the production configuration: Postgres", allow_module_level=True)

SEED = 14
MAX_EXAMPLES = 3  # per operation and phase: ~2000 test cases per token, well under a minute
TIMEOUT = 600.0


@pytest.fixture
def live(db_url: str, tmp_path: Path) -> Iterator[Live]:
    wipe(db_url)
    try:
        with live_server(db_url, tmp_path / "uvicorn.log", admin_token=ADMIN_TOKEN) as server:
            yield server
    finally:
        wipe(db_url)


def test_schemathesis_finds_nothing(live: Live) -> None:
    runs = fuzz_both(
        live.base, seed=SEED, max_examples=MAX_EXAMPLES, timeout=TIMEOUT, admin_token=ADMIN_TOKEN
    )
    dirty = [r for r in runs if not r.clean]
    assert not dirty, "\n\n".join(
        [r.summary() + "\n" + r.output_tail for r in dirty] + ["server log:\n" + live.log_tail()]
    )
    for run in runs:
        assert run.test_cases >= 500, run.summary()  # it really ran
        assert run.phases.get("stateful") == "success", run.summary()
        assert set(run.phases) == set(PHASES), run.summary()
