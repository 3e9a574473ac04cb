"""rtnetlink without pyroute2 for the per-namespace hot path: one plain socket, one
request, a minimal parse.

Observation is what a warm resync costs: at 1000 workload namespaces it is three
dumps each (links, addresses, routes) plus one dump of the host's 2000 links.
pyroute2 decodes every attribute of every message into dicts (≈0.25 ms a message
here); these functions read only the handful of fields observe() compares, with
`struct`, straight from the socket buffer: about ten times cheaper. The writes a workload namespace
needs (link up/MTU/MAC, addresses, routes) are here too, so those namespaces never
need a pyroute2 IPRoute at all; errors come back as pyroute2's NetlinkError with the
kernel's extended-ack message, exactly as from links.py. Host-side writes (bridges,
VXLANs, veths, FDB) stay on pyroute2 in links.py.

Each function sends one request on a blocking NETLINK_ROUTE socket used for nothing
else and reads to its end (NLMSG_DONE or the ack), so the socket is idle on return.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from pyroute2.netlink.exceptions import NetlinkError

from workers.agent.drivers.base import (
    NOT_FOUND,
    NTF_SELF,
    ROUTE_PROTO,
    RT_TABLE_MAIN,
    DriverError,
)

_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_RTM_GETLINK, _RTM_NEWLINK = 18, 16
_RTM_GETADDR, _RTM_NEWADDR = 22, 20
_RTM_GETROUTE, _RTM_NEWROUTE = 26, 24
_RTM_DELLINK, _RTM_DELADDR, _RTM_DELROUTE = 17, 21, 25
_RTM_GETNEIGH, _RTM_NEWNEIGH = 30, 28
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_DUMP = 0x1, 0x4, 0x300
_CREATE_EXCL = 0x400 | 0x200  # NLM_F_CREATE | NLM_F_EXCL
_NLM_F_ACK_TLVS = 0x200  # in an error reply: extended-ack attributes follow
_NLMSGERR_ATTR_MSG = 1
_SOL_NETLINK, _NETLINK_CAP_ACK, _NETLINK_EXT_ACK = 270, 10, 11
_IFA_LOCAL = 2
_NDA_DST, _NDA_LLADDR = 1, 2
_IFLA_ADDRESS, _IFLA_IFNAME, _IFLA_MTU, _IFLA_LINK, _IFLA_MASTER = 1, 3, 4, 5, 10
_IFLA_LINKINFO, _IFLA_INFO_KIND, _IFLA_EXT_MASK = 18, 1, 29
_RTEXT_FILTER_SKIP_STATS = 1 << 3  # observation compares no counters: the kernel skips them
_IFA_ADDRESS = 1
_RTA_DST, _RTA_OIF, _RTA_GATEWAY, _RTA_TABLE = 1, 4, 5, 15
_HDR = struct.Struct("=IHHII")
_BUFSIZE = 1 << 20
_seq = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Link:
    """The fields of an RTM_NEWLINK that observation reads."""

    index: int
    name: str
    flags: int
    mtu: int
    kind: str | None
    master: int | None
    link: int | None  # a veth's peer ifindex (in the peer's namespace)
    address: str | None


def open_socket() -> socket.socket:
    """A blocking NETLINK_ROUTE socket in the calling thread's namespace, asking for
    extended acks (the kernel's reason with an error) without our request echoed."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    sock.setsockopt(_SOL_NETLINK, _NETLINK_EXT_ACK, 1)
    sock.setsockopt(_SOL_NETLINK, _NETLINK_CAP_ACK, 1)
    return sock


def _attrs(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type, payload start, payload end) of each attribute in buf[start:end]."""
    while start + 4 <= end:
        length, kind = struct.unpack_from("=HH", buf, start)
        if length < 4:
            return
        yield kind & 0x3FFF, start + 4, start + length
        start += (length + 3) & ~3


def _dump(
    sock: socket.socket, msgtype: int, body: bytes, reply: int, *, dump: bool = True
) -> Iterator[tuple[bytes, int, int]]:
    """Send one request (a dump unless `dump=False`); yield (buffer, payload start,
    message end) per reply. A get's "no such object" ends it with no reply."""
    seq = next(_seq)
    flags = _NLM_F_REQUEST | (_NLM_F_DUMP if dump else 0)
    sock.send(_HDR.pack(_HDR.size + len(body), msgtype, flags, seq, 0) + body)
    while True:
        buf = sock.recv(_BUFSIZE)
        offset = 0
        while offset + _HDR.size <= len(buf):
            length, kind, _flags, mseq, _pid = _HDR.unpack_from(buf, offset)
            if length < _HDR.size:
                return
            if mseq == seq:
                if kind == _NLMSG_DONE:
                    return
                if kind == _NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", buf, offset + _HDR.size)
                    if code and (dump or -code not in NOT_FOUND):
                        raise DriverError(-code, f"netlink read: {os.strerror(-code)}")
                    return
                if kind == reply:
                    yield buf, offset + _HDR.size, offset + length
                    if not dump:
                        return
            offset += (length + 3) & ~3


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def dump_links(sock: socket.socket) -> list[Link]:
    """Every link of the socket's namespace, without statistics."""
    return _links(sock, 0, None)


def get_link(sock: socket.socket, name: str | None = None, index: int = 0) -> Link | None:
    """One link by name or index; None when there is no such link."""
    found = _links(sock, index, name)
    return found[0] if found else None


def _links(sock: socket.socket, index: int, name: str | None) -> list[Link]:
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, 0, 0)
    body += struct.pack("=HHI", 8, _IFLA_EXT_MASK, _RTEXT_FILTER_SKIP_STATS)
    if name is not None:
        raw = name.encode() + b"\0"
        body += struct.pack("=HH", 4 + len(raw), _IFLA_IFNAME) + raw + b"\0" * (-len(raw) % 4)
    dump = not index and name is None
    return [
        _link(buf, a, b) for buf, a, b in _dump(sock, _RTM_GETLINK, body, _RTM_NEWLINK, dump=dump)
    ]


