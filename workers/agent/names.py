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
ROUTER_HOST_LEG = "l"  # host end of a router leg, on the subnet's bridge
GATEWAY = "g"  # host end of a router's gateway leg, on the external network's bridge
EXTERNAL = "e"  # an external network's bridge, enslaving the host's external interface
ROUTER = "r"  # a router's namespace (prefix + this name)
ROUTER_LEG = "i"  # the router-side end of a leg, inside the router namespace
ROUTER_GATEWAY = "o"  # the router-side end of the gateway leg
LEG = "d"  # a DHCP/DNS service's leg (host end); not in OWNED_LINK_RE: L2 and ports ignore it
SERVICE_NETNS = "vpcd-dhcp-"  # + token: a subnet's DHCP/DNS namespace, after the netns prefix
SERVICE_IFNAME = "svc0"  # the leg's end inside that namespace
_TOKEN_LEN = IFNAMSIZ - len(PREFIX) - 1

OWNED_LINK_RE = re.compile(
    rf"^{PREFIX}[{BRIDGE}{VXLAN}{PORT}{ROUTER_HOST_LEG}{GATEWAY}{EXTERNAL}][0-9a-f]{{{_TOKEN_LEN}}}\Z"
)
ROUTER_NETNS_RE = re.compile(rf"{PREFIX}{ROUTER}[0-9a-f]{{{_TOKEN_LEN}}}\Z")
# The same patterns the API enforces (api/netcheck.py); repeated because the agent
# never imports api.
NETNS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}\Z")
IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}\Z")
# A netns prefix is a host name plus "-" in the sandbox, "" in production.
NETNS_PREFIX_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,62})?\Z")


@functools.lru_cache(maxsize=1 << 16)
def _token(resource_id: str) -> str:
    return hashlib.blake2b(resource_id.encode(), digest_size=8).hexdigest()[:_TOKEN_LEN]


def _name(kind: str, resource_id: str) -> str:
    return f"{PREFIX}{kind}{_token(resource_id)}"


def bridge_name(subnet_id: str) -> str:
    return _name(BRIDGE, subnet_id)


def vxlan_name(subnet_id: str) -> str:
    return _name(VXLAN, subnet_id)


def host_veth_name(port_id: str) -> str:
    return _name(PORT, port_id)


def router_host_leg_name(port_id: str) -> str:
    """Host end of a router leg (the leg is the interface port's); distinct from a DHCP/DNS
    service's leg (`leg_name`), which L2 and ports ignore."""
    return _name(ROUTER_HOST_LEG, port_id)


def router_leg_name(port_id: str) -> str:
    return _name(ROUTER_LEG, port_id)


def gateway_name(router_id: str) -> str:
    return _name(GATEWAY, router_id)


def router_gateway_name(router_id: str) -> str:
    return _name(ROUTER_GATEWAY, router_id)


def external_bridge_name(external_network_id: str) -> str:
    return _name(EXTERNAL, external_network_id)


def router_netns(prefix: str, router_id: str) -> str:
    """A router's namespace: the host's netns prefix + `vpr` + the id's token."""
    return check_netns_prefix(prefix) + _name(ROUTER, router_id)


def is_router_netns(prefix: str, name: str) -> bool:
    return name.startswith(prefix) and ROUTER_NETNS_RE.match(name[len(prefix) :]) is not None


def link_role(name: str) -> str | None:
    """'subnet', 'port', 'leg', 'gateway' or 'external' for a host link we own."""
    if not is_owned_link(name):
        return None
    return {
        BRIDGE: "subnet",
        VXLAN: "subnet",
        PORT: "port",
        ROUTER_HOST_LEG: "leg",
        GATEWAY: "gateway",
        EXTERNAL: "external",
    }[name[len(PREFIX)]]


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
    kinds = {
        BRIDGE: "bridge",
        VXLAN: "vxlan",
        PORT: "veth",
        ROUTER_HOST_LEG: "veth",
        GATEWAY: "veth",
    }
    return kinds.get(name[len(PREFIX)], "bridge")


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
