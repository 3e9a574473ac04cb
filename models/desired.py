"""The rows a host's document is compiled from (read by workers.controller.compile).

Which ports a host realises comes from models.carriers (workload_select / leg_select),
so the compiler and the status refresh can never disagree about it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session, lazyload

from models.carriers import leg_select, service_select, vip_select, workload_select
from models.host import Host
from models.loadbalancer import HealthMonitor, Listener, LoadBalancer, Member, Pool
from models.nacl import NetworkAcl, NetworkAclEntry
from models.network import Port, PortSecurityGroup, Subnet, Vpc
from models.routing import ExternalNetwork, FloatingIp, Router, RouterInterface
from models.security import SecurityGroup, SecurityGroupRule

T = TypeVar("T")


def _by_host(rows: Iterable[tuple[str, T]], hosts: Iterable[str]) -> dict[str, list[T]]:
    out: dict[str, list[T]] = {h: [] for h in hosts}
    for host, row in rows:
        out[host].append(row)
    return out


class LocalPortRow(NamedTuple):
    """A workload port of a host being compiled, with the columns a document carries or
    is built from, and nothing else. Columns, not ORM objects: loading 1000 Port objects
    (identity map, attribute state) was the largest part of a 1000-port host's compile
    (issue 14), and a plain row is hashable, so the port's state can be built once per
    revision (workers.controller.typed.port_state)."""

    id: str
    revision: int
    subnet_id: str
    tenant_id: str
    host: str | None
    netns: str | None
    interface_name: str
    mac_address: str
    ip_address: str
    ip_config: str
    dns_name: str | None


# In LocalPortRow's order. Loading the whole row (tags as JSONB, names, descriptions,
# timestamps) was a third of the read of a 1000-port host's compile (issue 14).
LOCAL_PORT_COLUMNS = (
    Port.id, Port.revision, Port.subnet_id, Port.tenant_id, Port.host, Port.netns,
    Port.interface_name, Port.mac_address, Port.ip_address, Port.ip_config, Port.dns_name,
)  # fmt: skip


def local_ports_of(session: Session, hosts: Sequence[str]) -> dict[str, list[LocalPortRow]]:
    """Per host, its workload ports by id (one query for any number of hosts), with only
    the columns a document needs (`LocalPortRow`)."""
    if not hosts:
        return {}
    rows = session.execute(
        workload_select(*LOCAL_PORT_COLUMNS).where(Port.host.in_(sorted(hosts))).order_by(Port.id)
    )
    return _by_host(((r[4] or "", LocalPortRow(*r)) for r in rows), hosts)


def subnets_by_id(session: Session, ids: set[str]) -> list[Subnet]:
    if not ids:
        return []
    return list(session.scalars(sa.select(Subnet).where(Subnet.id.in_(ids)).order_by(Subnet.id)))


def routed_subnets(session: Session, ids: set[str]) -> set[str]:
    if not ids:
        return set()
    return set(
        session.scalars(
            sa.select(RouterInterface.subnet_id).where(RouterInterface.subnet_id.in_(ids))
        )
    )


class RemotePortRow(NamedTuple):
    """A port on another host, with only the columns a document needs of it: reading
    whole Port rows (tags and all) for every remote port was most of a compile's time."""

    id: str
    subnet_id: str
    mac_address: str
    ip_address: str


REMOTE_COLUMNS = (Port.id, Port.subnet_id, Port.mac_address, Port.ip_address)


def remote_ports_all(
    session: Session, subnet_ids: set[str], *, not_on: str | None = None
) -> list[tuple[RemotePortRow, str, str]]:
    """Every realised port of these subnets on a registered host, with that host's VTEP
    and name (its owner), by port id: workload ports, router legs and load-balancer VIPs
    on hosts supporting their section. One read serves every host carrying the subnets.
    `not_on` leaves out the workload ports of that host: compiling it alone, its own
    ports are not remote to anyone (issue 14: a 1000-port host read them all again)."""
    if not subnet_ids:
        return []
    ids = sorted(subnet_ids)
    mine = [Port.host != not_on] if not_on is not None else []
    workload = session.execute(
        workload_select(*REMOTE_COLUMNS, Host.vtep_ip, Host.name)
        .join(Host, Host.name == Port.host)
        .where(Port.subnet_id.in_(ids), *mine)
    )
    legs = session.execute(
        leg_select(*REMOTE_COLUMNS, Host.vtep_ip, Host.name, Host.sections)
        .join(Host, Host.name == Router.host)
        .where(Port.subnet_id.in_(ids))
    )
    services = session.execute(
        service_select(*REMOTE_COLUMNS, Host.vtep_ip, Host.name, Host.sections)
        .join(Host, Host.name == Port.host)
        .where(Port.subnet_id.in_(ids))
    )
    vips = session.execute(
        vip_select(*REMOTE_COLUMNS, Host.vtep_ip, Host.name, Host.sections)
        .join(Host, Host.name == LoadBalancer.host)
        .where(Port.subnet_id.in_(ids))
    )
    rows = [(RemotePortRow(*r[:4]), r[4], r[5]) for r in workload]
    for result, section in ((legs, "routers"), (services, "dhcp_dns"), (vips, "load_balancers")):
        rows += [(RemotePortRow(*r[:4]), r[4], r[5]) for r in result if section in r[6]]
    return sorted(rows, key=lambda r: r[0].id)