def _link(buf: bytes, start: int, end: int) -> Link:
    _family, _type, index, flags, _change = struct.unpack_from("=BxHiII", buf, start)
    name, mtu, kind, master, link, address = "", 0, None, None, None, None
    for t, a, b in _attrs(buf, start + 16, end):
        if t == _IFLA_IFNAME:
            name = buf[a:b].split(b"\0", 1)[0].decode()
        elif t == _IFLA_MTU:
            (mtu,) = struct.unpack_from("=I", buf, a)
        elif t == _IFLA_MASTER:
            (master,) = struct.unpack_from("=I", buf, a)
        elif t == _IFLA_LINK:
            (link,) = struct.unpack_from("=I", buf, a)
        elif t == _IFLA_ADDRESS:
            address = _mac(buf[a:b])
        elif t == _IFLA_LINKINFO:
            for t2, a2, b2 in _attrs(buf, a, b):
                if t2 == _IFLA_INFO_KIND:
                    kind = buf[a2:b2].split(b"\0", 1)[0].decode()
    return Link(index, name, flags, mtu, kind, master or None, link, address)


def dump_addresses(sock: socket.socket) -> list[tuple[int, str]]:
    """(ifindex, "ip/prefixlen") of every IPv4 address in the socket's namespace."""
    body = struct.pack("=BBBBI", socket.AF_INET, 0, 0, 0, 0)
    out = []
    for buf, start, end in _dump(sock, _RTM_GETADDR, body, _RTM_NEWADDR):
        family, prefixlen, _flags, _scope, index = struct.unpack_from("=BBBBI", buf, start)
        if family != socket.AF_INET:
            continue
        for t, a, b in _attrs(buf, start + 8, end):
            if t == _IFA_ADDRESS:
                out.append((index, f"{socket.inet_ntoa(buf[a:b])}/{prefixlen}"))
    return out


