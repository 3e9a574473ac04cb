"""Links, FDB entries, addresses and routes: one function per netlink request."""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from workers.agent.drivers.base import (
    NOT_FOUND,
    NTF_SELF,
    NUD_NOARP,
    NUD_PERMANENT,
    ROUTE_PROTO,
    RT_TABLE_MAIN,
    DriverError,
    _code,
    _tolerate,
)


def dump_links(ipr: Any) -> list[Any]:
    return list(ipr.link("dump"))


def get_link(ipr: Any, name: str | None = None, index: int | None = None) -> Any | None:
    """The link message, or None when there is no such link."""
    spec = {"ifname": name} if index is None else {"index": index}
    found = _tolerate(NOT_FOUND, lambda: ipr.link("get", **spec))
    return found[0] if found else None


async def aget_link(ipr: Any, name: str) -> Any | None:
    """get_link for use inside `Netlink.gather`, so many namespaces are read at once."""
    try:
        found = await ipr.asyncore.link("get", ifname=name)
    except NetlinkError as exc:
        if _code(exc) in NOT_FOUND:
            return None
        raise
    return found[0] if found else None


def link_index(ipr: Any, name: str) -> int:
    msg = get_link(ipr, name)
    if msg is None:
        raise DriverError(errno.ENODEV, f"no link named {name}")
    return int(msg["index"])


def create_bridge(ipr: Any, name: str, mtu: int) -> None:
    _tolerate(
        {errno.EEXIST}, lambda: ipr.link("add", ifname=name, kind="bridge", mtu=mtu, state="up")
    )


def create_vxlan(
    ipr: Any, name: str, *, vni: int, local: str, dstport: int, mtu: int, master: int
) -> None:
    _tolerate(
        {errno.EEXIST},
        lambda: ipr.link(
            "add",
            ifname=name,
            kind="vxlan",
            vxlan_id=vni,
            vxlan_local=local,
            vxlan_port=dstport,
            vxlan_learning=0,
            mtu=mtu,
            master=master,
            state="up",
        ),
    )


def set_link(
    ipr: Any,
    index: int,
    *,
    mtu: int | None = None,
    master: int | None = None,
    address: str | None = None,
    up: bool | None = None,
) -> None:
    spec: dict[str, Any] = {}
    if mtu is not None:
        spec["mtu"] = mtu
    if master is not None:
        spec["master"] = master
    if address is not None:
        spec["address"] = address
    if up is not None:
        spec["state"] = "up" if up else "down"
    if spec:
        ipr.link("set", index=index, **spec)


def delete_link(ipr: Any, name: str) -> None:
    msg = get_link(ipr, name)
    if msg is not None:
        _tolerate(NOT_FOUND, lambda: ipr.link("del", index=msg["index"]))


# ------------------------------------------------------------------------- fdb


def dump_fdb(ipr: Any, index: int) -> list[tuple[str, str]]:
    """(mac, dst) of the self entries with a remote on VXLAN device `index`."""
    out = []
    for msg in ipr.fdb("dump", ifindex=index):
        dst = msg.get("NDA_DST")
        if msg.get("ifindex") == index and dst and msg["flags"] & NTF_SELF:
            out.append((str(msg.get("NDA_LLADDR")).lower(), str(dst)))
    return out


def _fdb_spec(index: int, mac: str, dst: str) -> dict[str, Any]:
    return {
        "ifindex": index,
        "lladdr": mac,
        "dst": dst,
        "flags": NTF_SELF,
        "state": NUD_PERMANENT | NUD_NOARP,
    }


def fdb_append(ipr: Any, index: int, mac: str, dst: str) -> None:
    """Append a remote to MAC (how several all-zeros flood entries coexist)."""
    _tolerate({errno.EEXIST}, lambda: ipr.fdb("append", **_fdb_spec(index, mac, dst)))


def fdb_replace(ipr: Any, index: int, mac: str, dst: str) -> None:
    """Point unicast MAC at `dst`, whatever it pointed at before."""
    ipr.fdb("replace", **_fdb_spec(index, mac, dst))


