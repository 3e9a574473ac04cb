"""Writes in a namespace over raw rtnetlink (see rawnl): veths, link state, addresses,
routes and link deletion, each one request and its ack. Errors are pyroute2's
NetlinkError with the kernel's extended-ack message, so `_tolerate` and `describe`
treat them as they treat links.py's; create/delete keep the same "already there" /
"already gone" tolerance.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct

from pyroute2.netlink.exceptions import NetlinkError

from workers.agent.drivers.base import (
    IFF_UP,
    NOT_FOUND,
    ROUTE_PROTO,
    RT_TABLE_MAIN,
    DriverError,
    _code,
    _tolerate,
)
from workers.agent.drivers.rawnl import (
    _CREATE_EXCL,
    _IFA_ADDRESS,
    _IFA_LOCAL,
    _IFLA_ADDRESS,
    _IFLA_IFNAME,
    _IFLA_INFO_KIND,
    _IFLA_LINKINFO,
    _IFLA_MASTER,
    _IFLA_MTU,
    _RTA_DST,
    _RTA_GATEWAY,
    _RTA_OIF,
    _RTM_DELADDR,
    _RTM_DELLINK,
    _RTM_DELROUTE,
    _RTM_NEWADDR,
    _RTM_NEWLINK,
    _RTM_NEWROUTE,
    _request,
    get_link,
)

_IFLA_NET_NS_FD, _IFLA_INFO_DATA, _VETH_INFO_PEER = 28, 2, 1
_RT_SCOPE_UNIVERSE, _RTN_UNICAST = 0, 1
_NLA_F_NESTED = 0x8000


def _attr(kind: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


def set_link(
    sock: socket.socket,
    index: int,
    *,
    mtu: int | None = None,
    address: str | None = None,
    up: bool | None = None,
) -> None:
    body = _ifinfo(index, up)
    if mtu is not None:
        body += _attr(_IFLA_MTU, struct.pack("=I", mtu))
    if address is not None:
        body += _attr(_IFLA_ADDRESS, bytes.fromhex(address.replace(":", "")))
    _request(sock, _RTM_NEWLINK, 0, body)


def _address(index: int, cidr: str) -> bytes:
    iface = ipaddress.ip_interface(cidr)
    packed = iface.ip.packed
    body = struct.pack("=BBBBI", socket.AF_INET, iface.network.prefixlen, 0, 0, index)
    return body + _attr(_IFA_LOCAL, packed) + _attr(_IFA_ADDRESS, packed)


def add_address(sock: socket.socket, index: int, cidr: str) -> None:
    _tolerate(
        {errno.EEXIST}, lambda: _request(sock, _RTM_NEWADDR, _CREATE_EXCL, _address(index, cidr))
    )


def delete_address(sock: socket.socket, index: int, cidr: str) -> None:
    _tolerate(NOT_FOUND, lambda: _request(sock, _RTM_DELADDR, 0, _address(index, cidr)))


def _route(index: int, destination: str, gateway: str) -> bytes:
    net = ipaddress.ip_network(destination, strict=False)
    body = struct.pack(
        "=BBBBBBBBI",
        socket.AF_INET,
        net.prefixlen,
        0,
        0,
        RT_TABLE_MAIN,
        ROUTE_PROTO,
        _RT_SCOPE_UNIVERSE,
        _RTN_UNICAST,
        0,
    )
    if net.prefixlen:
        body += _attr(_RTA_DST, net.network_address.packed)
    body += _attr(_RTA_GATEWAY, ipaddress.ip_address(gateway).packed)
    return body + _attr(_RTA_OIF, struct.pack("=I", index))


def add_route(sock: socket.socket, index: int, destination: str, gateway: str) -> None:
    _tolerate(
        {errno.EEXIST},
        lambda: _request(sock, _RTM_NEWROUTE, _CREATE_EXCL, _route(index, destination, gateway)),
    )


def delete_route(sock: socket.socket, index: int, destination: str, gateway: str) -> None:
    _tolerate(
        NOT_FOUND, lambda: _request(sock, _RTM_DELROUTE, 0, _route(index, destination, gateway))
    )


def delete_link(sock: socket.socket, index: int) -> None:
    _tolerate(NOT_FOUND, lambda: _request(sock, _RTM_DELLINK, 0, _ifinfo(index)))


def _ifinfo(index: int = 0, up: bool | None = None) -> bytes:
    change = IFF_UP if up is not None else 0
    return struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, IFF_UP if up else 0, change)


def _name(name: str) -> bytes:
    return _attr(_IFLA_IFNAME, name.encode() + b"\0")


def create_veth(
    sock: socket.socket,
    name: str,
    *,
    master: int,
    mtu: int,
    peer_name: str,
    peer_mac: str | None,
    peer_netns_fd: int,
) -> None:
    """Host end on `master`, up; the peer created directly in the target netns, in one
    RTM_NEWLINK. EEXIST is success only when it is our host end that exists; if it is
    the peer's name that is taken in the workload namespace, that is a real error."""
    peer = _ifinfo() + _name(peer_name) + _attr(_IFLA_MTU, struct.pack("=I", mtu))
    peer += _attr(_IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd))
    if peer_mac is not None:  # None: the kernel picks one
        peer += _attr(_IFLA_ADDRESS, bytes.fromhex(peer_mac.replace(":", "")))
    data = _attr(_VETH_INFO_PEER | _NLA_F_NESTED, peer)
    info = _attr(_IFLA_INFO_KIND, b"veth\0") + _attr(_IFLA_INFO_DATA | _NLA_F_NESTED, data)
    body = _ifinfo(up=True) + _name(name) + _attr(_IFLA_MTU, struct.pack("=I", mtu))
    body += _attr(_IFLA_MASTER, struct.pack("=I", master))
    body += _attr(_IFLA_LINKINFO | _NLA_F_NESTED, info)
    try:
        _request(sock, _RTM_NEWLINK, _CREATE_EXCL, body)
    except NetlinkError as exc:
        if _code(exc) != errno.EEXIST:
            raise
        if get_link(sock, name) is None:
            raise DriverError(
                errno.EEXIST, f"interface {peer_name} already exists in the workload netns"
            ) from exc