def dump_routes(sock: socket.socket) -> list[tuple[int, str, str]]:
    """(oif, destination CIDR, gateway) of main-table IPv4 routes the agent installed."""
    body = struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
    out = []
    for buf, start, end in _dump(sock, _RTM_GETROUTE, body, _RTM_NEWROUTE):
        family, dst_len, _src, _tos, table, proto = struct.unpack_from("=BBBBBB", buf, start)
        if family != socket.AF_INET or proto != ROUTE_PROTO:
            continue
        dst, oif, gateway = "0.0.0.0", None, None
        for t, a, b in _attrs(buf, start + 12, end):
            if t == _RTA_DST:
                dst = socket.inet_ntoa(buf[a:b])
            elif t == _RTA_OIF:
                (oif,) = struct.unpack_from("=I", buf, a)
            elif t == _RTA_GATEWAY:
                gateway = socket.inet_ntoa(buf[a:b])
            elif t == _RTA_TABLE:
                (table,) = struct.unpack_from("=I", buf, a)
        if table == RT_TABLE_MAIN and gateway is not None and oif is not None:
            out.append((oif, f"{dst}/{dst_len}", gateway))
    return out


def dump_fdb(sock: socket.socket, index: int) -> list[tuple[str, str]]:
    """(mac, dst) of the self entries with a remote on VXLAN device `index`; the kernel
    filters by device (an ifinfomsg header naming it, as `bridge fdb show dev` sends)."""
    body = struct.pack("=BxHiII", socket.AF_BRIDGE, 0, index, 0, 0)
    out = []
    for buf, start, end in _dump(sock, _RTM_GETNEIGH, body, _RTM_NEWNEIGH):
        family, ifindex, _state, flags = struct.unpack_from("=BxxxiHB", buf, start)
        if family != socket.AF_BRIDGE or ifindex != index or not flags & NTF_SELF:
            continue
        mac, dst = None, None
        for t, a, b in _attrs(buf, start + 12, end):
            if t == _NDA_LLADDR:
                mac = _mac(buf[a:b])
            elif t == _NDA_DST and b - a == 4:
                dst = socket.inet_ntoa(buf[a:b])
        if mac is not None and dst is not None:
            out.append((mac, dst))
    return out


def _request(sock: socket.socket, msgtype: int, flags: int, body: bytes) -> None:
    """Send one write and wait for its ack; a kernel error is raised as pyroute2's
    NetlinkError (code and extended-ack message), so `_tolerate` and `describe` treat
    it as they treat every other driver's."""
    seq = next(_seq)
    flags |= _NLM_F_REQUEST | _NLM_F_ACK
    sock.send(_HDR.pack(_HDR.size + len(body), msgtype, flags, seq, 0) + body)
    while True:
        buf = sock.recv(_BUFSIZE)
        offset = 0
        while offset + _HDR.size <= len(buf):
            length, kind, mflags, mseq, _pid = _HDR.unpack_from(buf, offset)
            if length < _HDR.size:
                break
            if mseq == seq and kind == _NLMSG_ERROR:
                (code,) = struct.unpack_from("=i", buf, offset + _HDR.size)
                if not code:
                    return
                message = ""
                if mflags & _NLM_F_ACK_TLVS:  # capped ack: our header, then TLVs
                    tlvs = offset + _HDR.size + 4 + _HDR.size
                    for t, a, b in _attrs(buf, tlvs, offset + length):
                        if t == _NLMSGERR_ATTR_MSG:
                            message = buf[a:b].split(b"\0", 1)[0].decode(errors="replace")
                raise NetlinkError(-code, message or os.strerror(-code))
            offset += (length + 3) & ~3


def link_index(sock: socket.socket, name: str) -> int:
    link = get_link(sock, name)
    if link is None:
        raise DriverError(errno.ENODEV, f"no link named {name}")
    return link.index
