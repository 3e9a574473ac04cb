"""The carriers table: per resource kind, which hosts carry it and through which section.

One query per kind answers `{resource id: {host: section}}`. Dirty-marking (which hosts
a change touches), status refresh (a resource is active when every carrier realised its
revision) and report handling all read this table, so a new kind is one row here.

Where ports are realised is decided once, in `workload_select`, `leg_select` and
`service_select`: a workload port (it has a netns) through the ports section, a router
leg through the routers section of its router's host, a subnet's DHCP/DNS service port
through the dhcp_dns section of its host. A leg or service port makes its host carry the
subnet only when that host supports the section; otherwise the router (or service port)
is `error` and the subnet does not wait for that host.

Which hosts carry a subnet or a security group through workload ports is read from
`carrier_hosts` (per host, a count kept by triggers with `workload_select`'s condition:
migration 0021), so the lookup every port create makes costs O(hosts), not O(ports).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol, cast

import sqlalchemy as sa
from sqlalchemy.orm import InstrumentedAttribute, Session

from models.base import Base
from models.host import Host
from models.hoststate import Realisation
from models.loadbalancer import HealthMonitor, Listener, LoadBalancer, Member, Pool
from models.nacl import NetworkAcl
from models.network import DHCP, CarrierHost, Port, Subnet
from models.routing import FloatingIp, Router, RouterInterface
from models.security import SecurityGroup, SecurityGroupRule

NO_NETWORK_HOST = "no network host is up"
Needs = dict[str, str]  # host -> the section the resource needs on that host
CarrierQuery = Callable[[Session, set[str]], dict[str, Needs]]


class Support(NamedTuple):
    """What a host's agent advertised: its protocol version and sections."""

    version: int
    sections: tuple[str, ...]

    def describe(self, host: str, section: str) -> str:
        return (
            f"host {host} does not support section {section!r} "
            f"(protocol {self.version}: {', '.join(self.sections)})"
        )


_MEMO = "carriers.support"  # session.info key: hosts' support read once per refresh_all


def host_support(session: Session, hosts: Iterable[str] | None = None) -> dict[str, Support]:
    """Registered hosts (all, or these) with what they support. Inside `refresh_all`
    each host is read at most once (a report's refresh asks for the same hosts from
    several kinds; what a host advertised cannot change meanwhile in a way this
    transaction must see)."""
    memo: dict[str, Support | None] | None = session.info.get(_MEMO)
    if hosts is None or memo is None:
        return _read_support(session, hosts)
    names = set(hosts)
    missing = names - memo.keys()
    if missing:
        read = _read_support(session, missing)
        memo.update({n: read.get(n) for n in missing})
    return {n: s for n in names if (s := memo[n]) is not None}


def _read_support(session: Session, hosts: Iterable[str] | None) -> dict[str, Support]:
    stmt = sa.select(Host.name, Host.protocol_version, Host.sections)
    if hosts is not None:
        names = set(hosts)
        if not names:
            return {}
        stmt = stmt.where(Host.name.in_(sorted(names)))
    return {name: Support(v, tuple(s)) for name, v, s in session.execute(stmt)}


# -- where ports are realised -----------------------------------------------------------------


def workload_select(*columns: Any) -> sa.Select[Any]:
    """Workload ports (they have a netns): realised by their host's ports section."""
    return sa.select(*columns).where(Port.host.is_not(None), Port.netns.is_not(None))


def leg_select(*columns: Any) -> sa.Select[Any]:
    """Router legs: realised by the routers section of their router's host."""
    return (
        sa.select(*columns)
        .select_from(Port)
        .join(RouterInterface, RouterInterface.port_id == Port.id)
        .join(Router, Router.id == RouterInterface.router_id)
        .where(Router.host.is_not(None))
    )


def service_select(*columns: Any) -> sa.Select[Any]:
    """DHCP/DNS service ports: realised by the dhcp_dns section of their host."""
    return sa.select(*columns).where(Port.device_owner == DHCP, Port.host.is_not(None))


