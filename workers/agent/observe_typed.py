"""Read flat and routed ports from the kernel into a TypedObs, always whole: the host's
routed veth ends (`vpw…`), their proxy ARP switch and addresses, the host's typed routes
and ip_forward, and each desired typed port's workload end with its addresses and our
routes. A workload interface is reported only when it has the kind its type makes
(veth for routed, macvlan for flat)."""

from __future__ import annotations

from collections import defaultdict

from workers.agent import drivers
from workers.agent.drivers import Netlink
from workers.agent.drivers import typed as tdrv
from workers.agent.typed_state import (
    IP_FORWARD,
    PROXY_ARP,
    TypedDesired,
    TypedLinkObs,
    TypedObs,
    TypedPort,
    TypedRoute,
    is_routed_veth,
)


def observe_typed(nl: Netlink, host_netns: str | None, typed: TypedDesired) -> TypedObs:
    host = nl.handle(host_netns)
    links = tdrv.dump_links(host)
    names = {index: name for index, name, *_ in links}
    ours = [link for link in links if is_routed_veth(link[1]) and link[2] == "veth"]
    routes = tdrv.dump_routes(host)
    if not ours and not routes and not typed.ports:
        return TypedObs()  # a host without typed networks pays one link dump
    addresses: dict[int, set[str]] = defaultdict(set)
    for index, cidr in tdrv.dump_addresses(host):
        addresses[index].add(cidr)
    keys = [PROXY_ARP.format(link[1]) for link in ours] + [IP_FORWARD]
    sysctls = drivers.sysctl.read(host_netns, keys)
    veths = {
        name: TypedLinkObs(
            name,
            kind,
            mac,
            mtu,
            up,
            frozenset(addresses[index]),
            proxy_arp=sysctls.get(PROXY_ARP.format(name)) == "1",
        )
        for index, name, kind, mac, mtu, up in ours
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
        ipr = nl.handle(tp.netns)
    except drivers.NetnsMissing:
        return None
    want = tp.port.interface_name
    kind = "veth" if tp.routed else "macvlan"
    link = next((x for x in tdrv.dump_links(ipr) if x[1] == want), None)
    if link is None:
        return None
    index, name, have_kind, mac, mtu, up = link
    if have_kind != kind:
        return TypedLinkObs(name, have_kind, mac, mtu, up, netns=tp.netns)
    addresses = frozenset(c for i, c in tdrv.dump_addresses(ipr) if i == index)
    routes = frozenset(
        TypedRoute(dst, gw, name) for oif, dst, gw in tdrv.dump_routes(ipr) if oif == index
    )
    return TypedLinkObs(name, kind, mac, mtu, up, addresses, routes, netns=tp.netns)
