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

Userspace tools (iptables-save/-restore, ipset, conntrack) and per-netns daemons have
their own modules (`iptables`, `ipset`, `conntrack`, `processes`), reached as
`drivers.iptables.restore(...)` and so on; they run argv lists, never a shell.

pyroute2's sync IPRoute is bound to the thread that made it: a `Netlink` must be used
from one thread only (the Agent runs all kernel I/O on its own worker thread).
"""

from workers.agent.drivers import (
    conntrack,
    ebtables,
    files,
    garp,
    haproxy,
    ipset,
    iptables,
    processes,
    rawnl,
    rawwrite,
    sysctl,
)
from workers.agent.drivers.base import (
    IFF_UP,
    NETNS_DIR,
    NOT_FOUND,
    NTF_SELF,
    NUD_NOARP,
    NUD_PERMANENT,
    ROUTE_PROTO,
    RT_TABLE_MAIN,
    DriverError,
    NetnsMissing,
    describe,
)
from workers.agent.drivers.icmp import icmp_probe
from workers.agent.drivers.links import (
    add_address,
    add_route,
    adump_addresses,
    adump_routes,
    aget_link,
    create_bridge,
    create_vxlan,
    delete_address,
    delete_link,
    delete_route,
    dump_addresses,
    dump_fdb,
    dump_links,
    dump_routes,
    fdb_append,
    fdb_delete,
    fdb_replace,
    get_link,
    link_index,
    set_link,
)
from workers.agent.drivers.netlink import Netlink
from workers.agent.drivers.netns import (
    create_netns,
    delete_netns,
    list_netns,
    netns_exists,
    netns_path,
    open_netns_fd,
    udp_probe,
)

__all__ = [
    "IFF_UP",
    "NETNS_DIR",
    "NOT_FOUND",
    "NTF_SELF",
    "NUD_NOARP",
    "NUD_PERMANENT",
    "ROUTE_PROTO",
    "RT_TABLE_MAIN",
    "DriverError",
    "Netlink",
    "NetnsMissing",
    "add_address",
    "add_route",
    "adump_addresses",
    "adump_routes",
    "aget_link",
    "conntrack",
    "create_bridge",
    "create_netns",
    "create_vxlan",
    "delete_address",
    "delete_link",
    "delete_netns",
    "delete_route",
    "describe",
    "dump_addresses",
    "dump_fdb",
    "dump_links",
    "dump_routes",
    "ebtables",
    "fdb_append",
    "fdb_delete",
    "fdb_replace",
    "files",
    "garp",
    "get_link",
    "haproxy",
    "icmp_probe",
    "ipset",
    "iptables",
    "link_index",
    "list_netns",
    "netns_exists",
    "netns_path",
    "open_netns_fd",
    "processes",
    "rawnl",
    "rawwrite",
    "set_link",
    "sysctl",
    "udp_probe",
]
