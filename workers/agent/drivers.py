"""Thin kernel drivers: one function per kernel operation, over pyroute2.

Each function does one netlink request (or one namespace syscall) and treats "already
there" (EEXIST) on create and "already gone" (ENOENT and its netlink cousins ENODEV,
ESRCH, EADDRNOTAVAIL) on delete as success, so every op can be replayed. No shell is
ever involved; names go to the kernel as netlink attributes or path components that
names.py has validated.

Sockets are what costs (DESIGN §4: a new netlink socket per call dominates a naive
build), so `Netlink` keeps one IPRoute per namespace open, all on one shared asyncio
loop, and creates them without pyroute2's fork-per-socket: a short-lived thread
setns()es into the namespace, opens the netlink socket there and hands back the fd (a
socket stays bound to the namespace it was created in; the thread dies, so no thread of
the process is ever left in a foreign namespace). Namespaces are created the same way
(unshare in a throwaway thread + bind mount, what `ip netns add` does). Measured here:
≈0.7 ms per socket and ≈1.8 ms per namespace, against ≈11 ms each with pyroute2's forked
helper. A cached handle is checked against the inode of /run/netns/NAME on every use,
so a namespace deleted and recreated behind our back is never written through a stale
socket, and `prune()` closes the sockets of namespaces no longer needed: an open socket
pins its namespace, veths and all. Sockets subscribe to no multicast groups (a busy
host would otherwise flood every one of them with events) and ask for extended acks,
so errors carry the kernel's own explanation.

pyroute2's sync IPRoute is bound to the thread that made it: a `Netlink` must be used
from one thread only (the Agent runs all kernel I/O on its own worker thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import ipaddress
import os
import socket
import threading
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

NETNS_DIR = "/run/netns"
ROUTE_PROTO = 146  # rtm_protocol of routes the agent installs (unassigned in rt_protos)
RT_TABLE_MAIN = 254
NTF_SELF = 0x02
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
IFF_UP = 0x1
_CLONE_NEWNET = 0x40000000
_MS_REC, _MS_BIND, _MS_SHARED = 0x4000, 0x1000, 1 << 20
_MNT_DETACH = 2
_NETLINK_ROUTE = 0

_libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")

NOT_FOUND = frozenset({errno.ENOENT, errno.ENODEV, errno.ESRCH, errno.EADDRNOTAVAIL})


class DriverError(Exception):
    """A kernel operation failed; `errno` is the kernel's code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.errno = code


class NetnsMissing(DriverError):
    def __init__(self, name: str) -> None:
        super().__init__(errno.ENOENT, f"network namespace {name} does not exist")
        self.name = name


def describe(exc: BaseException) -> str:
    """A one-line, operator-readable reason: errno name plus the kernel's message
    (its extended ack when it sent one, e.g. "Nexthop has invalid gateway")."""
    code = getattr(exc, "errno", None)
    if isinstance(exc, NetlinkError):
        code = int(exc.code)
        message = exc.args[1] if len(exc.args) > 1 and exc.args[1] else os.strerror(code)
        return f"{errno.errorcode.get(code, code)}: {message}"
    if isinstance(exc, DriverError):
        return f"{errno.errorcode.get(exc.errno, exc.errno)}: {exc}"
    if isinstance(code, int):
        return f"{errno.errorcode.get(code, code)}: {os.strerror(code)}"
    return f"{type(exc).__name__}: {exc}"


def _code(exc: NetlinkError) -> int:
    return int(exc.code)


def _tolerate(codes: Iterable[int], call: Callable[[], T]) -> T | None:
    try:
        return call()
    except NetlinkError as exc:
        if _code(exc) in set(codes):
            return None
        raise


# ------------------------------------------------------------------ namespaces


