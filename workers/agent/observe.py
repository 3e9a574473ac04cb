"""Read the kernel into an `Observed`: only the agent's own objects.

A full observation dumps the host namespace's links once (≈0.4 s per 1000 links), the
fdb of each of our VXLAN devices, the list of namespaces, and, per workload namespace of
a desired port, that namespace's interface/addresses/routes through its cached socket;
the per-namespace reads run concurrently (`Netlink.gather`). A scoped observation
(`scope=`) asks the kernel only about the named objects (one RTM_GETLINK each, or one
dump when there are many), which is what lets one port change on a host with 1000 ports
cost a handful of netlink round trips instead of a full observation.

Only the workload end of *desired* ports is looked for: an undesired port is removed by
deleting its host end, which takes the workload end with it.

Firewall state is read with one iptables-save per (netns, table) the caller names and
one ipset save per namespace, reduced to our chains, hooks and sets (ruleset.py); a
scoped observation reads it only for the namespaces in `scope.firewall`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from workers.agent import drivers, names
from workers.agent.desired import Desired
from workers.agent.drivers import Netlink, rawnl
from workers.agent.drivers.cmd import ToolCalls
from workers.agent.observe_services import observe_services
from workers.agent.observe_typed import observe_typed
from workers.agent.observed import (
    BridgeObs,
    ExternalIfObs,
    FdbEntry,
    HostVethObs,
    LbObs,
    Observed,
    RouteObs,
    RouterLinkObs,
    RouterObs,
    RouterRouteObs,
    Scope,
    VxlanObs,
    WorkloadObs,
)
from workers.agent.ruleset import (
    EB,
    SYSCTL_KEYS,
    NetnsFirewall,
    parse_ipset_save,
    parse_save,
)
from workers.protocol import PortState

IP_FORWARD = "net.ipv4.ip_forward"  # a router namespace's forwarding switch

# Above this many links, one dump of the host namespace is cheaper than a get for each.
DUMP_ABOVE = 32


def _kind(msg: Any) -> str | None:
    kind = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
    return str(kind) if kind is not None else None


def _up(msg: Any) -> bool:
    return bool(msg["flags"] & drivers.IFF_UP)


def _up_raw(link: rawnl.Link) -> bool:
    return bool(link.flags & drivers.IFF_UP)


def observe(
    nl: Netlink,
    host_netns: str | None,
    desired: Desired,
    *,
    owned_netns: frozenset[str] = frozenset(),
    scope: Scope | None = None,
    tables: Mapping[str | None, Iterable[str]] | None = None,
    calls: ToolCalls | None = None,
    state_dir: str | None = None,
) -> Observed:
    """Snapshot the agent's objects; with `scope`, only the objects it names.

    `owned_netns` is the ledger of namespaces the agent created; `tables` names the
    firewall tables to read per namespace (None: the host's), `calls` counts the reads.
    """
    host = nl.handle(host_netns)
    ports = {p.id: p for p in desired.ports}
    want_tables = dict(tables or {})
    if scope is not None:
        want_tables = {ns: t for ns, t in want_tables.items() if ns in scope.firewall}

    ext_name = desired.external_interface
    raw = nl.raw(host_netns)
    if scope is None:
        every = rawnl.dump_links(raw)
        by_index = {link.index: link.name for link in every}
        links = [link for link in every if names.is_owned_link(link.name)]
        ext_msg = next((link for link in every if link.name == ext_name), None)
        netns = drivers.list_netns()
        look_at = list(ports.values())
        router_ns = {desired.router_netns[r.id] for r in desired.routers}
    else:
        wanted = set(scope.links) | {names.host_veth_name(pid) for pid in scope.ports}
        ext_msg = None
        if ext_name is not None and ext_name in wanted:
            wanted.discard(ext_name)
            ext_msg = rawnl.get_link(raw, ext_name)
        if len(wanted) > DUMP_ABOVE:
            every = rawnl.dump_links(raw)
            by_index = {link.index: link.name for link in every}
            links = [link for link in every if link.name in wanted]
        else:
            links = [m for m in (rawnl.get_link(raw, n) for n in sorted(wanted)) if m]
            by_index = {link.index: link.name for link in links}
        look_at = [ports[pid] for pid in sorted(scope.ports) if pid in ports]
        candidates = set(scope.netns) | set(scope.routers)
        candidates |= {desired.port_netns[p.id] for p in look_at}
        netns = frozenset(n for n in candidates if drivers.netns_exists(n))
        router_ns = set(scope.routers)

    def host_name(index: int) -> str | None:
        if index not in by_index:
            found = rawnl.get_link(raw, index=index)
            by_index[index] = found.name if found is not None else ""
        return by_index[index] or None

    def master_name(link: rawnl.Link) -> str | None:
        return host_name(link.master) if link.master else None

    bridges: dict[str, BridgeObs] = {}
    vxlans: dict[str, VxlanObs] = {}
    veths: dict[str, HostVethObs] = {}
    veth_index: dict[str, int] = {}
    fdb: set[FdbEntry] = set()
    ext_bridges: dict[str, BridgeObs] = {}
    legs: dict[str, HostVethObs] = {}
    for link in links:
        name = link.name
        kind = names.link_kind(name)
        if kind is None or link.kind != kind:
            continue  # not ours, or a same-named object of another kind: not ours either
        mtu, up = link.mtu, bool(link.flags & drivers.IFF_UP)
        role = names.link_role(name)
        if role == "external":
            ext_bridges[name] = BridgeObs(name, mtu, up)
        elif role in ("leg", "gateway"):
            legs[name] = HostVethObs(name, master_name(link), mtu, up)
        elif kind == "bridge":
            bridges[name] = BridgeObs(name, mtu, up)
        elif kind == "vxlan":
            msg = drivers.get_link(host, index=link.index)  # a few per host: its details
            if msg is None:
                continue
            data = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
            local = data.get("IFLA_VXLAN_LOCAL")
            vxlans[name] = VxlanObs(
                name=name,
                vni=int(data.get("IFLA_VXLAN_ID")),
                local=str(local) if local else None,
                learning=bool(data.get("IFLA_VXLAN_LEARNING")),
                dstport=int(data.get("IFLA_VXLAN_PORT")),
                mtu=mtu,
                master=master_name(link),
                up=up,
            )
            fdb |= {FdbEntry(name, mac, dst) for mac, dst in rawnl.dump_fdb(raw, link.index)}
        else:
            veths[name] = HostVethObs(name, master_name(link), mtu, up)
            veth_index[name] = link.index

    workloads = _workloads(nl, desired, look_at, veth_index, netns)
    firewall = observe_firewall(
        host_netns,
        want_tables,
        calls or ToolCalls(),
        setless=frozenset(desired.router_netns.values()),
    )
    external = None
    if ext_msg is not None:
        external = ExternalIfObs(str(ext_name), master_name(ext_msg), _up_raw(ext_msg))

    routers = {ns: _router(nl, ns, host_name) for ns in sorted(router_ns) if ns in netns}
    services, resolv = observe_services(nl, host_netns, desired, owned_netns)
    return Observed(
        bridges=bridges,
        vxlans=vxlans,
        fdb=frozenset(fdb),
        veths=veths,
        workloads=workloads,
        netns=netns,
        owned_netns=owned_netns & netns,
        firewall=firewall,
        ext_bridges=ext_bridges,
        legs=legs,
        external=external,
        routers={ns: r for ns, r in routers.items() if r is not None},
        services=services,
        resolv=resolv,
        lbs=observe_lbs(state_dir, desired) if state_dir is not None else {},
        typed=observe_typed(nl, host_netns, desired.typed, scope),
    )


def _router(nl: Netlink, ns: str, host_name: Any) -> RouterObs | None:
    """A router namespace's veths (with their host ends), addresses, our routes and
    ip_forward; None if it went away meanwhile."""
    try:
        ipr = nl.handle(ns)
    except drivers.NetnsMissing:
        return None
    addresses: dict[int, set[str]] = defaultdict(set)
    for index, cidr in drivers.dump_addresses(ipr):
        addresses[index].add(cidr)
    by_index: dict[int, str] = {}
    links: dict[str, RouterLinkObs] = {}
    for msg in drivers.dump_links(ipr):
        name = str(msg.get("IFLA_IFNAME"))
        by_index[int(msg["index"])] = name
        if _kind(msg) != "veth":
            continue
        peer_index = msg.get("IFLA_LINK")
        peer = host_name(int(peer_index)) if peer_index else None
        if peer is not None and names.link_role(peer) not in ("leg", "gateway"):
            peer = None
        links[name] = RouterLinkObs(
            name=name,
            mac=str(msg.get("IFLA_ADDRESS")).lower(),
            mtu=int(msg.get("IFLA_MTU")),
            up=_up(msg),
            peer=peer,
            addresses=frozenset(addresses[int(msg["index"])]),
        )
    routes = frozenset(
        RouterRouteObs(dst, gateway, by_index.get(oif, ""))
        for oif, dst, gateway in drivers.dump_routes(ipr)
    )
    forwarding = drivers.sysctl.read(ns, [IP_FORWARD]).get(IP_FORWARD) == "1"
    return RouterObs(ns, links, routes, forwarding)


def observe_lbs(state_dir: str, desired: Desired) -> dict[str, LbObs]:
    """Every desired load balancer and every one with a haproxy pid file: whether our
    haproxy runs, its configuration file, and forwarding where UDP listeners need it."""
    out: dict[str, LbObs] = {}
    for lb_id in sorted(set(desired.lbs) | drivers.haproxy.daemons(state_dir)):
        netns = desired.lb_netns.get(lb_id) or names.workload_netns(
            desired.netns_prefix, names.lb_netns(lb_id)
        )
        token = names.lb_token(lb_id)
        exists = drivers.netns_exists(netns)
        lb = desired.lbs.get(lb_id)
        udp = lb is not None and any(x.protocol == "UDP" for x in lb.listeners)
        out[lb_id] = LbObs(
            netns=netns,
            socket=str(drivers.haproxy.files(state_dir, token)[1]),
            haproxy=exists
            and drivers.haproxy.running(state_dir, names.lb_daemon(lb_id), token, netns)
            is not None,
            config=drivers.haproxy.read_config(state_dir, token),
            forwarding=exists and udp and drivers.haproxy.forwarding(netns),
        )
    return out


def observe_firewall(
    host_netns: str | None,
    tables: Mapping[str | None, Iterable[str]],
    calls: ToolCalls,
    setless: frozenset[str] = frozenset(),
) -> dict[str | None, NetnsFirewall]:
    """Our chains, hooks and sets in each named namespace (None: the host's); `setless`
    namespaces (routers) hold no sets of ours, so their ipset save is skipped."""
    out: dict[str | None, NetnsFirewall] = {}
    for ns, wanted in tables.items():
        where = host_netns if ns is None else ns
        if where is not None and not drivers.netns_exists(where):
            out[ns] = NetnsFirewall()  # nothing of ours can be in a namespace that is gone
            continue
        table_names = list(wanted)
        rulesets = {}
        ip_tables = [t for t in table_names if not t.startswith(EB)]
        for table in table_names:
            if table.startswith(EB):
                text = drivers.ebtables.save(where)
                rulesets[table] = parse_save(text, table.removeprefix(EB))
        if len(ip_tables) > 1:  # e.g. a router's nat and filter: one iptables-save for both
            calls.iptables_saves += 1
            dump = drivers.iptables.save(where, None)
            rulesets.update({table: parse_save(dump, table) for table in ip_tables})
        for table in ip_tables if len(ip_tables) == 1 else ():
            calls.iptables_saves += 1
            rulesets[table] = parse_save(drivers.iptables.save(where, table), table)
        sets = {} if ns in setless else parse_ipset_save(drivers.ipset.save(where))
        sysctls = drivers.sysctl.read(where, SYSCTL_KEYS) if ns is None else {}
        out[ns] = NetnsFirewall(rulesets, sets, sysctls)
    return out


def _workloads(
    nl: Netlink,
    desired: Desired,
    ports: list[PortState],
    veth_index: dict[str, int],
    netns: frozenset[str],
) -> dict[str, WorkloadObs]:
    """Find each port's workload end: in its netns, named interface_name, and the peer
    of its host veth (its IFLA_LINK is the host end's ifindex)."""
    by_netns: dict[str, list[PortState]] = defaultdict(list)
    for port in ports:
        ns = desired.port_netns[port.id]
        if ns in netns and names.host_veth_name(port.id) in veth_index:
            by_netns[ns].append(port)

    nl.open_many(sorted(by_netns))  # one trip to the netns thread for all new sockets
    out: dict[str, WorkloadObs] = {}
    for ns in sorted(by_netns):
        try:
            sock = nl.raw(ns)
        except drivers.NetnsMissing:
            continue  # removed since we listed it: the plan will create it again
        if len(by_netns[ns]) > 1:
            present = {link.name: link for link in rawnl.dump_links(sock)}
        else:  # the usual case: one port, one get
            only = by_netns[ns][0].interface_name
            present = {only: link} if (link := rawnl.get_link(sock, only)) else {}
        matched = []
        for port in by_netns[ns]:
            link = present.get(port.interface_name)
            if (
                link is not None
                and link.kind == "veth"
                and link.link == veth_index[names.host_veth_name(port.id)]
            ):
                matched.append((port, link))
        if not matched:
            continue
        addresses: dict[int, set[str]] = defaultdict(set)
        for index, cidr in rawnl.dump_addresses(sock):
            addresses[index].add(cidr)
        routes: dict[int, set[RouteObs]] = defaultdict(set)
        for oif, dst, gateway in rawnl.dump_routes(sock):
            routes[oif].add(RouteObs(dst, gateway))
        for port, link in matched:
            out[port.id] = WorkloadObs(
                netns=ns,
                name=port.interface_name,
                mac=(link.address or "").lower(),
                mtu=link.mtu,
                up=_up_raw(link),
                addresses=frozenset(addresses[link.index]),
                routes=frozenset(routes[link.index]),
            )
    return out
