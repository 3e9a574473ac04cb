"""Read the DHCP/DNS services and our resolv.conf files back: always all of them.

A service is found by any trace it leaves (its namespace, its state directory) as well
as by being desired, so one that is no longer wanted is still seen and removed. Its
dnsmasq counts as running only when its pid file names a live process running exactly
its argv in its namespace (processes.running), so a PID reused by anything else is not.
A host runs few services and each costs a couple of netlink requests and small file
reads, which is why even an incremental sync reads them all; resolv.conf files (one per
workload namespace) it reads only for the namespaces in its scope.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workers.agent import dnsmasq, drivers, names
from workers.agent.desired import Desired
from workers.agent.drivers import Netlink
from workers.agent.observed import HostVethObs, RouteObs, ServiceObs, WorkloadObs


def observe_services(
    nl: Netlink,
    host_netns: str | None,
    desired: Desired,
    owned_netns: frozenset[str],
    only: frozenset[str] | None = None,
) -> tuple[dict[str, ServiceObs], dict[str, str]]:
    """(services by token, our resolv.conf text by workload namespace); with `only`,
    the resolv.conf of those namespaces alone (a scoped observation: one per port, and
    a host with 1000 ports would read 1000 files per change)."""
    prefix = desired.netns_prefix
    every_netns = drivers.list_netns()
    tokens = set(desired.services)
    tokens |= {t for ns in every_netns if (t := names.service_token_of_netns(prefix, ns))}
    base = Path(desired.state_dir) / dnsmasq.SERVICE_DIR
    tokens |= {d for d in drivers.files.list_dirs(base) if names.is_service_token(d)}
    services = {t: _service(nl, host_netns, desired, t, every_netns) for t in sorted(tokens)}
    resolv = {}
    with_etc = set(drivers.files.list_dirs(drivers.files.ETC_NETNS))  # one listdir, not 1000 opens
    mine = (owned_netns | desired.netns) & with_etc
    for ns in sorted(mine if only is None else mine & only):
        text = drivers.files.read_resolv(ns)
        if text is not None:
            resolv[ns] = text
    return services, resolv


def _service(
    nl: Netlink, host_netns: str | None, desired: Desired, token: str, every: frozenset[str]
) -> ServiceObs:
    netns = names.service_netns(desired.netns_prefix, token)
    directory = dnsmasq.service_dir(desired.state_dir, token)
    found = drivers.files.read_dir(directory)
    files = {n: t for n, t in (found or {}).items() if n in dnsmasq.FILES}
    exists = netns in every
    host = nl.handle(host_netns)
    leg, leg_index = _leg(host, names.leg_name_of_token(token))
    inner = _inner(nl, netns, leg_index) if exists and leg is not None else None
    running = exists and (
        drivers.processes.running(
            desired.state_dir, dnsmasq.daemon_name(token), netns, dnsmasq.argv(directory)
        )
        is not None
    )
    return ServiceObs(token, exists, leg, inner, files, found is not None, running)


def _leg(host: Any, name: str) -> tuple[HostVethObs | None, int]:
    msg = drivers.get_link(host, name)
    if msg is None or msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") != "veth":
        return None, 0
    master = None
    if msg.get("IFLA_MASTER"):
        bridge = drivers.get_link(host, index=int(msg.get("IFLA_MASTER")))
        master = str(bridge.get("IFLA_IFNAME")) if bridge is not None else None
    up = bool(msg["flags"] & drivers.IFF_UP)
    return HostVethObs(name, master, int(msg.get("IFLA_MTU")), up), int(msg["index"])


def _inner(nl: Netlink, netns: str, leg_index: int) -> WorkloadObs | None:
    """The leg's end inside the namespace, if it really is the peer of our host end."""
    try:
        ipr = nl.handle(netns)
    except drivers.NetnsMissing:
        return None
    msg = drivers.get_link(ipr, names.SERVICE_IFNAME)
    if msg is None or msg.get("IFLA_LINK") != leg_index:
        return None
    index = int(msg["index"])
    (dump,) = nl.gather([drivers.adump_addresses(ipr)])
    (routes,) = nl.gather([drivers.adump_routes(ipr)])
    return WorkloadObs(
        netns=netns,
        name=names.SERVICE_IFNAME,
        mac=str(msg.get("IFLA_ADDRESS")).lower(),
        mtu=int(msg.get("IFLA_MTU")),
        up=bool(msg["flags"] & drivers.IFF_UP),
        addresses=frozenset(cidr for i, cidr in dump if i == index),
        routes=frozenset(RouteObs(dst, gw) for oif, dst, gw in routes if oif == index),
    )