def _in_thread(fn: Callable[[], T]) -> T:
    """Run fn on a throwaway thread: setns/unshare there never leaks into ours."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, name="vpcd-netns")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _check(rc: int, what: str) -> None:
    if rc != 0:
        code = ctypes.get_errno()
        raise DriverError(code, f"{what}: {os.strerror(code)}")


def netns_path(name: str) -> str:
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"invalid netns name {name!r}")
    return os.path.join(NETNS_DIR, name)


def list_netns() -> frozenset[str]:
    try:
        return frozenset(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return frozenset()


def netns_exists(name: str) -> bool:
    return os.path.exists(netns_path(name))


_shared_done = False


def _share_netns_dir() -> None:
    """Make /run/netns a shared mount, as `ip netns add` does, so mounts propagate."""
    global _shared_done
    if _shared_done:
        return
    os.makedirs(NETNS_DIR, exist_ok=True)
    if _libc.mount(b"", NETNS_DIR.encode(), b"none", _MS_SHARED | _MS_REC, None) != 0:
        d = NETNS_DIR.encode()
        _check(_libc.mount(d, d, b"none", _MS_BIND | _MS_REC, None), "bind /run/netns")
        _check(_libc.mount(b"", d, b"none", _MS_SHARED | _MS_REC, None), "share /run/netns")
    _shared_done = True


def create_netns(name: str) -> int:
    """Create /run/netns/NAME; returns the fd of a netlink socket inside it.

    EEXIST is success: the existing namespace is opened instead.
    """
    path = netns_path(name)
    _share_netns_dir()

    def make() -> int:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0)
        except FileExistsError:
            return _enter_and_open(path)
        os.close(fd)
        try:
            _check(_libc.unshare(_CLONE_NEWNET), "unshare")
            src = f"/proc/self/task/{threading.get_native_id()}/ns/net".encode()
            _check(_libc.mount(src, path.encode(), b"none", _MS_BIND, None), "mount netns")
        except BaseException:
            os.unlink(path)
            raise
        return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_ROUTE).detach()

    return _in_thread(make)


def delete_netns(name: str) -> None:
    """Unmount and unlink /run/netns/NAME; the kernel tears the namespace down lazily."""
    path = netns_path(name)
    if _libc.umount2(path.encode(), _MNT_DETACH) != 0:
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOENT):  # EINVAL: not a mount point
            raise DriverError(code, f"umount {path}: {os.strerror(code)}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _enter_and_open(path: str) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        _check(_libc.setns(fd, _CLONE_NEWNET), f"setns {path}")
    finally:
        os.close(fd)
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_ROUTE).detach()


def _identity(name: str | None) -> tuple[int, int]:
    path = "/proc/thread-self/ns/net" if name is None else netns_path(name)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise NetnsMissing(str(name)) from None
    return (st.st_dev, st.st_ino)


@dataclass
class _Handle:
    ipr: Any
    identity: tuple[int, int]


class Netlink:
    """One open IPRoute per namespace (None = the process's own), reused across syncs."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._handles: dict[str | None, _Handle] = {}
        self.sockets_opened = 0  # for benchmarks: each one is a cost worth counting

    def _wrap(self, fd: int) -> Any:
        ipr = IPRoute(fileno=fd, groups=0, ext_ack=True, use_event_loop=self._loop)
        self.sockets_opened += 1
        return ipr

    def handle(self, name: str | None) -> Any:
        """The IPRoute of namespace `name`; NetnsMissing if it does not exist."""
        try:
            identity = _identity(name)
        except NetnsMissing:
            self.forget(name)  # our socket must not keep a deleted namespace alive
            raise
        cached = self._handles.get(name)
        if cached is not None and cached.identity == identity:
            return cached.ipr
        if cached is not None:
            self.forget(name)
        if name is None:
            fd = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_ROUTE).detach()
        else:
            fd = _in_thread(lambda: _enter_and_open(netns_path(name)))
        ipr = self._wrap(fd)
        if _identity(name) != identity:  # replaced while we opened it: try again
            ipr.close()
            return self.handle(name)
        self._handles[name] = _Handle(ipr, identity)
        return ipr

    def create_netns(self, name: str) -> Any:
        """Create the namespace (EEXIST is fine), bring its lo up, cache its handle."""
        self.forget(name)
        ipr = self._wrap(create_netns(name))
        self._handles[name] = _Handle(ipr, _identity(name))
        set_link(ipr, 1, up=True)  # lo is always ifindex 1
        return ipr

    def delete_netns(self, name: str) -> None:
        """Close our socket first: an open socket would keep the namespace alive."""
        self.forget(name)
        delete_netns(name)

    def prune(self, keep: Iterable[str | None]) -> None:
        """Close sockets of namespaces we no longer need or that were replaced.

        An open socket pins its namespace: without this, a namespace a user deleted
        (or one a port has left) would live on, veths and all, for as long as we run.
        """
        wanted = set(keep)
        for name, cached in list(self._handles.items()):
            try:
                current = _identity(name)
            except NetnsMissing:
                current = None
            if name not in wanted or current != cached.identity:
                self.forget(name)

    def forget(self, name: str | None) -> None:
        cached = self._handles.pop(name, None)
        if cached is not None:
            cached.ipr.close()
            self._drain()

    def _drain(self) -> None:
        # Closing a transport on the shared loop is only scheduled; let it run.
        if not self._loop.is_closed():
            self._loop.run_until_complete(asyncio.sleep(0))

    def gather(self, coros: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
        """Run reads against many namespaces concurrently on the shared loop.

        Each request is still one netlink round trip, but the loop is entered once
        instead of once per request, and the kernel works while Python parses: about
        2.5x faster than the same reads one by one.
        """

        async def run() -> list[T]:
            return list(await asyncio.gather(*coros))

        return self._loop.run_until_complete(run())

    def cached(self) -> list[str | None]:
        return list(self._handles)

    def close(self) -> None:
        for name in list(self._handles):
            self.forget(name)
        if not self._loop.is_closed():
            self._drain()
            self._loop.close()


# ----------------------------------------------------------------------- links


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


def create_veth(
    ipr: Any,
    name: str,
    *,
    master: int,
    mtu: int,
    peer_name: str,
    peer_mac: str,
    peer_netns_fd: int,
) -> None:
    """Host end on `master`, up; the peer is created directly in the target netns.

    EEXIST is success only when it is our host end that exists; if it is the peer's
    name that is taken in the workload namespace, that is a real error.
    """
    try:
        ipr.link(
            "add",
            ifname=name,
            kind="veth",
            mtu=mtu,
            master=master,
            state="up",
            peer={
                "ifname": peer_name,
                "address": peer_mac,
                "mtu": mtu,
                "net_ns_fd": peer_netns_fd,
            },
        )
    except NetlinkError as exc:
        if _code(exc) != errno.EEXIST:
            raise
        if get_link(ipr, name) is None:
            raise DriverError(
                errno.EEXIST, f"interface {peer_name} already exists in the workload netns"
            ) from exc


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


def open_netns_fd(name: str) -> int:
    try:
        return os.open(netns_path(name), os.O_RDONLY)
    except FileNotFoundError:
        raise NetnsMissing(name) from None
