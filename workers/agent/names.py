"""Kernel object names the agent makes, derived from resource ids (DESIGN §4).

Every host-side object is `vp` + a one-letter kind + 12 hex digits = 15 characters, the
IFNAMSIZ limit. The fixed prefix is the ownership rule: the agent touches a link only if
its name matches `OWNED_LINK_RE`, so it never flushes what others made. The 12 hex
digits are a hash of the id (BLAKE2b, 48 bits): uniform whatever the id scheme (ids
that share a prefix, such as time-ordered UUIDs, still get distinct names); plan()
still refuses, rather than merges, the rare two ids that hash alike on one host.

The one user-chosen name that reaches the kernel is a port's `netns`; it is re-checked
here against the API's pattern (the agent trusts nothing it did not derive itself) and
only ever passed as an argument, never through a shell.
"""

from __future__ import annotations

import functools
import hashlib
import re

IFNAMSIZ = 15  # usable characters in a Linux interface name
PREFIX = "vp"
BRIDGE = "b"
VXLAN = "x"
PORT = "t"
LEG = "d"  # a DHCP/DNS service's leg (host end); not in OWNED_LINK_RE: L2 and ports ignore it
SERVICE_NETNS = "vpcd-dhcp-"  # + token: a subnet's DHCP/DNS namespace, after the netns prefix
SERVICE_IFNAME = "svc0"  # the leg's end inside that namespace
_TOKEN_LEN = IFNAMSIZ - len(PREFIX) - 1

OWNED_LINK_RE = re.compile(rf"^{PREFIX}[{BRIDGE}{VXLAN}{PORT}][0-9a-f]{{{_TOKEN_LEN}}}\Z")
# The same patterns the API enforces (api/netcheck.py); repeated because the agent
# never imports api.
NETNS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}\Z")
IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}\Z")
# A netns prefix is a host name plus "-" in the sandbox, "" in production.
NETNS_PREFIX_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,62})?\Z")


@functools.lru_cache(maxsize=1 << 16)
def _token(resource_id: str) -> str:
    return hashlib.blake2b(resource_id.encode(), digest_size=8).hexdigest()[:_TOKEN_LEN]


def bridge_name(subnet_id: str) -> str:
    return f"{PREFIX}{BRIDGE}{_token(subnet_id)}"


def vxlan_name(subnet_id: str) -> str:
    return f"{PREFIX}{VXLAN}{_token(subnet_id)}"


def host_veth_name(port_id: str) -> str:
    return f"{PREFIX}{PORT}{_token(port_id)}"


def service_token(subnet_id: str) -> str:
    return _token(subnet_id)


def leg_name(subnet_id: str) -> str:
    return f"{PREFIX}{LEG}{_token(subnet_id)}"


def leg_name_of_token(token: str) -> str:
    return f"{PREFIX}{LEG}{token}"


def service_netns(prefix: str, token: str) -> str:
    """The namespace of a subnet's DHCP/DNS service, from its token (never user input)."""
    return f"{check_netns_prefix(prefix)}{SERVICE_NETNS}{token}"


def service_token_of_netns(prefix: str, netns: str) -> str | None:
    """The token of one of our service namespaces, else None."""
    head = prefix + SERVICE_NETNS
    if not netns.startswith(head):
        return None
    token = netns[len(head) :]
    return token if re.fullmatch(rf"[0-9a-f]{{{_TOKEN_LEN}}}", token) else None


def is_service_token(token: str) -> bool:
    return re.fullmatch(rf"[0-9a-f]{{{_TOKEN_LEN}}}", token) is not None


def is_owned_link(name: str) -> bool:
    return OWNED_LINK_RE.match(name) is not None


def link_kind(name: str) -> str | None:
    """'bridge', 'vxlan' or 'veth' for a name the agent owns, else None."""
    if not is_owned_link(name):
        return None
    return {BRIDGE: "bridge", VXLAN: "vxlan", PORT: "veth"}[name[len(PREFIX)]]


def check_netns_prefix(prefix: str) -> str:
    if NETNS_PREFIX_RE.match(prefix) is None:
        raise ValueError(f"invalid netns prefix {prefix!r}")
    return prefix


@functools.lru_cache(maxsize=1 << 16)
def workload_netns(prefix: str, netns: str) -> str:
    """The namespace a port's workload end lives in: prefix + the user's `netns`."""
    if NETNS_RE.match(netns) is None:
        raise ValueError(f"invalid netns name {netns!r} (pattern {NETNS_RE.pattern})")
    return check_netns_prefix(prefix) + netns


def check_ifname(name: str) -> str:
    if IFNAME_RE.match(name) is None:
        raise ValueError(f"invalid interface name {name!r} (pattern {IFNAME_RE.pattern})")
    return name


LB_NETNS = "lb-"  # + the load balancer's id: the namespace its VIP and haproxy live in
LB_VIP_IFNAME = "vip0"


def lb_netns(lb_id: str) -> str:
    """A load balancer's namespace (before the host's netns prefix)."""
    return f"{LB_NETNS}{lb_id}"


def lb_daemon(lb_id: str) -> str:
    """The name of a load balancer's haproxy under the agent's pid files."""
    return f"haproxy-{lb_id}"


def lb_token(lb_id: str) -> str:
    """A short file name for the load balancer's sockets (a unix path is ≤ 107 bytes)."""
    return _token(lb_id)
