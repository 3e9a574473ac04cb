"""The message bus: one Celery app, a control queue and one direct queue per host.

Production runs on Redis (REDIS_URL). Without it (the embedded sandbox) kombu's
filesystem transport carries the same messages through one folder (VPCD_BUS_DIR, the
sandbox's run dir; else a data dir, never the working directory): it has no fanout, so
every queue is a direct one. Only pokes and documents travel here; Postgres stays the
truth, so a lost message costs a delay (the periodic sweep), never state.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from celery import Celery
from kombu import Queue

from workers import (
    fsbus,  # also registers the "vpcdfs" transport
    timeline,
)

# Queue names carry a namespace (VPCD_BUS_NAMESPACE) so that several deployments or
# sandboxes can share one Redis without hearing each other.
NAMESPACE = os.environ.get("VPCD_BUS_NAMESPACE", "vpcd")
CONTROL_QUEUE = f"{NAMESPACE}.control"

# Task names: the API and the agent send by name, so neither imports the other's code.
SYNC_HOST = "vpcd.controller.sync_host"
# Many hosts in one poke (the API's, for a change touching them): one message, not 500.
SYNC_HOSTS = "vpcd.controller.sync_hosts"
POKE_CHUNK = 1000  # hosts per SYNC_HOSTS message
REPORT = "vpcd.controller.report"
HEARTBEAT = "vpcd.controller.heartbeat"
APPLY = "vpcd.agent.apply"


def host_queue(host: str) -> str:
    return f"{NAMESPACE}.host.{host}"


def default_bus_dir() -> Path:
    """Where the embedded bus lives when VPCD_BUS_DIR is unset: a data dir, never the cwd.

    `$VPCD_DATA_DIR/bus` when that is set, else `/var/lib/vpcd/bus` for root (next to the
    agent's state dir) and `$XDG_STATE_HOME/vpcd/bus` (`~/.local/state/vpcd/bus`) for others.
    """
    data = os.environ.get("VPCD_DATA_DIR")
    if data:
        return Path(data) / "bus"
    if os.geteuid() == 0:
        return Path("/var/lib/vpcd/bus")
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "vpcd" / "bus"


def broker_settings(redis_url: str | None, bus_dir: str | None) -> dict[str, object]:
    if redis_url:
        return {"broker_url": redis_url}
    folder = Path(bus_dir).resolve() if bus_dir else default_bus_dir()
    return {
        "broker_url": "vpcdfs://",  # kombu's filesystem transport, atomic writes and claims
        "broker_transport_options": {**fsbus.folders(folder), "polling_interval": 0.02},
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
    """Ask the controller to compile and push these hosts' documents (by name only).

    One host (what an agent asks for itself) is a SYNC_HOST poke, as every controller
    takes; more go as SYNC_HOSTS messages of up to POKE_CHUNK hosts: a change touching
    500 hosts cost the controller 500 task deliveries before its batch could start (an
    older controller, which has no such task, leaves them to its sweeper: the hosts'
    dirty flags stay set)."""
    names = sorted(hosts)
    for host in names:
        timeline.mark("poked", host)  # before: the controller may take it before we return
    if len(names) == 1:
        app.send_task(SYNC_HOST, args=names, kwargs={"full": full}, queue=CONTROL_QUEUE)
        return
    for i in range(0, len(names), POKE_CHUNK):
        chunk = names[i : i + POKE_CHUNK]
        app.send_task(SYNC_HOSTS, args=[chunk], kwargs={"full": full}, queue=CONTROL_QUEUE)


def queue_length(app: Celery, queue: str) -> int:
    """Messages waiting on `queue` (0 when the bus cannot say)."""
    try:
        with app.connection_for_read() as conn:
            return int(conn.default_channel.queue_declare(queue=queue, passive=True).message_count)
    except Exception:  # no such queue yet, or the bus is away: nothing known to wait
        return 0