def vip_select(*columns: Any) -> sa.Select[Any]:
    """Load-balancer VIPs: realised by the load_balancers section of their LB's host."""
    return (
        sa.select(*columns)
        .select_from(Port)
        .join(LoadBalancer, LoadBalancer.vip_port_id == Port.id)
        .where(LoadBalancer.host.is_not(None))
    )


class Placement(NamedTuple):
    key: str  # what was asked by: a port id or a subnet id
    host: str
    section: Literal["ports", "routers", "dhcp_dns", "typed_networks", "load_balancers"]


TYPED = "typed_networks"  # the section realising flat and routed subnets and their ports
_WORKLOAD_SECTION = sa.case((Subnet.network_type == "vxlan", "ports"), else_=TYPED)


def placements(
    session: Session, key: InstrumentedAttribute[str], *where: sa.ColumnElement[bool]
) -> list[Placement]:
    """Where the ports matching `where` are realised, by `key`, without repeats: one
    query (the API asks it on every port change)."""
    rows = session.execute(
        sa.union(
            workload_select(key, Port.host, _WORKLOAD_SECTION)
            .join(Subnet, Subnet.id == Port.subnet_id)
            .where(*where),
            leg_select(key, Router.host, sa.literal("routers")).where(*where),
            service_select(key, Port.host, sa.literal("dhcp_dns")).where(*where),
            vip_select(key, LoadBalancer.host, sa.literal("load_balancers")).where(*where),
        )
    )
    return [Placement(*row) for row in rows]


# -- one carrier query per kind ---------------------------------------------------------------


IDS: sa.BindParameter[list[str]] = sa.bindparam(
    "ids", expanding=True
)  # the statements below are built once, for any ids


def _counted(kind: str) -> sa.Select[str, str]:
    """(resource id, host) of the hosts with workload ports of resources `IDS`: the
    trigger-kept counts (migration 0021), one row per host, never one per port."""
    return sa.select(CarrierHost.resource_id, CarrierHost.host).where(
        CarrierHost.kind == kind, CarrierHost.resource_id.in_(IDS)
    )


@functools.cache
def _subnet_placements() -> sa.CompoundSelect[Any]:
    """Built once (building it cost more CPU than running it)."""
    return sa.union(
        _counted("subnet")
        .add_columns(_WORKLOAD_SECTION)
        .join(Subnet, Subnet.id == CarrierHost.resource_id),
        leg_select(Port.subnet_id, Router.host, sa.literal("routers")).where(
            RouterInterface.subnet_id.in_(IDS), Port.subnet_id.in_(IDS)
        ),
        service_select(Port.subnet_id, Port.host, sa.literal("dhcp_dns")).where(
            Port.device_id.in_(IDS),
            Port.subnet_id.in_(IDS),  # a service's device: its subnet
        ),
        vip_select(Port.subnet_id, LoadBalancer.host, sa.literal("load_balancers")).where(
            LoadBalancer.vip_subnet_id.in_(IDS), Port.subnet_id.in_(IDS)
        ),
    )


def subnet_placements(session: Session, ids: set[str]) -> list[Placement]:
    """`placements` by subnet, read in O(hosts + legs + services + VIPs): workload ports
    from their counts, the others from the small tables that name the subnet (the port's
    own subnet condition stays, so the answer is the same)."""
    rows = session.execute(_subnet_placements(), {"ids": sorted(ids)})
    return [Placement(*row) for row in rows]