def routers_on_hosts(session: Session, hosts: Sequence[str]) -> dict[str, list[Router]]:
    if not hosts:
        return {}
    rows = session.scalars(
        sa.select(Router).where(Router.host.in_(sorted(hosts))).order_by(Router.id)
    )
    return _by_host(((r.host or "", r) for r in rows), hosts)


def routers_on_host(session: Session, host: str) -> list[Router]:
    return routers_on_hosts(session, [host])[host]


def router_interfaces(
    session: Session, router_ids: set[str]
) -> list[tuple[RouterInterface, Port, Subnet]]:
    if not router_ids:
        return []
    rows = session.execute(
        sa.select(RouterInterface, Port, Subnet)
        .options(lazyload(Port.security_groups))
        .join(Port, Port.id == RouterInterface.port_id)
        .join(Subnet, Subnet.id == RouterInterface.subnet_id)
        .where(RouterInterface.router_id.in_(router_ids))
        .order_by(RouterInterface.subnet_id)
    )
    return [(i, p, s) for i, p, s in rows]


def external_networks(session: Session, ids: set[str]) -> dict[str, ExternalNetwork]:
    if not ids:
        return {}
    rows = session.scalars(sa.select(ExternalNetwork).where(ExternalNetwork.id.in_(ids)))
    return {n.id: n for n in rows}


def router_floating_ips(session: Session, router_ids: set[str]) -> list[tuple[FloatingIp, Port]]:
    """Associated floating IPs NATed by these routers, with their port."""
    if not router_ids:
        return []
    rows = session.execute(
        sa.select(FloatingIp, Port)
        .options(lazyload(Port.security_groups))
        .join(Port, Port.id == FloatingIp.port_id)
        .where(FloatingIp.router_id.in_(router_ids))
        .order_by(FloatingIp.id)
    )
    return [(f, p) for f, p in rows]


def dhcp_services_on(
    session: Session, hosts: Sequence[str]
) -> dict[str, list[tuple[Subnet, Port, Vpc]]]:
    """Per host, the DHCP/DNS services it runs: subnet, service port and VPC."""
    if not hosts:
        return {}
    rows = session.execute(
        service_select(Subnet, Port, Vpc)
        .options(lazyload(Port.security_groups))
        .join(Subnet, Subnet.id == Port.subnet_id)
        .join(Vpc, Vpc.id == Subnet.vpc_id)
        .where(Port.host.in_(sorted(hosts)))
        .order_by(Subnet.id)
    )
    return _by_host(((p.host or "", (s, p, v)) for s, p, v in rows), hosts)


class PortName(NamedTuple):
    """What a lease or a name needs of a port: columns only, no ORM object (a VPC may
    hold thousands of them, and each document build reads them all)."""

    subnet_id: str
    mac_address: str
    ip_address: str
    dns_name: str | None


_PORT_NAME = (Port.subnet_id, Port.mac_address, Port.ip_address, Port.dns_name)


def user_ports_of(session: Session, subnet_ids: set[str]) -> list[PortName]:
    """The ports users made on these subnets (the static leases), bound or not."""
    if not subnet_ids:
        return []
    rows = session.execute(
        sa.select(*_PORT_NAME)
        .where(Port.subnet_id.in_(subnet_ids), Port.device_owner == "")
        .order_by(Port.id)
    )
    return [PortName(*r) for r in rows]


def port_groups(session: Session, ports: Sequence[Port | LocalPortRow]) -> dict[str, list[str]]:
    """Each of these workload ports' security groups in their order (every port listed,
    maybe with none). Read by the ports' hosts, not by their ids: a batch may hold ten
    thousand ports, and an IN list of them cost more than the rows."""
    out: dict[str, list[str]] = {p.id: [] for p in ports}
    hosts = sorted({p.host for p in ports if p.host})
    if not hosts:
        return out
    rows = session.execute(
        workload_select(PortSecurityGroup.port_id, PortSecurityGroup.security_group_id)
        .select_from(PortSecurityGroup)
        .join(Port, Port.id == PortSecurityGroup.port_id)
        .where(Port.host.in_(hosts))
        .order_by(PortSecurityGroup.port_id, PortSecurityGroup.position)
    )
    for pid, gid in rows:
        if pid in out:  # a port created since the ports were read waits for the next compile
            out[pid].append(gid)
    return out


def group_rules(session: Session, group_ids: set[str]) -> list[SecurityGroupRule]:
    if not group_ids:
        return []
    return list(
        session.scalars(
            sa.select(SecurityGroupRule)
            .where(SecurityGroupRule.security_group_id.in_(group_ids))
            .order_by(SecurityGroupRule.id)
        )
    )