def fdb_delete(ipr: Any, index: int, mac: str, dst: str) -> None:
    _tolerate(NOT_FOUND, lambda: ipr.fdb("del", **_fdb_spec(index, mac, dst)))


# ------------------------------------------------------------ addresses, routes


async def adump_addresses(ipr: Any) -> list[tuple[int, str]]:
    """(ifindex, "ip/prefixlen") of every IPv4 address in the namespace."""
    return [
        (int(m["index"]), f"{m.get('IFA_ADDRESS')}/{m['prefixlen']}")
        async for m in await ipr.asyncore.addr("dump", family=socket.AF_INET)
    ]


def _split(cidr: str) -> tuple[str, int]:
    iface = ipaddress.ip_interface(cidr)
    return str(iface.ip), int(iface.network.prefixlen)


def add_address(ipr: Any, index: int, cidr: str) -> None:
    ip, plen = _split(cidr)
    _tolerate({errno.EEXIST}, lambda: ipr.addr("add", index=index, address=ip, prefixlen=plen))


def delete_address(ipr: Any, index: int, cidr: str) -> None:
    ip, plen = _split(cidr)
    _tolerate(NOT_FOUND, lambda: ipr.addr("del", index=index, address=ip, prefixlen=plen))


async def adump_routes(ipr: Any) -> list[tuple[int, str, str]]:
    """(oif, destination CIDR, gateway) of main-table IPv4 routes the agent installed."""
    out = []
    async for m in await ipr.asyncore.route("dump", family=socket.AF_INET):
        if m.get("proto") != ROUTE_PROTO or m.get("RTA_TABLE", m.get("table")) != RT_TABLE_MAIN:
            continue
        dst = f"{m.get('RTA_DST') or '0.0.0.0'}/{m['dst_len']}"
        gateway = m.get("RTA_GATEWAY")
        oif = m.get("RTA_OIF")
        if gateway is not None and oif is not None:
            out.append((int(oif), dst, str(gateway)))
    return out


def _route_spec(index: int, destination: str, gateway: str) -> dict[str, Any]:
    net = ipaddress.ip_network(destination, strict=False)
    spec: dict[str, Any] = {
        "dst_len": net.prefixlen,
        "gateway": gateway,
        "oif": index,
        "proto": ROUTE_PROTO,
        "table": RT_TABLE_MAIN,
    }
    if net.prefixlen:
        spec["dst"] = str(net.network_address)
    return spec


def add_route(ipr: Any, index: int, destination: str, gateway: str) -> None:
    _tolerate({errno.EEXIST}, lambda: ipr.route("add", **_route_spec(index, destination, gateway)))


def delete_route(ipr: Any, index: int, destination: str, gateway: str) -> None:
    _tolerate(NOT_FOUND, lambda: ipr.route("del", **_route_spec(index, destination, gateway)))


def dump_addresses(ipr: Any) -> list[tuple[int, str]]:
    """(ifindex, "ip/prefixlen") of every IPv4 address in the namespace."""
    return [
        (int(m["index"]), f"{m.get('IFA_ADDRESS')}/{m['prefixlen']}")
        for m in ipr.addr("dump", family=socket.AF_INET)
    ]


def dump_routes(ipr: Any) -> list[tuple[int, str, str]]:
    """(oif, destination CIDR, gateway) of main-table IPv4 routes the agent installed."""
    out = []
    for m in ipr.route("dump", family=socket.AF_INET):
        if m.get("proto") != ROUTE_PROTO or m.get("RTA_TABLE", m.get("table")) != RT_TABLE_MAIN:
            continue
        gateway, oif = m.get("RTA_GATEWAY"), m.get("RTA_OIF")
        if gateway is not None and oif is not None:
            out.append((int(oif), f"{m.get('RTA_DST') or '0.0.0.0'}/{m['dst_len']}", str(gateway)))
    return out
