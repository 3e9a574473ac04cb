"""Where one change spends its time between processes: stage marks, off unless asked.

A change goes API commit -> poke -> controller batch -> compile -> document sent ->
agent received -> apply -> report sent -> report recorded (statuses active). Each
process knows only its own part; with `VPCD_TIMELINE=1` in its environment each marks
the stages it passes on stderr (the process log) as one line with the wall clock:

    vpcd-timeline stage=compiled host=h1 revision=42 at=1764459601.123456

`bench/converge.py` lines them up per change (by host, and by revision once there is
one: `parse` below). Wall clocks are comparable because the sandbox runs every process
on one machine. Off (the default), a mark costs one attribute test; on, one formatted
line, far below a millisecond, so an operator can turn it on in production to find
which hop a slow change waits in. Durations that matter in steady state are also
Prometheus histograms (controller metrics); this is the per-change view.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Iterable
from typing import NamedTuple

PREFIX = "vpcd-timeline"
LINE = re.compile(
    PREFIX + r" stage=(?P<stage>\S+) host=(?P<host>\S+) revision=(?P<revision>-|\d+)"
    r" at=(?P<at>[\d.]+)"
)

_log = logging.getLogger("vpcd.timeline")
_log.propagate = False  # its own handler: the API's uvicorn logs warnings only
_log.setLevel(logging.INFO)
_stderr = logging.StreamHandler(sys.stderr)
_stderr.setFormatter(logging.Formatter("%(message)s"))


def enabled_by(env: str | None) -> bool:
    return (env or "").strip().lower() in ("1", "true", "yes", "on")


ENABLED = enabled_by(os.environ.get("VPCD_TIMELINE"))


def enable(on: bool = True) -> None:
    """Turn marks on or off in this process (the environment decides at import)."""
    global ENABLED
    ENABLED = on
    if on and _stderr not in _log.handlers:
        _log.addHandler(_stderr)


if ENABLED:
    enable()


def mark(stage: str, hosts: str | Iterable[str], revision: int | None = None) -> None:
    """This process passes `stage` for these hosts (and the document revision, once
    there is one) now."""
    if not ENABLED:
        return
    at = time.time()
    for host in [hosts] if isinstance(hosts, str) else sorted(hosts):
        _log.info(
            "%s stage=%s host=%s revision=%s at=%.6f",
            PREFIX,
            stage,
            host,
            "-" if revision is None else revision,
            at,
        )


class Mark(NamedTuple):
    stage: str
    host: str
    revision: int | None
    at: float


def parse(text: str) -> list[Mark]:
    """Every mark in a log's text, in the order written."""
    return [
        Mark(
            m["stage"],
            m["host"],
            None if m["revision"] == "-" else int(m["revision"]),
            float(m["at"]),
        )
        for m in LINE.finditer(text)
    ]
