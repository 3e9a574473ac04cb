"""The resource kinds a stack file may hold: one row each, in dependency order.

A row says where the kind lives in the API, which fields the file may set (with a local
check, the kind a reference points at, whether the field can change in place, and what the
API holds when the file is silent, which is what drift is measured against) and its child
collection (a group's rules, a router's interfaces). Adding a kind (load balancers, later) is
one more row in `KINDS` at its place in the order, plus its checks: parse, plan and execute
work from this table alone.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Check = Callable[[Any], str | None]  # an error message, or None when the value is fine


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # no default: a field the file omits is not compared


@dataclass(frozen=True)
class Ref:
    """A reference by name to another resource of the stack file."""

    kind: str
    key: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.key}"


@dataclass(frozen=True)
class External:
    """An external network, by name: the operator's, referenced but never owned."""

    name: str

    def __str__(self) -> str:
        return f"external network {self.name}"


@dataclass(frozen=True)
class Field:
    key: str  # the name in the stack file
    api: str  # the name in the API
    check: Check
    ref: str | None = None  # the kind whose key the value names
    many: bool = False  # a list of references
    external: bool = False  # names an external network
    immutable: bool = False  # cannot change in place
    required: bool = False
    default: Any = UNSET


@dataclass(frozen=True)
class Collection:
    """Children managed with their parent: added and removed, never updated in place."""

    key: str  # the name in the stack file (and in the plan)
    fields: tuple[Field, ...]
    scalar: str | None  # a bare item in the file is this field (interfaces: a subnet)
    add_path: str  # POST here; `{id}` is the parent's id
    parent_field: str | None  # the parent's id goes in the added item's body under this name
    remove_path: str  # DELETE here; `{id}` the parent, `{item}` the child


@dataclass(frozen=True)
class Kind:
    name: str  # the section of the stack file
    path: str
    singular: str
    fields: tuple[Field, ...]
    named: bool = True  # has a `name` (floating IPs do not)
    realised: bool = True  # hosts realise it: apply waits for `active`
    # Which of them a host is asked to realise (an unbound port, a floating IP on no port,
    # stay `pending` by design): apply waits for those only.
    placed: str | None = None  # the field that must be set, if any
    collection: Collection | None = None

    def field(self, key: str) -> Field:
        return next(f for f in self.fields if f.key == key)


# --------------------------------------------------------------------------- checks


def text(limit: int) -> Check:
    def check(v: Any) -> str | None:
        if not isinstance(v, str):
            return "must be a string"
        return f"is longer than {limit} characters" if len(v) > limit else None

    return check


def pattern(regex: str, what: str) -> Check:
    compiled = re.compile(regex)

    def check(v: Any) -> str | None:
        ok = isinstance(v, str) and compiled.fullmatch(v)
        return None if ok else f"{v!r} is not a valid {what}"

    return check


def network(v: Any) -> ipaddress.IPv4Network | None:
    try:
        net = ipaddress.ip_network(v, strict=True) if isinstance(v, str) and "/" in v else None
    except ValueError:
        return None
    return net if isinstance(net, ipaddress.IPv4Network) and str(net) == v else None


def cidr(shortest: int, longest: int) -> Check:
    def check(v: Any) -> str | None:
        net = network(v)
        if net is None:
            return f"{v!r} is not an IPv4 CIDR in canonical form, such as 10.0.0.0/16"
        if not shortest <= net.prefixlen <= longest:
            return f"the prefix must be between /{shortest} and /{longest}"
        return None

    return check


def address(v: Any) -> ipaddress.IPv4Address | None:
    try:
        ip = ipaddress.ip_address(v) if isinstance(v, str) else None
    except ValueError:
        return None
    return ip if isinstance(ip, ipaddress.IPv4Address) else None


def ip(v: Any) -> str | None:
    return None if address(v) is not None else f"{v!r} is not an IPv4 address"


def boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def choice(*allowed: str) -> Check:
    def check(v: Any) -> str | None:
        return None if v in allowed else f"{v!r} is not one of {', '.join(allowed)}"

    return check


def port_number(v: Any) -> str | None:
    ok = isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 65535
    return None if ok else "must be a port number from 1 to 65535"


def items(each: Callable[[Any], str | None], limit: int) -> Check:
    def check(v: Any) -> str | None:
        if not isinstance(v, list):
            return "must be a list"
        if len(v) > limit:
            return f"has more than {limit} items"
        return next((f"item {i + 1}: {e}" for i, x in enumerate(v) if (e := each(x))), None)

    return check


def pairs(**fields: Check) -> Check:
    """A mapping with exactly these keys (routes, pools)."""

    def check(v: Any) -> str | None:
        if not isinstance(v, dict) or set(v) != set(fields):
            return f"must be a mapping with {', '.join(fields)}"
        return next((f"{k}: {e}" for k, c in fields.items() if (e := c(v[k]))), None)

    return check