def _subnets(session: Session, ids: set[str]) -> dict[str, Needs]:
    """Hosts of a subnet's workload ports, and of its router legs, DHCP/DNS service and
    load-balancer VIPs where that host supports the section realising them."""
    placed = subnet_placements(session, ids)
    support = host_support(session, {p.host for p in placed if p.section != "ports"})
    out: dict[str, Needs] = {}
    for p in placed:
        if p.section == TYPED:  # its ports' section carries it too
            out.setdefault(p.key, {})[p.host] = TYPED
        elif p.section == "ports" or (p.host in support and p.section in support[p.host].sections):
            out.setdefault(p.key, {})[p.host] = "subnets"
    return out


def _ports(session: Session, ids: set[str]) -> dict[str, Needs]:
    return {p.key: {p.host: p.section} for p in placements(session, Port.id, Port.id.in_(ids))}


def _routers(session: Session, ids: set[str]) -> dict[str, Needs]:
    rows = session.execute(
        sa.select(Router.id, Router.host).where(Router.id.in_(ids), Router.host.is_not(None))
    )
    return {rid: {host: "routers"} for rid, host in rows if host}


def _floating_ips(session: Session, ids: set[str]) -> dict[str, Needs]:
    """An associated floating IP is NAT on its router's host."""
    rows = session.execute(
        sa.select(FloatingIp.id, Router.host)
        .join(Router, Router.id == FloatingIp.router_id)
        .where(FloatingIp.id.in_(ids), FloatingIp.port_id.is_not(None), Router.host.is_not(None))
    )
    return {fid: {host: "routers"} for fid, host in rows if host}


def _security_groups(session: Session, ids: set[str]) -> dict[str, Needs]:
    """A group is enforced by every host of a workload port in it (its security_groups
    section). Hosts that only hold its members for a remote-group rule of theirs do not
    decide its status; `membership_hosts` finds them for dirty-marking."""
    out: dict[str, Needs] = {}
    for gid, host in session.execute(_group_hosts(), {"ids": sorted(ids)}):
        out.setdefault(gid, {})[host] = "security_groups"
    return out


def _network_acls(session: Session, ids: set[str]) -> dict[str, Needs]:
    """An ACL is enforced on every host carrying one of its subnets."""
    rows = session.execute(
        sa.select(Subnet.network_acl_id, Subnet.id).where(Subnet.network_acl_id.in_(ids))
    ).all()
    hosts = _subnets(session, {sid for _, sid in rows})
    out: dict[str, Needs] = {}
    for aid, sid in rows:
        for host in hosts.get(sid, {}):
            out.setdefault(str(aid), {})[host] = "network_acls"
    return out


@functools.cache
def _group_hosts() -> sa.Select[str, str]:
    return _counted("security_group")


@functools.cache
def _membership_hosts() -> sa.Select[str]:
    naming = sa.select(SecurityGroupRule.security_group_id).where(
        SecurityGroupRule.remote_group_id.in_(IDS)
    )
    return (
        sa.select(CarrierHost.host)
        .where(
            CarrierHost.kind == "security_group",
            sa.or_(CarrierHost.resource_id.in_(IDS), CarrierHost.resource_id.in_(naming)),
        )
        .distinct()
    )


def membership_hosts(session: Session, group_ids: set[str]) -> set[str]:
    """Hosts a change of these groups' membership touches, in one query: those enforcing
    them, and those holding their members for a rule naming one as its remote group
    (the hosts of every group with such a rule)."""
    if not group_ids:
        return set()
    return set(session.scalars(_membership_hosts(), {"ids": sorted(group_ids)}))


def _load_balancers(session: Session, ids: set[str]) -> dict[str, Needs]:
    rows = session.execute(
        sa.select(LoadBalancer.id, LoadBalancer.host).where(
            LoadBalancer.id.in_(ids), LoadBalancer.host.is_not(None)
        )
    )
    return {i: {host: "load_balancers"} for i, host in rows if host}


