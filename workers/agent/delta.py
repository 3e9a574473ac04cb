"""What an incremental sync must look at: the objects whose desired form changed.

Everything else is taken from the snapshot made after the previous state was applied,
so one port change on a host with 1000 ports costs a few netlink round trips, and a
firewall is read again (iptables-save) only where its rendering changed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from pydantic import BaseModel

from workers.agent import names
from workers.agent.desired import Desired
from workers.agent.observed import Scope
from workers.agent.ruleset import NetnsFirewall

# Subnet fields whose change touches only the VXLAN device's fdb, not the ports.
_FDB_ONLY_FIELDS = {"revision", "remote_vteps", "remote_ports"}


def delta_scope(
    prev: Desired,
    new: Desired,
    prev_firewall: Mapping[str | None, NetnsFirewall] | None = None,
    new_firewall: Mapping[str | None, NetnsFirewall] | None = None,
) -> Scope:
    """Every kernel object whose desired form differs between two states.

    The firewall renderings are the ones applied for `prev` and rendered for `new`.
    """
    links: set[str] = set()
    ports: set[str] = set()
    netns: set[str] = set()
    port_subnets: set[str] = set()
    for sid in prev.needed.keys() | new.needed.keys():
        a, b = prev.needed.get(sid), new.needed.get(sid)
        if a == b and prev.vtep_ip == new.vtep_ip:
            continue
        links |= {names.bridge_name(sid), names.vxlan_name(sid)}
        if a is None or b is None:
            port_subnets.add(sid)
            continue
        changed = {k for k in type(a).model_fields if getattr(a, k) != getattr(b, k)}
        if changed - _FDB_ONLY_FIELDS:
            port_subnets.add(sid)

    resolved = {  # subnets whose resolver changed: their namespaces' resolv.conf
        sid
        for sid in prev.resolvers.keys() | new.resolvers.keys()
        if prev.resolvers.get(sid) != new.resolvers.get(sid)
    }
    prev_ports = {p.id: p for p in prev.state.ports}
    new_ports = {p.id: p for p in new.state.ports}
    for pid in prev_ports.keys() | new_ports.keys():
        a_port, b_port = prev_ports.get(pid), new_ports.get(pid)
        if (
            not _same(a_port, b_port)
            or prev.problems.get(pid) != new.problems.get(pid)
            or (pid in prev.dhcp_ports) != (pid in new.dhcp_ports)
            or (  # checked only when a subnet changed: 1000 ports pay nothing otherwise
                port_subnets
                and any(p is not None and p.subnet_id in port_subnets for p in (a_port, b_port))
            )
        ):
            ports.add(pid)
            links.add(names.host_veth_name(pid))
            for d, p in ((prev, a_port), (new, b_port)):
                if p is not None:
                    with contextlib.suppress(ValueError):
                        netns.add(names.workload_netns(d.netns_prefix, p.netns))
    # Flat and routed ports are planned whole (planners/typed.py), but their namespaces
    # are made and removed with every other (planners/ports.py): name those that come or go.
    netns |= prev.typed.netns ^ new.typed.netns
    for d in (prev, new) if resolved else ():
        netns |= {d.port_netns[p.id] for p in d.ports if p.subnet_id in resolved}
    routers: set[str] = set()
    prev_routers = {r.id: r for r in prev.state.routers}
    new_routers = {r.id: r for r in new.state.routers}
    for rid in prev_routers.keys() | new_routers.keys():
        a_r, b_r = prev_routers.get(rid), new_routers.get(rid)
        touched = {i.subnet_id for r in (a_r, b_r) if r is not None for i in r.interfaces}
        if (
            a_r == b_r
            and prev.router_problems.get(rid) == new.router_problems.get(rid)
            and not touched & port_subnets
        ):
            continue
        for d, r in ((prev, a_r), (new, b_r)):
            if r is None:
                continue
            ns = names.router_netns(d.netns_prefix, rid)
            routers.add(ns)
            netns.add(ns)
            links.add(names.gateway_name(rid))
            links |= {names.router_host_leg_name(i.port_id) for i in r.interfaces}
            if r.external_gateway is not None:
                links.add(names.external_bridge_name(r.external_gateway.external_network_id))
                if d.external_interface is not None:
                    links.add(d.external_interface)
    before, after = prev_firewall or {}, new_firewall or {}
    firewall = {ns for ns in before.keys() | after.keys() if before.get(ns) != after.get(ns)}
    return Scope(
        frozenset(links),
        frozenset(ports),
        frozenset(netns),
        frozenset(firewall),
        frozenset(routers),
    )


def _same(a: BaseModel | None, b: BaseModel | None) -> bool:
    """Equal documents' items, cheaply: the same object (a patched document keeps its
    base's), else equal fields. Pydantic's __eq__ costs ~8 ms a sync over 1000 ports;
    fields alone can only find a difference pydantic would, never miss one."""
    if a is b:
        return True
    return a is not None and b is not None and type(a) is type(b) and a.__dict__ == b.__dict__
