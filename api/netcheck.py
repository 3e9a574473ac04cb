"""Validation of network input; each check names what is wrong and how to fix it.

The Annotated types below run inside pydantic, so a failure is a 422 whose `errors`
entry names the field; cross-resource checks raise `Invalid` from the services.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from models.nettypes import PHYSNET_PATTERN

# \Z, not $: `$` also matches before a trailing newline, which would let "ns\n" through.
MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}\Z")
NETNS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}\Z")
IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}\Z")
HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?\Z")
# A DNS label (RFC 1123): letters, digits and inner hyphens, at most 63 characters.
DNS_LABEL_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
DNS_DOMAIN_MAX = 190  # leaves room for a 63-character host label in a 253-character name


def _fail(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)


def parse_network(value: str) -> ipaddress.IPv4Network:
    if "/" not in value:
        raise _fail("cidr", "must be a CIDR such as 10.0.0.0/16")
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise _fail("cidr", f"{value!r} is not a valid CIDR") from exc
    if net.version != 4:
        raise _fail("cidr", "only IPv4 networks are supported")
    host = ipaddress.ip_interface(value)
    if host.ip != net.network_address:
        raise _fail("cidr", f"host bits are set; the network is {net}")
    if value != str(net):  # netmask form, zero-padded prefix: filters and agents compare text
        raise _fail("cidr", f"write the network in canonical form: {net}")
    return net


def cidr_check(min_prefix: int, max_prefix: int) -> Callable[[str], str]:
    def check(value: str) -> str:
        net = parse_network(value)
        if net.prefixlen > max_prefix:
            raise _fail(
                "cidr", f"prefix /{net.prefixlen} is too long; the longest allowed is /{max_prefix}"
            )
        if net.prefixlen < min_prefix:
            raise _fail(
                "cidr",
                f"prefix /{net.prefixlen} is too short; the shortest allowed is /{min_prefix}",
            )
        return value

    return check


def parse_ip(value: str) -> ipaddress.IPv4Address:
    try:
        addr = ipaddress.ip_address(value)
    except ValueError as exc:
        raise _fail("ip", f"{value!r} is not a valid IP address") from exc
    if addr.version != 4:
        raise _fail("ip", "only IPv4 addresses are supported")
    return addr


def _ip(value: str) -> str:
    parse_ip(value)
    return value


def _mac(value: str) -> str:
    if not MAC_RE.match(value):
        raise _fail("mac", f"{value!r} is not a MAC address like fa:16:3e:12:34:56")
    if int(value[:2], 16) & 1:
        raise _fail("mac", "must be a unicast MAC (the first octet's lowest bit clear)")
    if value.lower() == "00:00:00:00:00:00":
        raise _fail("mac", "the all-zero MAC is not allowed")
    return value


def _pattern(regex: re.Pattern[str], what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not regex.match(value):
            raise _fail("pattern", f"{value!r} is not a valid {what} (pattern {regex.pattern})")
        return value

    return check


# -- what the OpenAPI document says about them --------------------------------------------
# The validators above give the messages; these only describe the same rules in the schema
# (ECMA-262 patterns: `$` ends the input there), so generated clients and fuzzers see them.

_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
IPV4_PATTERN = rf"^{_OCTET}(\.{_OCTET}){{3}}$"


def prefix_alternation(low: int, high: int) -> str:
    """A regex matching exactly the decimal numbers low..high (no leading zeros)."""
    return "|".join(str(n) for n in range(high, low - 1, -1))


def _schema(**extra: str | int) -> Any:
    return Field(json_schema_extra=dict(extra))


def _cidr_schema(low: int, high: int) -> Any:
    return _schema(
        pattern=rf"^{_OCTET}(\.{_OCTET}){{3}}/({prefix_alternation(low, high)})$",
        description=f"An IPv4 network in canonical CIDR form, host bits clear, /{low} to /{high}",
    )


def _regex_schema(regex: re.Pattern[str], max_length: int) -> Any:
    return _schema(pattern=regex.pattern.replace("\\Z", "$"), maxLength=max_length)


IPv4 = Annotated[str, AfterValidator(_ip), _schema(format="ipv4", pattern=IPV4_PATTERN)]
VpcCidr = Annotated[str, AfterValidator(cidr_check(8, 28)), _cidr_schema(8, 28)]
SubnetCidr = Annotated[str, AfterValidator(cidr_check(8, 30)), _cidr_schema(8, 30)]
AnyCidr = Annotated[str, AfterValidator(cidr_check(0, 32)), _cidr_schema(0, 32)]
Mac = Annotated[
    str,
    AfterValidator(_mac),
    _schema(pattern=MAC_RE.pattern.replace("\\Z", "$"), description="A unicast MAC"),
]
NetnsName = Annotated[
    str, AfterValidator(_pattern(NETNS_RE, "namespace name")), _regex_schema(NETNS_RE, 48)
]
IfName = Annotated[
    str, AfterValidator(_pattern(IFNAME_RE, "interface name")), _regex_schema(IFNAME_RE, 15)
]
PhysnetName = Annotated[
    str, Field(pattern=PHYSNET_PATTERN, max_length=32, description="A physical network's name")
]
HostName = Annotated[
    str, AfterValidator(_pattern(HOSTNAME_RE, "host name")), _regex_schema(HOSTNAME_RE, 32)
]


def _dns_domain(value: str) -> str:
    if len(value) > DNS_DOMAIN_MAX:
        raise _fail("dns_domain", f"is longer than {DNS_DOMAIN_MAX} characters")
    for label in value.split("."):
        if not DNS_LABEL_RE.match(label):
            raise _fail(
                "dns_domain",
                f"{value!r} is not a domain name: {label!r} is not a DNS label "
                "(letters, digits and inner hyphens, 1-63 characters, dot-separated)",
            )
    if value.split(".")[-1].isdigit():
        raise _fail("dns_domain", f"{value!r} ends in a numeric label; write a domain name")
    return value


DnsLabel = Annotated[
    str, AfterValidator(_pattern(DNS_LABEL_RE, "DNS label")), _regex_schema(DNS_LABEL_RE, 63)
]
DnsDomain = Annotated[
    str,
    AfterValidator(_dns_domain),
    _schema(maxLength=DNS_DOMAIN_MAX, description="A domain name: dot-separated DNS labels"),
]


def default_dns_domain(vpc_name: str, vpc_id: str) -> str:
    """`<vpc-name>.vpc.internal`, the name made a DNS label (or the id's when nothing is
    left of it)."""
    label = re.sub(r"[^a-z0-9]+", "-", vpc_name.lower()).strip("-")[:63].strip("-")
    return f"{label or 'vpc-' + vpc_id[:8]}.vpc.internal"


class Pool(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    start: IPv4
    end: IPv4


class HostRoute(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    destination: AnyCidr
    nexthop: IPv4


def validate_pools(
    net: ipaddress.IPv4Network, gateway: ipaddress.IPv4Address, pools: list[Pool]
) -> list[tuple[int, int]]:
    """Pools inside the subnet's usable range, ordered, disjoint, not holding the gateway.

    Raises ValueError(field, message) pairs through `PoolError`.
    """
    first, last = int(net.network_address) + 1, int(net.broadcast_address) - 1
    spans: list[tuple[int, int, int]] = []
    for i, pool in enumerate(pools):
        s, e = int(parse_ip(pool.start)), int(parse_ip(pool.end))
        if s > e:
            raise PoolError(f"allocation_pools.{i}", "start is after end")
        if s < first or e > last:
            raise PoolError(
                f"allocation_pools.{i}",
                f"must lie within the usable addresses of {net} "
                f"({ipaddress.IPv4Address(first)}-{ipaddress.IPv4Address(last)})",
            )
        if s <= int(gateway) <= e:
            raise PoolError(f"allocation_pools.{i}", f"contains the gateway {gateway}")
        spans.append((s, e, i))
    spans.sort()
    for (_s1, e1, _i1), (s2, _e2, i2) in itertools.pairwise(spans):
        if s2 <= e1:
            raise PoolError(f"allocation_pools.{i2}", "overlaps another pool")
    return [(s, e) for s, e, _ in spans]


class PoolError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def default_pools(
    net: ipaddress.IPv4Network, gateway: ipaddress.IPv4Address
) -> list[dict[str, str]]:
    """Every usable address but the gateway, as one or two ranges."""
    first, last, gw = int(net.network_address) + 1, int(net.broadcast_address) - 1, int(gateway)
    ranges = [(first, gw - 1), (gw + 1, last)] if first <= gw <= last else [(first, last)]
    return [
        {"start": str(ipaddress.IPv4Address(s)), "end": str(ipaddress.IPv4Address(e))}
        for s, e in ranges
        if s <= e
    ]