def _lb_children(model: Any, *via: Any) -> CarrierQuery:
    """A child of a load balancer (a listener, pool, member or monitor) goes where its
    load balancer goes; `via` joins it there."""

    def query(session: Session, ids: set[str]) -> dict[str, Needs]:
        stmt = sa.select(model.id, LoadBalancer.host).select_from(model)
        for target, on in via:
            stmt = stmt.join(target, on)
        stmt = stmt.where(model.id.in_(ids), LoadBalancer.host.is_not(None))
        return {i: {host: "load_balancers"} for i, host in session.execute(stmt) if host}

    return query


_ON_LB = (LoadBalancer, LoadBalancer.id == Pool.load_balancer_id)
_ON_POOL = (Pool, Pool.id == Member.pool_id)


def _subnets_of_ports(session: Session, ids: set[str]) -> set[str]:
    return set(session.scalars(sa.select(Port.subnet_id).where(Port.id.in_(ids))))


@dataclass(frozen=True)
class Kind:
    """One row of the table. `unplaced` is the status of a resource no registered host
    carries; `parent` names resources whose status follows this one's reports."""

    name: str
    model: type[Base]  # a Realised one: id, revision, status, status_detail
    carriers: CarrierQuery
    unplaced: Literal["active", "pending", "error"] = "pending"
    unplaced_detail: str | None = None
    parent: tuple[str, Callable[[Session, set[str]], set[str]]] | None = None

    @property
    def table(self) -> sa.Table:
        return cast(sa.Table, self.model.__table__)


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("subnet", Subnet, _subnets, unplaced="active"),
        Kind("port", Port, _ports, parent=("subnet", _subnets_of_ports)),
        Kind("router", Router, _routers, unplaced="error", unplaced_detail=NO_NETWORK_HOST),
        Kind("floating_ip", FloatingIp, _floating_ips),
        Kind("security_group", SecurityGroup, _security_groups, unplaced="active"),
        Kind("network_acl", NetworkAcl, _network_acls, unplaced="active"),
        Kind(
            "load_balancer",
            LoadBalancer,
            _load_balancers,
            unplaced="error",
            unplaced_detail=NO_NETWORK_HOST,
        ),
        Kind(
            "listener",
            Listener,
            _lb_children(Listener, (LoadBalancer, LoadBalancer.id == Listener.load_balancer_id)),
        ),
        Kind("pool", Pool, _lb_children(Pool, _ON_LB)),
        Kind("member", Member, _lb_children(Member, _ON_POOL, _ON_LB)),
        Kind(
            "health_monitor",
            HealthMonitor,
            _lb_children(HealthMonitor, (Pool, Pool.id == HealthMonitor.pool_id), _ON_LB),
        ),
    )
}


def carriers(session: Session, kind: str, ids: set[str]) -> dict[str, Needs]:
    return KINDS[kind].carriers(session, ids) if ids else {}


def carrying_hosts(session: Session, kind: str, ids: set[str]) -> set[str]:
    """Every host a change of these resources touches (for dirty-marking)."""
    return {h for needs in carriers(session, kind, ids).values() for h in needs}


# -- statuses ---------------------------------------------------------------------------------


class Reported(Protocol):
    """What `verdict` reads of a host's result: a `Realisation` row or a `Result`."""

    @property
    def revision(self) -> int: ...
    @property
    def ok(self) -> bool: ...
    @property
    def detail(self) -> str | None: ...


def verdict(
    revision: int,
    needs: Mapping[str, str],
    support: Mapping[str, Support],
    reports: Mapping[str, Reported],
    unplaced: str,
    unplaced_detail: str | None = None,
) -> tuple[str, str | None]:
    """Status and detail of one resource from its carriers and their last reports."""
    needs = {h: s for h, s in needs.items() if h in support}  # unregistered hosts wait
    if not needs:
        return unplaced, unplaced_detail
    problems = []
    for host, section in sorted(needs.items()):
        report = reports.get(host)
        if section not in support[host].sections:
            problems.append(support[host].describe(host, section))
        elif report is not None and report.revision == revision and not report.ok:
            problems.append(f"host {host}: {report.detail or 'failed'}")
    if problems:
        return "error", "; ".join(problems)[:2000]
    done = all((r := reports.get(h)) is not None and r.revision >= revision and r.ok for h in needs)
    return ("active", None) if done else ("pending", None)


