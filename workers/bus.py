"""The message bus: one Celery app, a control queue and one direct queue per host.

Production runs on Redis (REDIS_URL). Without it (the embedded sandbox) kombu's
filesystem transport carries the same messages through a folder: it has no fanout, so
every queue is a direct one. Only pokes and documents travel here; Postgres stays the
truth, so a lost message costs a delay (the periodic sweep), never state.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from celery import Celery
from kombu import Queue

import workers.fsbus  # noqa: F401 - registers the "vpcdfs" transport

# Queue names carry a namespace (VPCD_BUS_NAMESPACE) so that several deployments or
# sandboxes can share one Redis without hearing each other.
NAMESPACE = os.environ.get("VPCD_BUS_NAMESPACE", "vpcd")
CONTROL_QUEUE = f"{NAMESPACE}.control"

# Task names: the API and the agent send by name, so neither imports the other's code.
SYNC_HOST = "vpcd.controller.sync_host"
REPORT = "vpcd.controller.report"
HEARTBEAT = "vpcd.controller.heartbeat"
APPLY = "vpcd.agent.apply"


def host_queue(host: str) -> str:
    return f"{NAMESPACE}.host.{host}"


def broker_settings(redis_url: str | None, bus_dir: str | None) -> dict[str, object]:
    if redis_url:
        return {"broker_url": redis_url}
    folder = Path(bus_dir or "./vpcd-bus").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "broker_url": "vpcdfs://",  # kombu's filesystem transport, atomic writes
        "broker_transport_options": {
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            "polling_interval": 0.02,
        },
    }


@lru_cache(maxsize=1)
def celery_app() -> Celery:
    """The process's app, configured from REDIS_URL or VPCD_BUS_DIR."""
    return make_app(os.environ.get("REDIS_URL"), os.environ.get("VPCD_BUS_DIR"))


def make_app(redis_url: str | None, bus_dir: str | None) -> Celery:
    app = Celery("vpcd")
    app.conf.update(
        broker_settings(redis_url, bus_dir),
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,  # every task is idempotent: redelivery is safe
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        task_default_queue=CONTROL_QUEUE,
        task_queues=[Queue(CONTROL_QUEUE)],
        worker_hijack_root_logger=False,
    )
    return app


def poke_controller(app: Celery, hosts: set[str] | list[str], *, full: bool = False) -> None:
    """Ask the controller to compile and push these hosts' documents (by name only)."""
    for host in sorted(hosts):
        app.send_task(SYNC_HOST, args=[host], kwargs={"full": full}, queue=CONTROL_QUEUE)