def reference(v: Any) -> str | None:
    return None if isinstance(v, str) and v else "must name a resource of this file"


KEY_RE = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}"
TAG = text(128)
ROUTES = items(pairs(destination=cidr(0, 32), nexthop=ip), 64)
POOLS = items(pairs(start=ip, end=ip), 16)
DESCRIPTION = Field("description", "description", text(1024), default="")
TAGS = Field("tags", "tags", items(TAG, 40), default=[])


def ref(key: str, api: str, kind: str, **kw: Any) -> Field:
    return Field(key, api, reference, ref=kind, **kw)


RULES = Collection(
    "rules",
    fields=(
        Field("direction", "direction", choice("ingress", "egress"), required=True),
        Field("protocol", "protocol", choice("tcp", "udp", "icmp", "any"), required=True),
        Field("port_min", "port_min", port_number, default=None),
        Field("port_max", "port_max", port_number, default=None),
        Field("remote_cidr", "remote_cidr", cidr(0, 32), default=None),
        ref("remote_group", "remote_group_id", "security_groups", default=None),
        DESCRIPTION,
    ),
    scalar=None,
    add_path="/v1/security-group-rules",
    parent_field="security_group_id",
    remove_path="/v1/security-group-rules/{item}",
)
INTERFACES = Collection(
    "interfaces",
    fields=(ref("subnet", "subnet_id", "subnets", required=True),),
    scalar="subnet",
    add_path="/v1/routers/{id}/interfaces",
    parent_field=None,
    remove_path="/v1/routers/{id}/interfaces/{item}",
)

KINDS: tuple[Kind, ...] = (
    Kind(
        "vpcs",
        "/v1/vpcs",
        "VPC",
        (Field("cidr", "cidr", cidr(8, 28), immutable=True, required=True), DESCRIPTION, TAGS),
        realised=False,
    ),
    Kind(
        "security_groups",
        "/v1/security-groups",
        "security group",
        (ref("vpc", "vpc_id", "vpcs", immutable=True, required=True), DESCRIPTION, TAGS),
        collection=RULES,
    ),
    Kind(
        "subnets",
        "/v1/subnets",
        "subnet",
        (
            ref("vpc", "vpc_id", "vpcs", immutable=True, required=True),
            Field("cidr", "cidr", cidr(8, 30), immutable=True, required=True),
            Field("gateway_ip", "gateway_ip", ip, immutable=True),
            Field("allocation_pools", "allocation_pools", POOLS),
            Field("dns_nameservers", "dns_nameservers", items(ip, 8), default=[]),
            Field("host_routes", "host_routes", ROUTES, default=[]),
            DESCRIPTION,
            TAGS,
        ),
    ),
    Kind(
        "routers",
        "/v1/routers",
        "router",
        (
            ref("vpc", "vpc_id", "vpcs", immutable=True, required=True),
            Field(
                "external_network", "external_network_id", reference, external=True, default=None
            ),
            Field("enable_snat", "enable_snat", boolean, default=True),
            Field("routes", "routes", ROUTES, default=[]),
            DESCRIPTION,
            TAGS,
        ),
        collection=INTERFACES,
    ),
    Kind(
        "ports",
        "/v1/ports",
        "port",
        (
            ref("subnet", "subnet_id", "subnets", immutable=True, required=True),
            Field(
                "host",
                "host",
                pattern(r"[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?", "host name"),
                default=None,
            ),
            Field(
                "netns",
                "netns",
                pattern(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,47}", "namespace name"),
                default=None,
            ),
            Field(
                "interface_name",
                "interface_name",
                pattern(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}", "interface name"),
                default="eth0",
            ),
            Field("ip_address", "ip_address", ip, immutable=True),
            Field(
                "mac_address",
                "mac_address",
                pattern(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}", "MAC address"),
                immutable=True,
            ),
            ref("security_groups", "security_group_ids", "security_groups", many=True),
            DESCRIPTION,
            TAGS,
        ),
        placed="host",
    ),
    Kind(
        "floating_ips",
        "/v1/floating-ips",
        "floating IP",
        (
            Field(
                "external_network",
                "external_network_id",
                reference,
                external=True,
                immutable=True,
                required=True,
            ),
            ref("port", "port_id", "ports", default=None),
            DESCRIPTION,
            TAGS,
        ),
        named=False,
        placed="port_id",
    ),
)
BY_NAME = {k.name: k for k in KINDS}
ORDER = [k.name for k in KINDS]  # creation order; deletion runs it backwards


def owner_tag(stack: str) -> str:
    """The tag that makes a resource part of a stack (the live state is what carries it)."""
    return f"stack:{stack}"


def key_tag(key: str) -> str:
    """The tag that ties a live resource to its key in the file (floating IPs have no name)."""
    return f"stack-key:{key}"
