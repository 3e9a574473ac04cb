"""Tell the controller which hosts a change touches, after the commit and coalesced.

The host's dirty flag is set inside the request's transaction, so the need for a sync is
as durable as the change itself; the poke goes out only after the commit (dropped on
rollback) and only for hosts that were clean, so a burst costs each host one sync.
"""

from __future__ import annotations

from functools import partial

from celery import Celery
from sqlalchemy.orm import Session

from api.settings import Settings
from models.carriers import carrying_hosts, membership_hosts
from models.hoststate import mark_dirty
from models.network import dhcp_hosts_of_vpc
from models.security import groups_unsettled
from workers.bus import make_app, poke_controller


class Notifier:
    def __init__(self, settings: Settings) -> None:
        self.enabled = bool(settings.redis_url or settings.vpcd_bus_dir)
        self._settings = settings
        self._app: Celery | None = None

    def app(self) -> Celery:
        if self._app is None:
            self._app = make_app(self._settings.redis_url, self._settings.vpcd_bus_dir)
        return self._app

    def hosts_changed(self, session: Session, hosts: set[str | None]) -> None:
        names = {h for h in hosts if h}
        if not names:
            return
        newly = mark_dirty(session, names)
        if newly and self.enabled:
            session.info.setdefault("after_commit", []).append(
                partial(poke_controller, self.app(), newly)
            )

    def resources_changed(
        self, session: Session, kind: str, ids: set[str], *extra: str | None
    ) -> None:
        """Every host carrying these resources (models.carriers), plus `extra`."""
        hosts: set[str | None] = set(carrying_hosts(session, kind, ids))
        self.hosts_changed(session, hosts | set(extra))

    def subnets_changed(self, session: Session, subnet_ids: set[str], *extra: str | None) -> None:
        """Every host carrying these subnets (their FDB or routes change), plus `extra`."""
        self.resources_changed(session, "subnet", subnet_ids, *extra)

    def names_changed(self, session: Session, vpc_id: str | None) -> None:
        """The VPC's names or domain changed: every host serving its DHCP/DNS answers
        for all of them."""
        if vpc_id is not None:
            self.hosts_changed(session, set(dhcp_hosts_of_vpc(session, vpc_id)))

    def groups_changed(self, session: Session, group_ids: set[str]) -> None:
        """A group's rules changed: the hosts of its ports re-render their chains."""
        self.resources_changed(session, "security_group", group_ids)

    def members_changed(self, session: Session, group_ids: set[str]) -> None:
        """A port joined or left these groups (or moved): hosts enforcing them, and hosts
        holding them as a remote group's set, must sync."""
        self.hosts_changed(session, set(membership_hosts(session, group_ids)))
        groups_unsettled(session, group_ids)