def named_ports(session: Session, vpc_ids: set[str]) -> list[tuple[str, PortName]]:
    """Every port with a dns_name in these VPCs, with its VPC id."""
    if not vpc_ids:
        return []
    rows = session.execute(
        sa.select(Subnet.vpc_id, *_PORT_NAME)
        .join(Subnet, Subnet.id == Port.subnet_id)
        .where(Subnet.vpc_id.in_(vpc_ids), Port.dns_name.is_not(None))
        .order_by(Port.id)
    )
    return [(v, PortName(s, m, ip, n)) for v, s, m, ip, n in rows]


def resolvers(session: Session, subnet_ids: set[str]) -> dict[str, tuple[str | None, str]]:
    """Per subnet: its service address (None without a service) and its VPC's domain."""
    if not subnet_ids:
        return {}
    rows = session.execute(
        sa.select(Subnet.id, Vpc.dns_domain, Port.ip_address)
        .join(Vpc, Vpc.id == Subnet.vpc_id)
        .outerjoin(Port, sa.and_(Port.subnet_id == Subnet.id, Port.id.in_(service_select(Port.id))))
        .where(Subnet.id.in_(subnet_ids))
    )
    return {sid: (address, domain) for sid, domain, address in rows}


def security_groups(session: Session, ids: set[str]) -> list[SecurityGroup]:
    if not ids:
        return []
    return list(
        session.scalars(
            sa.select(SecurityGroup).where(SecurityGroup.id.in_(ids)).order_by(SecurityGroup.id)
        )
    )


def group_members(session: Session, group_ids: set[str]) -> dict[str, list[str]]:
    """The IPs of every port in these groups, wherever it is (a remote group's members)."""
    out: dict[str, list[str]] = {gid: [] for gid in group_ids}
    if not group_ids:
        return out
    rows = session.execute(
        sa.select(PortSecurityGroup.security_group_id, Port.ip_address)
        .join(Port, Port.id == PortSecurityGroup.port_id)
        .where(PortSecurityGroup.security_group_id.in_(group_ids))
        .order_by(Port.ip_address)
    )
    for gid, ip in rows:
        out[gid].append(ip)
    return out


def network_acls(session: Session, ids: set[str]) -> list[NetworkAcl]:
    if not ids:
        return []
    return list(session.scalars(sa.select(NetworkAcl).where(NetworkAcl.id.in_(ids))))


def acl_entries(session: Session, acl_ids: set[str]) -> list[NetworkAclEntry]:
    if not acl_ids:
        return []
    return list(
        session.scalars(
            sa.select(NetworkAclEntry).where(NetworkAclEntry.network_acl_id.in_(acl_ids))
        )
    )


class LoadBalancerRows(NamedTuple):
    """The load balancers scheduled on a host, with their VIP ports and whole trees."""

    load_balancers: list[LoadBalancer]
    vips: dict[str, Port]  # load balancer id -> its VIP port
    vip_subnets: dict[str, Subnet]  # by id
    routed: frozenset[str]  # of those, the subnets a router serves
    listeners: list[Listener]
    pools: list[Pool]
    members: list[Member]
    monitors: list[HealthMonitor]


def hosts_with_load_balancers(session: Session, hosts: Sequence[str]) -> set[str]:
    """Of `hosts`, those a load balancer is scheduled on (few: network hosts)."""
    if not hosts:
        return set()
    return set(
        session.scalars(
            sa.select(LoadBalancer.host).where(LoadBalancer.host.in_(sorted(hosts))).distinct()
        )
    )


def load_balancers_on_host(session: Session, host: str) -> LoadBalancerRows:
    lbs = list(
        session.scalars(
            sa.select(LoadBalancer).where(LoadBalancer.host == host).order_by(LoadBalancer.id)
        )
    )
    ids = {lb.id for lb in lbs}
    if not ids:
        return LoadBalancerRows([], {}, {}, frozenset(), [], [], [], [])
    ports = session.scalars(
        sa.select(Port)
        .options(lazyload(Port.security_groups))
        .where(Port.id.in_({lb.vip_port_id for lb in lbs if lb.vip_port_id}))
    )
    by_port = {p.id: p for p in ports}
    subnet_ids = {p.subnet_id for p in by_port.values()}
    pools = list(
        session.scalars(sa.select(Pool).where(Pool.load_balancer_id.in_(ids)).order_by(Pool.id))
    )
    pool_ids = {p.id for p in pools}
    return LoadBalancerRows(
        load_balancers=lbs,
        vips={lb.id: by_port[lb.vip_port_id] for lb in lbs if lb.vip_port_id in by_port},
        vip_subnets={s.id: s for s in subnets_by_id(session, subnet_ids)},
        routed=frozenset(routed_subnets(session, subnet_ids)),
        listeners=list(
            session.scalars(
                sa.select(Listener)
                .where(Listener.load_balancer_id.in_(ids))
                .order_by(Listener.protocol_port, Listener.id)
            )
        ),
        pools=pools,
        members=list(
            session.scalars(
                sa.select(Member).where(Member.pool_id.in_(pool_ids)).order_by(Member.id)
            )
        ),
        monitors=list(
            session.scalars(sa.select(HealthMonitor).where(HealthMonitor.pool_id.in_(pool_ids)))
        ),
    )