def refresh(session: Session, kind: str, ids: set[str]) -> None:
    """Recompute these resources' statuses (and their parents'), writing only changes."""
    refresh_all(session, {kind: ids})


def refresh_all(session: Session, ids_by_kind: Mapping[str, set[str]]) -> None:
    """Recompute these resources' statuses (and their parents'), writing only changes.

    Each kind once (a port's subnet joins the subnets asked for), the hosts' support and
    the reports of every resource read once for all kinds: what recording a report costs
    follows the resources it changed. Guarded Core UPDATEs: bookkeeping never bumps a
    revision, and a row whose revision moved on meanwhile is left as it is (pending)."""
    wanted = {k: set(v) for k, v in ids_by_kind.items() if k in KINDS and v}
    for kind in list(wanted):
        spec = KINDS[kind]
        if spec.parent is not None:
            parent, of = spec.parent
            if ids := of(session, wanted[kind]):
                wanted.setdefault(parent, set()).update(ids)
    if not wanted:
        return
    outer = _MEMO in session.info
    session.info.setdefault(_MEMO, {})
    try:
        _refresh(session, {k: wanted[k] for k in KINDS if k in wanted})
    finally:
        if not outer:
            session.info.pop(_MEMO, None)


def _refresh(session: Session, wanted: dict[str, set[str]]) -> None:
    rows, needs = {}, {}
    for kind, ids in wanted.items():
        table = KINDS[kind].table
        rows[kind] = session.execute(
            sa.select(table.c.id, table.c.revision, table.c.status, table.c.status_detail).where(
                table.c.id.in_(sorted(ids))
            )
        ).all()
        needs[kind] = KINDS[kind].carriers(session, ids)
    support = host_support(session, {h for n in needs.values() for x in n.values() for h in x})
    reports = _reports(session, set().union(*wanted.values()))
    for kind in wanted:
        spec = KINDS[kind]
        writes = []
        for rid, rev, status, detail in rows[kind]:
            new = verdict(
                rev,
                needs[kind].get(rid, {}),
                support,
                reports.get(rid, {}),
                spec.unplaced,
                spec.unplaced_detail,
            )
            if new != (status, detail):
                writes.append({"rid": rid, "rev": rev, "new_status": new[0], "new_detail": new[1]})
        if writes:  # in id order, like every writer: concurrent refreshes never deadlock
            writes.sort(key=lambda w: w["rid"])
            table = spec.table
            stmt = (
                sa.update(table)
                .where(table.c.id == sa.bindparam("rid"), table.c.revision == sa.bindparam("rev"))
                .values(status=sa.bindparam("new_status"), status_detail=sa.bindparam("new_detail"))
            )
            session.connection().execute(stmt, writes)


def unsettled(session: Session) -> dict[str, set[str]]:
    """Every resource not active yet, per kind (what the sweep re-derives)."""
    out: dict[str, set[str]] = {}
    for kind, spec in KINDS.items():
        table = spec.table
        out[kind] = set(session.scalars(sa.select(table.c.id).where(table.c.status != "active")))
    return out


class Result(NamedTuple):
    """A host's last result for one resource (a `Realisation` row, read as a tuple)."""

    revision: int
    ok: bool
    detail: str | None


def _reports(session: Session, ids: set[str]) -> dict[str, dict[str, Result]]:
    out: dict[str, dict[str, Result]] = {}
    r = Realisation
    stmt = sa.select(r.resource_id, r.host, r.revision, r.ok, r.detail)
    for rid, host, rev, ok, detail in session.execute(stmt.where(r.resource_id.in_(sorted(ids)))):
        out.setdefault(rid, {})[host] = Result(rev, ok, detail)
    return out
