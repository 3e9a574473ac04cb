"""Read flat and routed ports from the kernel into a TypedObs, whole: the host's routed
veth ends (`vpw…`), their proxy ARP switch and addresses, the host's typed routes and
ip_forward, and each desired typed port's workload end with its addresses and our
routes. A workload interface is reported with its kind; the planner treats one of the
wrong kind (not veth for routed, not macvlan for flat) as not ours.

A scoped (incremental) observation of a host whose document has no typed port, and
whose ops touched none, skips all of it (`TypedObs.read` False): the cached picture
stands, and a host without flat/routed subnets pays nothing per sync. A full
observation always reads it, so drift is found by the periodic resync.
"""

from __future__ import annotations

from collections import defaultdict

from workers.agent import drivers
from workers.agent.drivers import Netlink, rawnl
from workers.agent.drivers import typed as tdrv
from workers.agent.observed import Scope
from workers.agent.typed_state import (
    IP_FORWARD,
    PROXY_ARP,
    TypedDesired,
    TypedLinkObs,
    TypedObs,
    TypedPort,
    TypedRoute,
    is_routed_veth,
    touches_typed,
)


def observe_typed(
    nl: Netlink, host_netns: str | None, typed: TypedDesired, scope: Scope | None = None
) -> TypedObs:
    idle = not typed.ports and not typed.host_routes
    if scope is not None and idle and not touches_typed(scope.links):
        return TypedObs(read=False)
    raw = nl.raw(host_netns)
    links = rawnl.dump_links(raw)
    names = {link.index: link.name for link in links}
    ours = [link for link in links if is_routed_veth(link.name) and link.kind == "veth"]
    routes = tdrv.dump_routes(nl.handle(host_netns))
    if not ours and not routes and not typed.ports:
        return TypedObs()
    addresses: dict[int, set[str]] = defaultdict(set)
    for index, cidr in rawnl.dump_addresses(raw):
        addresses[index].add(cidr)
    keys = [PROXY_ARP.format(link.name) for link in ours] + [IP_FORWARD]
    sysctls = drivers.sysctl.read(host_netns, keys)
    veths = {
        link.name: TypedLinkObs(
            link.name,
            link.kind,
            (link.address or "").lower(),
            link.mtu,
            bool(link.flags & drivers.IFF_UP),
            frozenset(addresses[link.index]),
            proxy_arp=sysctls.get(PROXY_ARP.format(link.name)) == "1",
        )
        for link in ours
    }
    host_routes = frozenset(
        TypedRoute(dst, gw, "" if gw else names.get(oif, "")) for oif, dst, gw in routes
    )
    workloads = {}
    for tp in typed.ports:
        found = _workload(nl, tp)
        if found is not None:
            workloads[tp.port.id] = found
    return TypedObs(veths, workloads, host_routes, sysctls.get(IP_FORWARD) == "1")


def _workload(nl: Netlink, tp: TypedPort) -> TypedLinkObs | None:
    if not drivers.netns_exists(tp.netns):
        return None
    try:
        raw = nl.raw(tp.netns)
    except drivers.NetnsMissing:
        return None
    link = rawnl.get_link(raw, tp.port.interface_name)
    if link is None:
        return None
    mac, up = (link.address or "").lower(), bool(link.flags & drivers.IFF_UP)
    kind = "veth" if tp.routed else "macvlan"
    if link.kind != kind:
        return TypedLinkObs(link.name, link.kind, mac, link.mtu, up, netns=tp.netns)
    addresses = frozenset(c for i, c in rawnl.dump_addresses(raw) if i == link.index)
    routes = frozenset(
        TypedRoute(dst, gw, link.name)
        for oif, dst, gw in tdrv.dump_routes(nl.handle(tp.netns))
        if oif == link.index
    )
    return TypedLinkObs(link.name, kind, mac, link.mtu, up, addresses, routes, netns=tp.netns)
