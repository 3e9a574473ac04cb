"""Prometheus metrics: request count, latency by route template and status, in-flight.

Several uvicorn workers write their samples under PROMETHEUS_MULTIPROC_DIR; /metrics sums
them (the in-flight gauge as the live processes' sum).
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter("vpcd_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "vpcd_http_request_seconds",
    "HTTP request latency",
    ["method", "route", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

IN_FLIGHT = Gauge(
    "vpcd_http_requests_in_flight", "HTTP requests being served", multiprocess_mode="livesum"
)


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # prometheus_client's labels() checks and locks on every call: a few percent of a
        # GET (issue 14). The children of each (method, route, status) are kept here.
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        code = 500
        IN_FLIGHT.inc()

        async def wrapped(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, wrapped)
        finally:
            IN_FLIGHT.dec()
            route = scope.get("route")
            key = (scope["method"], getattr(route, "path", "unmatched"), str(code))
            children = self._children.get(key)
            if children is None:
                children = self._children[key] = (REQUESTS.labels(*key), LATENCY.labels(*key))
            children[0].inc()
            children[1].observe(time.perf_counter() - start)
