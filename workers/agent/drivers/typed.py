"""Drivers for flat and routed ports (DESIGN §4, network types), over pyroute2.

One kernel change per function; "already there" on create and "already gone" on delete
are success, as everywhere in drivers. Routes the agent installs for these ports carry
their own rtm_protocol (TYPED_PROTO), so observation finds exactly ours and never
another program's routes, and never the VXLAN ports' (ROUTE_PROTO).
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from workers.agent.drivers.base import NOT_FOUND, RT_TABLE_MAIN
from workers.agent.drivers.netns import open_netns_fd

TYPED_PROTO = 147  # rtm_protocol of flat/routed routes (unassigned in rt_protos)
RTNH_F_ONLINK = 4


def _tolerate(codes: set[int] | frozenset[int], call: Any) -> None:
    try:
        call()
    except NetlinkError as exc:
        if exc.code not in codes:
            raise


def create_routed_veth(
    ipr: Any, name: str, mtu: int, netns: str, peer_name: str, peer_mac: str
) -> None:
    """A veth with no master: host end `name` here, its peer straight in `netns`."""
    fd = open_netns_fd(netns)
    try:
        peer = {"ifname": peer_name, "address": peer_mac, "mtu": mtu, "net_ns_fd": fd}
        _tolerate(
            {errno.EEXIST},
            lambda: ipr.link("add", ifname=name, kind="veth", mtu=mtu, peer=peer),
        )
    finally:
        os.close(fd)


def create_macvlan(ipr: Any, parent: int, netns: str, name: str, mac: str, mtu: int) -> None:
    """A macvlan (bridge mode) child of host interface `parent`, made straight in `netns`
    as `name` with the port's MAC (the kernel checks the name there)."""
    fd = open_netns_fd(netns)
    try:
        ipr.link(
            "add",
            ifname=name,
            kind="macvlan",
            link=parent,
            macvlan_mode="bridge",
            address=mac,
            mtu=mtu,
            net_ns_fd=fd,
        )
    finally:
        os.close(fd)


def delete_link(ipr: Any, index: int) -> None:
    _tolerate(NOT_FOUND, lambda: ipr.link("del", index=index))


def _spec(destination: str, gateway: str, oif: int | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"dst": destination, "proto": TYPED_PROTO, "table": RT_TABLE_MAIN}
    if gateway:
        spec["gateway"] = gateway
    if oif is not None:
        spec["oif"] = oif
        if gateway:
            spec["flags"] = RTNH_F_ONLINK  # a link-local gateway outside the port's subnet
    return spec


def add_route(ipr: Any, destination: str, gateway: str, oif: int | None) -> None:
    """A route of ours: `oif` None lets the kernel find the gateway's interface (remote
    routed ports, via the underlay); with `oif` and a gateway it is on-link."""
    _tolerate({errno.EEXIST}, lambda: ipr.route("add", **_spec(destination, gateway, oif)))


def delete_route(ipr: Any, destination: str, gateway: str, oif: int | None) -> None:
    _tolerate(NOT_FOUND, lambda: ipr.route("del", **_spec(destination, gateway, oif)))


def dump_routes(ipr: Any) -> list[tuple[int, str, str]]:
    """(oif, destination CIDR, gateway or "") of our typed routes in the main table."""
    out = []
    for msg in ipr.get_routes(family=socket.AF_INET, table=RT_TABLE_MAIN):
        if msg["proto"] != TYPED_PROTO:
            continue
        dst = msg.get_attr("RTA_DST") or "0.0.0.0"
        out.append(
            (
                msg.get_attr("RTA_OIF") or 0,
                f"{dst}/{msg['dst_len']}",
                msg.get_attr("RTA_GATEWAY") or "",
            )
        )
    return out


def dump_links(ipr: Any) -> list[tuple[int, str, str | None, str, int, bool]]:
    """(index, name, kind, mac, mtu, up) of every link in the namespace."""
    out = []
    for msg in ipr.get_links():
        kind = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
        out.append(
            (
                msg["index"],
                msg.get_attr("IFLA_IFNAME"),
                str(kind) if kind else None,
                (msg.get_attr("IFLA_ADDRESS") or "").lower(),
                msg.get_attr("IFLA_MTU") or 0,
                bool(msg["flags"] & 1),
            )
        )
    return out


def dump_addresses(ipr: Any) -> list[tuple[int, str]]:
    return [
        (m["index"], f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}")
        for m in ipr.get_addr(family=socket.AF_INET)
    ]
