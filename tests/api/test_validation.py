"""Input validation matrices (DESIGN §3, issue 2).

Every bad input must give a 4xx RFC 9457 problem whose `errors[*].field` names the offending
field, and must change nothing: the whole database (every row of every table) is compared
before and after. Valid edge cases (a /30, a gateway at the end of the range, explicit pools)
must succeed, so the checks are not simply rejecting everything near a boundary.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.api import helpers as h
from tests.api.helpers import dependency_names, v1_routes
from tests.conftest import ADMIN, Tenant

# -- machinery ---------------------------------------------------------------------------


def db_rows(db_url: str) -> dict[str, list[str]]:
    """Every row of every table, as sorted reprs: the 'changes nothing' witness."""
    from models import Base
    from models.db import engine_for

    with engine_for(db_url).connect() as conn:
        return {
            t.name: sorted(repr(tuple(row)) for row in conn.execute(sa.select(t)))
            for t in Base.metadata.sorted_tables
        }


@dataclass(frozen=True)
class Raw:
    """A request body sent as these exact bytes (malformed JSON, empty body, ...)."""

    data: bytes
    content_type: str = "application/json"


@dataclass
class World:
    """One tenant's resources the cases refer to as `$name` placeholders."""

    ids: dict[str, str] = field(default_factory=dict)

    def fill(self, obj: Any) -> Any:
        if isinstance(obj, str) and obj.startswith("$") and obj[1:] in self.ids:
            return self.ids[obj[1:]]
        if isinstance(obj, str) and obj.startswith("/v1/"):
            return obj.format(**self.ids)
        if isinstance(obj, dict):
            return {k: self.fill(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.fill(v) for v in obj]
        return obj


def send(c: TestClient, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    if isinstance(body, Raw):
        hdrs = {**headers, "content-type": body.content_type}
        return c.request(method, path, content=body.data, headers=hdrs)
    return c.request(method, path, json=body, headers=headers)


def fields_of(problem: dict[str, Any]) -> list[str]:
    errors = problem.get("errors") or []
    for e in errors:
        assert e["message"], problem  # each field error says what is wrong
    return [e["field"] for e in errors]


@pytest.fixture
def world(client: TestClient, tenant: Tenant) -> World:
    """VPC 10.0.0.0/16 with subnet 10.0.1.0/24 (gateway .1), a port at .10, groups, a router."""
    v = h.vpc(client, tenant, "10.0.0.0/16", name="main")
    other = h.vpc(client, tenant, "10.1.0.0/16", name="other")
    s = h.subnet(client, tenant, v["id"], "10.0.1.0/24")
    other_s = h.subnet(client, tenant, other["id"], "10.1.1.0/24")
    g = h.group(client, tenant, v["id"], name="web")
    other_g = h.group(client, tenant, other["id"], name="elsewhere")
    p = h.port(client, tenant, s["id"], ip_address="10.0.1.10", mac_address="fa:16:3e:00:00:10")
    r = h.router(client, tenant, v["id"])
    rule = h.rule(client, tenant, g["id"], port_min=22, port_max=22)
    ext = h.external_network(client)
    fip = h.floating_ip(client, tenant, ext["id"])
    host = h.host(client)
    acl = h.create(client, "/v1/network-acls", tenant, vpc_id=v["id"])
    entry = h.create(
        client, "/v1/network-acl-entries", tenant, network_acl_id=acl["id"], rule_number=100,
        direction="ingress", action="allow", protocol="any", cidr="0.0.0.0/0",
    )  # fmt: skip
    lb = h.load_balancer(client, tenant, s["id"])
    listener = h.listener(client, tenant, lb["id"])
    pool = h.pool(client, tenant, listener_id=listener["id"])
    member = h.member(client, tenant, pool["id"], "10.0.1.30")
    monitor = h.monitor(client, tenant, pool["id"])
    physnet = h.create(client, "/v1/physical-networks", ADMIN, name="provider")
    scope = h.create(client, "/v1/address-scopes", ADMIN, cidr="100.64.0.0/16", name="routed")
    return World(
        {
            "physnet": physnet["id"],
            "scope": scope["id"],
            "vpc": v["id"],
            "other_vpc": other["id"],
            "subnet": s["id"],
            "other_subnet": other_s["id"],
            "group": g["id"],
            "default_group": v["default_security_group_id"],
            "other_group": other_g["id"],
            "port": p["id"],
            "router": r["id"],
            "rule": rule["id"],
            "ext": ext["id"],
            "fip": fip["id"],
            "host": host["id"],
            "tenant": tenant.id,
            "acl": acl["id"],
            "acl_entry": entry["id"],
            "lb": lb["id"],
            "listener": listener["id"],
            "pool": pool["id"],
            "member": member["id"],
            "monitor": monitor["id"],
        }
    )


@dataclass(frozen=True)
class Bad:
    id: str
    method: str
    path: str
    body: Any
    field: str
    status: int = 422
    admin: bool = False


def bad(
    id: str,
    path: str,
    body: Any,
    field: str,
    *,
    method: str = "POST",
    status: int = 422,
    admin: bool = False,
) -> Any:
    return pytest.param(Bad(id, method, path, body, field, status, admin), id=id)


def vpc_body(**kw: Any) -> dict[str, Any]:
    return {"cidr": "10.2.0.0/16", **kw}


def subnet_body(**kw: Any) -> dict[str, Any]:
    return {"vpc_id": "$vpc", "cidr": "10.0.3.0/24", **kw}


def port_body(**kw: Any) -> dict[str, Any]:
    return {"subnet_id": "$subnet", **kw}


def rule_body(**kw: Any) -> dict[str, Any]:
    return {"security_group_id": "$group", "direction": "ingress", "protocol": "tcp", **kw}


def ext_body(**kw: Any) -> dict[str, Any]:
    return {"cidr": "198.51.100.0/24", "gateway_ip": "198.51.100.1", **kw}


def pool(start: str, end: str) -> dict[str, str]:
    return {"start": start, "end": end}


# -- the matrix --------------------------------------------------------------------------

NOT_CIDRS = [
    "banana",
    "10.0.0.0",
    "10.0.0.0/",
    "10.0.0.0/33",
    "300.0.0.0/8",
    "10.0.0/16",
    "10.0.0.0/-1",
    " 10.0.0.0/16",
    "10.0.0.0/16\n",
    "10.0.0.0/16 ",
]
IPV6 = ["fd00::/48", "::/0", "2001:db8::/64"]
BAD_MACS = [
    "fa:16:3e:00:00",
    "fa-16-3e-00-00-01",
    "fa163e000001",
    "zz:16:3e:00:00:01",
    "fa:16:3e:00:00:01\n",
    "fa:16:3e:00:00:001",
    " fa:16:3e:00:00:01",
    "",
]
MULTICAST_MACS = [
    "01:00:5e:00:00:01",
    "ff:ff:ff:ff:ff:ff",
    "33:33:00:00:00:01",
    "00:00:00:00:00:00",
]
SHELLY = [
    "a;rm -rf /",
    "$(reboot)",
    "ns`id`",
    "a b",
    "a|b",
    "a&&b",
    "../etc",
    "a/b",
    "-ns",
    ".",
    "..",
    "ns\n",
    "ns\nrm",
    "",
    "a'b",
    'a"b',
    "a>b",
    "ns*",
]

CASES: list[Any] = []

# VPCs
CASES += [
    bad(f"vpc-not-cidr-{i}", "/v1/vpcs", vpc_body(cidr=c), "body.cidr")
    for i, c in enumerate(NOT_CIDRS)
]
CASES += [
    bad(f"vpc-ipv6-{i}", "/v1/vpcs", vpc_body(cidr=c), "body.cidr") for i, c in enumerate(IPV6)
]
CASES += [
    bad("vpc-host-bits", "/v1/vpcs", vpc_body(cidr="10.2.0.1/16"), "body.cidr"),
    bad("vpc-host-bits-2", "/v1/vpcs", vpc_body(cidr="10.2.128.0/16"), "body.cidr"),
    bad("vpc-netmask-form", "/v1/vpcs", vpc_body(cidr="10.2.0.0/255.255.0.0"), "body.cidr"),
    bad("vpc-zero-padded-prefix", "/v1/vpcs", vpc_body(cidr="10.2.0.0/016"), "body.cidr"),
    bad("vpc-prefix-too-long", "/v1/vpcs", vpc_body(cidr="10.2.0.0/29"), "body.cidr"),
    bad("vpc-prefix-too-short", "/v1/vpcs", vpc_body(cidr="10.0.0.0/7"), "body.cidr"),
    bad("vpc-missing-cidr", "/v1/vpcs", {"name": "x"}, "body.cidr"),
    bad("vpc-cidr-int", "/v1/vpcs", vpc_body(cidr=167903232), "body.cidr"),
    bad("vpc-cidr-null", "/v1/vpcs", vpc_body(cidr=None), "body.cidr"),
    bad("vpc-name-int", "/v1/vpcs", vpc_body(name=5), "body.name"),
    bad("vpc-name-too-long", "/v1/vpcs", vpc_body(name="x" * 256), "body.name"),
    bad("vpc-tags-string", "/v1/vpcs", vpc_body(tags="a"), "body.tags"),
    bad("vpc-tags-int", "/v1/vpcs", vpc_body(tags=["a", 1]), "body.tags.1"),
    bad("vpc-tag-empty", "/v1/vpcs", vpc_body(tags=[""]), "body.tags.0"),
    bad("vpc-unknown", "/v1/vpcs", vpc_body(colour="blue"), "body.colour"),
    bad("vpc-readonly-id", "/v1/vpcs", vpc_body(id="x"), "body.id"),
    bad("vpc-readonly-tenant", "/v1/vpcs", vpc_body(tenant_id="$tenant"), "body.tenant_id"),
    bad(
        "vpc-readonly-default-sg",
        "/v1/vpcs",
        vpc_body(default_security_group_id="$group"),
        "body.default_security_group_id",
    ),
    bad(
        "vpc-patch-cidr-immutable",
        "/v1/vpcs/{vpc}",
        {"cidr": "10.3.0.0/16"},  # its own value would be accepted (declarative clients)
        "body.cidr",
        method="PATCH",
    ),
    bad("vpc-patch-name-null", "/v1/vpcs/{vpc}", {"name": None}, "body.name", method="PATCH"),
    bad("vpc-patch-unknown", "/v1/vpcs/{vpc}", {"revision": 7}, "body.revision", method="PATCH"),
]

# Subnets
CASES += [
    bad(f"subnet-not-cidr-{i}", "/v1/subnets", subnet_body(cidr=c), "body.cidr")
    for i, c in enumerate(NOT_CIDRS)
]
CASES += [
    bad(f"subnet-ipv6-{i}", "/v1/subnets", subnet_body(cidr=c), "body.cidr")
    for i, c in enumerate(IPV6)
]
CASES += [
    bad("subnet-host-bits", "/v1/subnets", subnet_body(cidr="10.0.3.1/24"), "body.cidr"),
    bad("subnet-host-bits-2", "/v1/subnets", subnet_body(cidr="10.0.3.4/29"), "body.cidr"),
    bad(
        "subnet-netmask-form",
        "/v1/subnets",
        subnet_body(cidr="10.0.3.0/255.255.255.0"),
        "body.cidr",
    ),
    bad("subnet-prefix-31", "/v1/subnets", subnet_body(cidr="10.0.3.0/31"), "body.cidr"),
    bad("subnet-prefix-32", "/v1/subnets", subnet_body(cidr="10.0.3.0/32"), "body.cidr"),
    bad("subnet-outside-vpc", "/v1/subnets", subnet_body(cidr="10.9.0.0/24"), "body.cidr"),
    bad("subnet-other-vpcs-range", "/v1/subnets", subnet_body(cidr="10.1.2.0/24"), "body.cidr"),
    bad("subnet-wider-than-vpc", "/v1/subnets", subnet_body(cidr="10.0.0.0/15"), "body.cidr"),
    bad("subnet-same-as-sibling", "/v1/subnets", subnet_body(cidr="10.0.1.0/24"), "body.cidr"),
    bad("subnet-inside-sibling", "/v1/subnets", subnet_body(cidr="10.0.1.128/25"), "body.cidr"),
    bad("subnet-contains-sibling", "/v1/subnets", subnet_body(cidr="10.0.0.0/23"), "body.cidr"),
    bad("subnet-whole-vpc", "/v1/subnets", subnet_body(cidr="10.0.0.0/16"), "body.cidr"),
    bad(
        "subnet-gateway-outside",
        "/v1/subnets",
        subnet_body(gateway_ip="10.0.4.1"),
        "body.gateway_ip",
    ),
    bad(
        "subnet-gateway-network",
        "/v1/subnets",
        subnet_body(gateway_ip="10.0.3.0"),
        "body.gateway_ip",
    ),
    bad(
        "subnet-gateway-broadcast",
        "/v1/subnets",
        subnet_body(gateway_ip="10.0.3.255"),
        "body.gateway_ip",
    ),
    bad("subnet-gateway-not-ip", "/v1/subnets", subnet_body(gateway_ip="gw"), "body.gateway_ip"),
    bad("subnet-gateway-ipv6", "/v1/subnets", subnet_body(gateway_ip="fd00::1"), "body.gateway_ip"),
    bad(
        "subnet-gateway-in-pool",
        "/v1/subnets",
        subnet_body(gateway_ip="10.0.3.20", allocation_pools=[pool("10.0.3.10", "10.0.3.50")]),
        "body.allocation_pools.0",
    ),
    bad(
        "subnet-default-gateway-in-pool",
        "/v1/subnets",
        subnet_body(allocation_pools=[pool("10.0.3.1", "10.0.3.50")]),
        "body.allocation_pools.0",
    ),
    bad(
        "subnet-pool-outside",
        "/v1/subnets",
        subnet_body(allocation_pools=[pool("10.0.4.10", "10.0.4.20")]),
        "body.allocation_pools.0",
    ),
    bad(
        "subnet-pool-straddles",
        "/v1/subnets",
        subnet_body(allocation_pools=[pool("10.0.3.250", "10.0.4.5")]),
        "body.allocation_pools.0",
    ),
    bad(
        "subnet-pool-has-network",
        "/v1/subnets",
        subnet_body(gateway_ip="10.0.3.254", allocation_pools=[pool("10.0.3.0", "10.0.3.9")]),
        "body.allocation_pools.0",
    ),
    bad(
        "subnet-pool-has-broadcast",
        "/v1/subnets",
        subnet_body(allocation_pools=[pool("10.0.3.200", "10.0.3.255")]),
        "body.allocation_pools.0",
    ),
    bad(
        "subnet-pool-start-after-end",
        "/v1/subnets",
        subnet_body(allocation_pools=[pool("10.0.3.50", "10.0.3.10")]),
        "body.allocation_pools.0",
    ),
    bad(
        "subnet-pools-overlap",
        "/v1/subnets",
        subnet_body(
            allocation_pools=[pool("10.0.3.10", "10.0.3.20"), pool("10.0.3.15", "10.0.3.30")]
        ),
        "body.allocation_pools.1",
    ),
    bad(
        "subnet-pools-identical",
        "/v1/subnets",
        subnet_body(
            allocation_pools=[pool("10.0.3.10", "10.0.3.20"), pool("10.0.3.10", "10.0.3.20")]
        ),
        "body.allocation_pools.1",
    ),
    bad(
        "subnet-pools-overlap-unsorted",
        "/v1/subnets",
        subnet_body(
            allocation_pools=[pool("10.0.3.100", "10.0.3.120"), pool("10.0.3.10", "10.0.3.100")]
        ),
        "body.allocation_pools.0",
    ),
    bad(
        "subnet-pools-empty",
        "/v1/subnets",
        subnet_body(allocation_pools=[]),
        "body.allocation_pools",
    ),
    bad(
        "subnet-pool-missing-end",
        "/v1/subnets",
        subnet_body(allocation_pools=[{"start": "10.0.3.10"}]),
        "body.allocation_pools.0.end",
    ),
    bad(
        "subnet-pool-bad-ip",
        "/v1/subnets",
        subnet_body(allocation_pools=[pool("10.0.3.10", "ten")]),
        "body.allocation_pools.0.end",
    ),
    bad(
        "subnet-pool-unknown",
        "/v1/subnets",
        subnet_body(allocation_pools=[{**pool("10.0.3.10", "10.0.3.20"), "step": 2}]),
        "body.allocation_pools.0.step",
    ),
    bad(
        "subnet-dns-not-ip",
        "/v1/subnets",
        subnet_body(dns_nameservers=["dns.example"]),
        "body.dns_nameservers.0",
    ),
    bad(
        "subnet-dns-string",
        "/v1/subnets",
        subnet_body(dns_nameservers="10.0.0.2"),
        "body.dns_nameservers",
    ),
    bad(
        "subnet-route-host-bits",
        "/v1/subnets",
        subnet_body(host_routes=[{"destination": "10.0.0.1/8", "nexthop": "10.0.3.1"}]),
        "body.host_routes.0.destination",
    ),
    bad(
        "subnet-route-bad-nexthop",
        "/v1/subnets",
        subnet_body(host_routes=[{"destination": "10.8.0.0/16", "nexthop": "x"}]),
        "body.host_routes.0.nexthop",
    ),
    bad("subnet-missing-vpc", "/v1/subnets", {"cidr": "10.0.3.0/24"}, "body.vpc_id"),
    bad("subnet-vpc-id-int", "/v1/subnets", subnet_body(vpc_id=1), "body.vpc_id"),
    bad("subnet-readonly-vni", "/v1/subnets", subnet_body(vni=5), "body.vni"),
    bad("subnet-readonly-status", "/v1/subnets", subnet_body(status="active"), "body.status"),
    bad(
        "subnet-patch-cidr",
        "/v1/subnets/{subnet}",
        {"cidr": "10.0.1.0/25"},
        "body.cidr",
        method="PATCH",
    ),
    bad(
        "subnet-patch-gateway",
        "/v1/subnets/{subnet}",
        {"gateway_ip": "10.0.1.2"},
        "body.gateway_ip",
        method="PATCH",
    ),
    bad(
        "subnet-patch-pools-overlap",
        "/v1/subnets/{subnet}",
        {"allocation_pools": [pool("10.0.1.10", "10.0.1.20"), pool("10.0.1.20", "10.0.1.30")]},
        "body.allocation_pools.1",
        method="PATCH",
    ),
    bad(
        "subnet-patch-pool-gateway",
        "/v1/subnets/{subnet}",
        {"allocation_pools": [pool("10.0.1.1", "10.0.1.20")]},
        "body.allocation_pools.0",
        method="PATCH",
    ),
    bad(
        "subnet-patch-pool-outside",
        "/v1/subnets/{subnet}",
        {"allocation_pools": [pool("10.0.2.1", "10.0.2.20")]},
        "body.allocation_pools.0",
        method="PATCH",
    ),
]

# Ports
CASES += [
    bad(f"port-bad-mac-{i}", "/v1/ports", port_body(mac_address=m), "body.mac_address")
    for i, m in enumerate(BAD_MACS)
]
CASES += [
    bad(f"port-multicast-mac-{i}", "/v1/ports", port_body(mac_address=m), "body.mac_address")
    for i, m in enumerate(MULTICAST_MACS)
]
CASES += [
    bad(f"port-netns-{i}", "/v1/ports", port_body(netns=n), "body.netns")
    for i, n in enumerate([*SHELLY, "n" * 49])
]
CASES += [
    bad(f"port-ifname-{i}", "/v1/ports", port_body(interface_name=n), "body.interface_name")
    for i, n in enumerate([*SHELLY, "e" * 16])
]
CASES += [
    bad(f"port-host-{i}", "/v1/ports", port_body(host=n), "body.host")
    for i, n in enumerate(["a;b", "Host1", "h\n", "-h", "h" * 64, ""])
]
CASES += [
    bad("port-ip-outside", "/v1/ports", port_body(ip_address="10.0.2.5"), "body.ip_address"),
    bad("port-ip-other-vpc", "/v1/ports", port_body(ip_address="10.1.1.5"), "body.ip_address"),
    bad("port-ip-network", "/v1/ports", port_body(ip_address="10.0.1.0"), "body.ip_address"),
    bad("port-ip-broadcast", "/v1/ports", port_body(ip_address="10.0.1.255"), "body.ip_address"),
    bad("port-ip-not-ip", "/v1/ports", port_body(ip_address="10.0.1"), "body.ip_address"),
    bad("port-ip-ipv6", "/v1/ports", port_body(ip_address="fd00::5"), "body.ip_address"),
    bad("port-ip-int", "/v1/ports", port_body(ip_address=167772426), "body.ip_address"),
    bad("port-ip-cidr", "/v1/ports", port_body(ip_address="10.0.1.20/24"), "body.ip_address"),
    bad(
        "port-ip-taken",
        "/v1/ports",
        port_body(ip_address="10.0.1.10"),
        "body.ip_address",
        status=409,
    ),
    bad(
        "port-ip-gateway",
        "/v1/ports",
        port_body(ip_address="10.0.1.1"),
        "body.ip_address",
        status=409,
    ),
    bad(
        "port-mac-taken",
        "/v1/ports",
        port_body(mac_address="fa:16:3e:00:00:10"),
        "body.mac_address",
        status=409,
    ),
    bad(
        "port-mac-taken-upper",
        "/v1/ports",
        port_body(mac_address="FA:16:3E:00:00:10"),
        "body.mac_address",
        status=409,
    ),
    bad(
        "port-groups-string",
        "/v1/ports",
        port_body(security_group_ids="$group"),
        "body.security_group_ids",
    ),
    bad(
        "port-groups-twice",
        "/v1/ports",
        port_body(security_group_ids=["$group", "$group"]),
        "body.security_group_ids",
    ),
    bad(
        "port-group-other-vpc",
        "/v1/ports",
        port_body(security_group_ids=["$group", "$other_group"]),
        "body.security_group_ids.1",
    ),
    bad("port-missing-subnet", "/v1/ports", {"name": "p"}, "body.subnet_id"),
    bad(
        "port-readonly-device-owner",
        "/v1/ports",
        port_body(device_owner="router_interface"),
        "body.device_owner",
    ),
    bad("port-readonly-device-id", "/v1/ports", port_body(device_id="$router"), "body.device_id"),
    bad("port-readonly-vpc", "/v1/ports", port_body(vpc_id="$vpc"), "body.vpc_id"),
    bad(
        "port-patch-ip",
        "/v1/ports/{port}",
        {"ip_address": "10.0.1.11"},
        "body.ip_address",
        method="PATCH",
    ),
    bad(
        "port-patch-mac",
        "/v1/ports/{port}",
        {"mac_address": "fa:16:3e:00:00:11"},
        "body.mac_address",
        method="PATCH",
    ),
    bad(
        "port-patch-netns",
        "/v1/ports/{port}",
        {"netns": "a;rm -rf /"},
        "body.netns",
        method="PATCH",
    ),
    bad(
        "port-patch-ifname",
        "/v1/ports/{port}",
        {"interface_name": "eth0\n"},
        "body.interface_name",
        method="PATCH",
    ),
    bad(
        "port-patch-ifname-null",
        "/v1/ports/{port}",
        {"interface_name": None},
        "body.interface_name",
        method="PATCH",
    ),
    bad(
        "port-patch-group-other-vpc",
        "/v1/ports/{port}",
        {"security_group_ids": ["$other_group"]},
        "body.security_group_ids.0",
        method="PATCH",
    ),
]

# Security groups and rules
CASES += [
    bad(
        f"rule-remote-cidr-{i}",
        "/v1/security-group-rules",
        rule_body(remote_cidr=c),
        "body.remote_cidr",
    )
    for i, c in enumerate([*NOT_CIDRS, *IPV6, "10.0.0.1/8"])
]
CASES += [
    bad(
        "rule-min-above-max",
        "/v1/security-group-rules",
        rule_body(port_min=100, port_max=10),
        "body.port_min",
    ),
    bad(
        "rule-udp-min-above-max",
        "/v1/security-group-rules",
        rule_body(protocol="udp", port_min=2, port_max=1),
        "body.port_min",
    ),
    bad(
        "rule-icmp-ports",
        "/v1/security-group-rules",
        rule_body(protocol="icmp", port_min=1, port_max=2),
        "body.port_min",
    ),
    bad(
        "rule-icmp-port-max",
        "/v1/security-group-rules",
        rule_body(protocol="icmp", port_max=8),
        "body.port_max",
    ),
    bad(
        "rule-any-ports",
        "/v1/security-group-rules",
        rule_body(protocol="any", port_min=80, port_max=80),
        "body.port_min",
    ),
    bad(
        "rule-port-zero",
        "/v1/security-group-rules",
        rule_body(port_min=0, port_max=10),
        "body.port_min",
    ),
    bad("rule-port-negative", "/v1/security-group-rules", rule_body(port_min=-1), "body.port_min"),
    bad(
        "rule-port-too-big",
        "/v1/security-group-rules",
        rule_body(port_min=1, port_max=65536),
        "body.port_max",
    ),
    bad("rule-port-huge", "/v1/security-group-rules", rule_body(port_min=2**70), "body.port_min"),
    bad(
        "rule-port-string",
        "/v1/security-group-rules",
        rule_body(port_min="80", port_max=80),
        "body.port_min",
    ),
    bad(
        "rule-port-float",
        "/v1/security-group-rules",
        rule_body(port_min=80.5, port_max=81),
        "body.port_min",
    ),
    bad(
        "rule-port-bool",
        "/v1/security-group-rules",
        rule_body(port_min=True, port_max=8),
        "body.port_min",
    ),
    bad(
        "rule-cidr-and-group",
        "/v1/security-group-rules",
        rule_body(remote_cidr="10.0.0.0/8", remote_group_id="$group"),
        "body.remote_group_id",
    ),
    bad(
        "rule-remote-group-other-vpc",
        "/v1/security-group-rules",
        rule_body(remote_group_id="$other_group"),
        "body.remote_group_id",
    ),
    bad(
        "rule-direction",
        "/v1/security-group-rules",
        rule_body(direction="inbound"),
        "body.direction",
    ),
    bad(
        "rule-direction-case",
        "/v1/security-group-rules",
        rule_body(direction="INGRESS"),
        "body.direction",
    ),
    bad("rule-protocol", "/v1/security-group-rules", rule_body(protocol="gre"), "body.protocol"),
    bad("rule-protocol-number", "/v1/security-group-rules", rule_body(protocol=6), "body.protocol"),
    bad(
        "rule-protocol-null", "/v1/security-group-rules", rule_body(protocol=None), "body.protocol"
    ),
    bad(
        "rule-missing-direction",
        "/v1/security-group-rules",
        {"security_group_id": "$group", "protocol": "tcp"},
        "body.direction",
    ),
    bad("rule-unknown", "/v1/security-group-rules", rule_body(ethertype="IPv4"), "body.ethertype"),
    bad(
        "rule-patch-immutable",
        "/v1/security-group-rules/{rule}",
        {"port_max": 23},
        "body.port_max",
        method="PATCH",
    ),
    bad("group-unknown", "/v1/security-groups", {"vpc_id": "$vpc", "rules": []}, "body.rules"),
    bad(
        "group-readonly-default",
        "/v1/security-groups",
        {"vpc_id": "$vpc", "is_default": True},
        "body.is_default",
    ),
    bad("group-missing-vpc", "/v1/security-groups", {"name": "g"}, "body.vpc_id"),
    bad(
        "group-patch-vpc",
        "/v1/security-groups/{group}",
        {"vpc_id": "$other_vpc"},
        "body.vpc_id",
        method="PATCH",
    ),
]

# Routers, interfaces, floating IPs
CASES += [
    bad(
        "router-snat-string",
        "/v1/routers",
        {"vpc_id": "$vpc", "enable_snat": "yes"},
        "body.enable_snat",
    ),
    bad("router-snat-int", "/v1/routers", {"vpc_id": "$vpc", "enable_snat": 1}, "body.enable_snat"),
    bad(
        "router-readonly-external-ip",
        "/v1/routers",
        {"vpc_id": "$vpc", "external_ip": "203.0.113.9"},
        "body.external_ip",
    ),
    bad("router-readonly-host", "/v1/routers", {"vpc_id": "$vpc", "host": "net-1"}, "body.host"),
    bad(
        "router-route-bad-destination",
        "/v1/routers",
        {"vpc_id": "$vpc", "routes": [{"destination": "10.9.0.1/16", "nexthop": "10.0.1.5"}]},
        "body.routes.0.destination",
    ),
    bad(
        "router-routes-on-create",
        "/v1/routers",
        {"vpc_id": "$vpc", "routes": [{"destination": "10.9.0.0/16", "nexthop": "10.0.1.5"}]},
        "body.routes.0.nexthop",
    ),
    bad(
        "router-patch-nexthop-off-subnet",
        "/v1/routers/{router}",
        {"routes": [{"destination": "10.9.0.0/16", "nexthop": "10.0.1.5"}]},
        "body.routes.0.nexthop",
        method="PATCH",
    ),
    bad(
        "router-patch-vpc",
        "/v1/routers/{router}",
        {"vpc_id": "$other_vpc"},
        "body.vpc_id",
        method="PATCH",
    ),
    bad("interface-missing-subnet", "/v1/routers/{router}/interfaces", {}, "body.subnet_id"),
    bad(
        "interface-unknown",
        "/v1/routers/{router}/interfaces",
        {"subnet_id": "$subnet", "ip_address": "10.0.1.1"},
        "body.ip_address",
    ),
    bad(
        "interface-other-vpc",
        "/v1/routers/{router}/interfaces",
        {"subnet_id": "$other_subnet"},
        "body.subnet_id",
    ),
    bad(
        "fip-readonly-address",
        "/v1/floating-ips",
        {"external_network_id": "$ext", "address": "203.0.113.77"},
        "body.address",
    ),
    bad("fip-missing-network", "/v1/floating-ips", {}, "body.external_network_id"),
    bad(
        "fip-patch-network",
        "/v1/floating-ips/{fip}",
        {"external_network_id": "00000000-0000-0000-0000-000000000000"},
        "body.external_network_id",
        method="PATCH",
    ),
    bad(
        "fip-router-port",
        "/v1/floating-ips",
        {"external_network_id": "$ext", "port_id": "$router_port"},
        "body.port_id",
    ),
]

# Admin resources: external networks, hosts, tenants, quotas
CASES += [
    bad(
        "ext-host-bits",
        "/v1/external-networks",
        ext_body(cidr="198.51.100.1/24"),
        "body.cidr",
        admin=True,
    ),
    bad(
        "ext-ipv6", "/v1/external-networks", ext_body(cidr="2001:db8::/64"), "body.cidr", admin=True
    ),
    bad(
        "ext-prefix-31",
        "/v1/external-networks",
        ext_body(cidr="198.51.100.0/31"),
        "body.cidr",
        admin=True,
    ),
    bad(
        "ext-gateway-outside",
        "/v1/external-networks",
        ext_body(gateway_ip="198.51.101.1"),
        "body.gateway_ip",
        admin=True,
    ),
    bad(
        "ext-gateway-broadcast",
        "/v1/external-networks",
        ext_body(gateway_ip="198.51.100.255"),
        "body.gateway_ip",
        admin=True,
    ),
    bad(
        "ext-gateway-in-pool",
        "/v1/external-networks",
        ext_body(allocation_pools=[pool("198.51.100.1", "198.51.100.9")]),
        "body.allocation_pools.0",
        admin=True,
    ),
    bad(
        "ext-pools-overlap",
        "/v1/external-networks",
        ext_body(
            allocation_pools=[
                pool("198.51.100.10", "198.51.100.20"),
                pool("198.51.100.20", "198.51.100.29"),
            ]
        ),
        "body.allocation_pools.1",
        admin=True,
    ),
    bad("ext-unknown", "/v1/external-networks", ext_body(shared=True), "body.shared", admin=True),
    bad(
        "ext-patch-cidr",
        "/v1/external-networks/{ext}",
        {"cidr": "198.51.100.0/25"},
        "body.cidr",
        method="PATCH",
        admin=True,
    ),
    bad(
        "host-name",
        "/v1/hosts",
        {"name": "Bad Name", "vtep_ip": "192.0.2.20"},
        "body.name",
        admin=True,
    ),
    bad(
        "host-name-shell",
        "/v1/hosts",
        {"name": "h;reboot", "vtep_ip": "192.0.2.20"},
        "body.name",
        admin=True,
    ),
    bad("host-vtep", "/v1/hosts", {"name": "h2", "vtep_ip": "192.0.2"}, "body.vtep_ip", admin=True),
    bad(
        "host-role",
        "/v1/hosts",
        {"name": "h2", "vtep_ip": "192.0.2.20", "roles": ["storage"]},
        "body.roles.0",
        admin=True,
    ),
    bad(
        "host-roles-empty",
        "/v1/hosts",
        {"name": "h2", "vtep_ip": "192.0.2.20", "roles": []},
        "body.roles",
        admin=True,
    ),
    bad(
        "host-readonly-status",
        "/v1/hosts",
        {"name": "h2", "vtep_ip": "192.0.2.20", "status": "up"},
        "body.status",
        admin=True,
    ),
    bad(
        "host-patch-name",
        "/v1/hosts/{host}",
        {"name": "h3"},
        "body.name",
        method="PATCH",
        admin=True,
    ),
    bad("tenant-name-empty", "/v1/tenants", {"name": ""}, "body.name", admin=True),
    bad("tenant-name-int", "/v1/tenants", {"name": 3}, "body.name", admin=True),
    bad("tenant-unknown", "/v1/tenants", {"name": "t2", "quotas": {}}, "body.quotas", admin=True),
    bad(
        "quota-negative",
        "/v1/tenants/{tenant}/quotas",
        {"ports": -1},
        "body.ports",
        method="PATCH",
        admin=True,
    ),
    bad(
        "quota-string",
        "/v1/tenants/{tenant}/quotas",
        {"ports": "5"},
        "body.ports",
        method="PATCH",
        admin=True,
    ),
    bad(
        "quota-unknown",
        "/v1/tenants/{tenant}/quotas",
        {"teleporters": 5},
        "body.teleporters",
        method="PATCH",
        admin=True,
    ),
]


@pytest.fixture
def router_port(client: TestClient, tenant: Tenant, world: World) -> str:
    """The service-made port of a router interface (for the fip-router-port case)."""
    s = h.subnet(client, tenant, world.ids["vpc"], "10.0.7.0/24")
    leg = h.attach(client, tenant, world.ids["router"], s["id"])
    world.ids["router_port"] = leg["port_id"]
    return str(leg["port_id"])


def check_rejected(
    client: TestClient,
    db_url: str,
    headers: dict[str, str],
    method: str,
    path: str,
    body: Any,
    status: int,
    field: str,
) -> dict[str, Any]:
    before = db_rows(db_url)
    r = send(client, method, path, body, headers)
    problem = h.problem(r, status)
    assert field in fields_of(problem), problem
    assert db_rows(db_url) == before, f"{method} {path} changed the database"
    return problem


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_rejected_and_changes_nothing(
    client: TestClient, tenant: Tenant, world: World, router_port: str, db_url: str, case: Bad
) -> None:
    headers = ADMIN if case.admin else tenant.headers
    check_rejected(
        client,
        db_url,
        headers,
        case.method,
        world.fill(case.path),
        world.fill(case.body),
        case.status,
        case.field,
    )


# -- generated over every route that takes a body ----------------------------------------


def body_routes(app: Any) -> list[tuple[str, str, bool]]:
    out = []
    for route in v1_routes(app):
        if getattr(route, "body_field", None) is None:
            continue
        admin = "require_admin" in dependency_names(route.dependant)
        for method in sorted(route.methods):
            out.append((method, route.path, admin))
    return out


PLACEHOLDER = {
    "tenant_id": "tenant",
    "host_id": "host",
    "vpc_id": "vpc",
    "subnet_id": "subnet",
    "port_id": "port",
    "router_id": "router",
    "security_group_id": "group",
    "rule_id": "rule",
    "network_acl_id": "acl",
    "entry_id": "acl_entry",
    "external_network_id": "ext",
    "floating_ip_id": "fip",
    "load_balancer_id": "lb",
    "listener_id": "listener",
    "pool_id": "pool",
    "member_id": "member",
    "health_monitor_id": "monitor",
    "physical_network_id": "physnet",
    "address_scope_id": "scope",
}


def concrete(path: str, world: World) -> str:
    import re

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        assert name in PLACEHOLDER, f"add a placeholder for path parameter {name!r}"
        return world.ids[PLACEHOLDER[name]]

    return re.sub(r"\{(\w+)\}", sub, path)


MALFORMED = [
    pytest.param(Raw(b""), "body", id="empty-body"),
    pytest.param(Raw(b"{"), "body", id="truncated-json"),
    pytest.param(Raw(b'{"name": "x",}'), "body", id="trailing-comma"),
    pytest.param(Raw(b"{'name': 'x'}"), "body", id="single-quotes"),
    pytest.param(Raw(b"null"), "body", id="null"),
    pytest.param(Raw(b"[]"), "body", id="array"),
    pytest.param(Raw(b'"text"'), "body", id="string"),
    pytest.param(Raw(b"42"), "body", id="number"),
    pytest.param(Raw(b'{"name": "x"}', "text/plain"), "body", id="not-json-content-type"),
    pytest.param({"zz_unknown_field": 1}, "body.zz_unknown_field", id="unknown-field"),
]


def test_body_routes_are_found(app: Any) -> None:
    """Guard for the generated tests below: they see every create and update."""
    found = {(m, p) for m, p, _ in body_routes(app)}
    writes = {(m, r.path) for r in v1_routes(app) for m in r.methods if m in ("POST", "PATCH")}
    assert ("POST", "/v1/vpcs") in found
    assert found == writes - {("POST", "/v1/tenants/{tenant_id}/tokens")}


JSON_TYPES = {int: "integer", str: "string", bool: "boolean", list: "array", dict: "object"}
WRONG_VALUES: list[Any] = [12345, "12345", True, ["x"], {"x": 1}]


def allowed_types(schema: dict[str, Any]) -> set[str]:
    """The JSON types a property's schema accepts (type, anyOf, $ref, enum)."""
    if "$ref" in schema:
        return {"object"}
    if "anyOf" in schema:
        return set().union(*(allowed_types(s) for s in schema["anyOf"]))
    if "type" in schema:
        kinds = {schema["type"]} if isinstance(schema["type"], str) else set(schema["type"])
        return kinds | ({"integer"} if "number" in kinds else set())
    if "enum" in schema or "const" in schema:
        values = schema.get("enum", [schema.get("const")])
        return {JSON_TYPES[type(v)] for v in values}
    raise AssertionError(f"cannot tell the type of {schema}")


def wrong_value(schema: dict[str, Any]) -> Any:
    ok = allowed_types(schema)
    return next(v for v in WRONG_VALUES if JSON_TYPES[type(v)] not in ok)


def test_every_field_rejects_a_wrong_json_type(
    app: Any, client: TestClient, tenant: Tenant, world: World, db_url: str
) -> None:
    """For each body field of each route (from the OpenAPI document of the app), a value of
    the wrong JSON type is a 422 naming that field; strings are never coerced to numbers
    or booleans."""
    spec = app.openapi()
    schemas = spec["components"]["schemas"]
    before = db_rows(db_url)
    failures, tried = [], 0
    for method, path, admin in body_routes(app):
        body_schema = spec["paths"][path][method.lower()]["requestBody"]["content"]
        ref = body_schema["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
        for name, prop in schemas[ref]["properties"].items():
            value = wrong_value(prop)
            r = send(
                client,
                method,
                concrete(path, world),
                {name: value},
                ADMIN if admin else tenant.headers,
            )
            tried += 1
            try:
                problem = h.problem(r, 422)
                assert f"body.{name}" in fields_of(problem), problem
            except AssertionError as exc:
                failures.append(f"{method} {path} {name}={value!r}: {exc}")
    assert tried > 60
    assert not failures, "\n".join(failures)
    assert db_rows(db_url) == before


@pytest.mark.parametrize("body,field", MALFORMED)
def test_every_body_route_rejects_malformed_input(
    app: Any,
    client: TestClient,
    tenant: Tenant,
    world: World,
    db_url: str,
    body: Any,
    field: str,
) -> None:
    """Each POST/PATCH with a body, generated from app.routes: 422 naming the body/field."""
    failures = []
    for method, path, admin in body_routes(app):
        headers = ADMIN if admin else tenant.headers
        before = db_rows(db_url)
        r = send(client, method, concrete(path, world), body, headers)
        try:
            problem = h.problem(r, 422)
            assert field in fields_of(problem), problem
            assert db_rows(db_url) == before, "database changed"
        except AssertionError as exc:
            failures.append(f"{method} {path}: {exc}")
    assert not failures, "\n".join(failures)


# -- valid edge cases --------------------------------------------------------------------


def test_slash_30_subnet_has_exactly_two_usable_addresses(
    client: TestClient, tenant: Tenant
) -> None:
    v = h.vpc(client, tenant, "10.0.0.0/16")
    s = h.subnet(client, tenant, v["id"], "10.0.9.0/30")
    assert s["gateway_ip"] == "10.0.9.1"
    assert s["allocation_pools"] == [{"start": "10.0.9.2", "end": "10.0.9.2"}]
    p = h.port(client, tenant, s["id"])
    assert p["ip_address"] == "10.0.9.2"
    r = client.post("/v1/ports", json={"subnet_id": s["id"]}, headers=tenant.headers)
    assert h.problem(r, 409)["type"].endswith("/exhausted")


def test_slash_30_subnet_with_gateway_at_the_end(client: TestClient, tenant: Tenant) -> None:
    v = h.vpc(client, tenant, "10.0.0.0/16")
    s = h.subnet(client, tenant, v["id"], "10.0.9.4/30", gateway_ip="10.0.9.6")
    assert s["allocation_pools"] == [{"start": "10.0.9.5", "end": "10.0.9.5"}]
    assert h.port(client, tenant, s["id"])["ip_address"] == "10.0.9.5"


def test_gateway_at_the_end_of_the_range(client: TestClient, tenant: Tenant) -> None:
    v = h.vpc(client, tenant, "10.0.0.0/16")
    s = h.subnet(client, tenant, v["id"], "10.0.3.0/24", gateway_ip="10.0.3.254")
    assert s["gateway_ip"] == "10.0.3.254"
    assert s["allocation_pools"] == [{"start": "10.0.3.1", "end": "10.0.3.253"}]
    last = int(ipaddress.IPv4Address("10.0.3.253"))
    for _ in range(5):
        got = int(ipaddress.IPv4Address(h.port(client, tenant, s["id"])["ip_address"]))
        assert int(ipaddress.IPv4Address("10.0.3.1")) <= got <= last
    # the last usable address is the gateway, so a port cannot take it
    r = client.post(
        "/v1/ports", json={"subnet_id": s["id"], "ip_address": "10.0.3.254"}, headers=tenant.headers
    )
    h.problem(r, 409)


def test_gateway_in_the_middle_splits_the_default_pool(client: TestClient, tenant: Tenant) -> None:
    v = h.vpc(client, tenant, "10.0.0.0/16")
    s = h.subnet(client, tenant, v["id"], "10.0.3.0/28", gateway_ip="10.0.3.7")
    assert s["allocation_pools"] == [
        {"start": "10.0.3.1", "end": "10.0.3.6"},
        {"start": "10.0.3.8", "end": "10.0.3.14"},
    ]


def test_explicit_pools_are_kept_and_used(client: TestClient, tenant: Tenant) -> None:
    v = h.vpc(client, tenant, "10.0.0.0/16")
    pools = [pool("10.0.3.200", "10.0.3.200"), pool("10.0.3.100", "10.0.3.101")]
    s = h.subnet(client, tenant, v["id"], "10.0.3.0/24", allocation_pools=pools)
    assert s["allocation_pools"] == pools  # what the user wrote, unchanged
    got = {h.port(client, tenant, s["id"])["ip_address"] for _ in range(3)}
    assert got == {"10.0.3.100", "10.0.3.101", "10.0.3.200"}
    r = client.post("/v1/ports", json={"subnet_id": s["id"]}, headers=tenant.headers)
    h.problem(r, 409)
    # a fixed IP may sit outside the pools, as long as it is inside the subnet
    assert h.port(client, tenant, s["id"], ip_address="10.0.3.7")["ip_address"] == "10.0.3.7"


def test_adjacent_pools_and_edges_of_the_subnet(client: TestClient, tenant: Tenant) -> None:
    v = h.vpc(client, tenant, "10.0.0.0/16")
    pools = [pool("10.0.3.2", "10.0.3.127"), pool("10.0.3.128", "10.0.3.254")]
    s = h.subnet(client, tenant, v["id"], "10.0.3.0/24", allocation_pools=pools)
    assert s["allocation_pools"] == pools
    assert h.port(client, tenant, s["id"], ip_address="10.0.3.254")["ip_address"] == "10.0.3.254"


def test_vpc_prefix_bounds(client: TestClient, tenant: Tenant) -> None:
    h.vpc(client, tenant, "10.0.0.0/8")
    h.vpc(client, tenant, "192.168.0.0/28")


def test_subnets_may_touch_and_other_vpcs_may_reuse_cidrs(
    client: TestClient, tenant: Tenant
) -> None:
    a = h.vpc(client, tenant, "10.0.0.0/16")
    b = h.vpc(client, tenant, "10.0.0.0/16")
    h.subnet(client, tenant, a["id"], "10.0.1.0/24")
    h.subnet(client, tenant, a["id"], "10.0.2.0/24")  # adjacent, not overlapping
    h.subnet(client, tenant, a["id"], "10.0.0.0/24")
    h.subnet(client, tenant, b["id"], "10.0.1.0/24")  # same CIDR, another VPC
    h.subnet(client, tenant, a["id"], "10.0.255.252/30")  # the VPC's last /30


def test_valid_port_names_and_macs(client: TestClient, tenant: Tenant) -> None:
    h.host(client, "compute-1")  # ports bind only to registered hosts
    v = h.vpc(client, tenant, "10.0.0.0/16")
    s = h.subnet(client, tenant, v["id"], "10.0.1.0/24")
    p = h.port(
        client,
        tenant,
        s["id"],
        netns="cni-" + "a" * 44,
        interface_name="e" * 15,
        mac_address="02:00:00:AB:cd:01",
        host="compute-1",
    )
    assert (p["netns"], p["interface_name"], p["mac_address"]) == (
        "cni-" + "a" * 44,
        "e" * 15,
        "02:00:00:AB:cd:01",
    )
    p = h.port(client, tenant, s["id"], netns="ns_1.a-b", interface_name="veth.10")
    assert p["netns"] == "ns_1.a-b"


def test_valid_rules_at_the_edges(client: TestClient, tenant: Tenant) -> None:
    v = h.vpc(client, tenant, "10.0.0.0/16")
    g = h.group(client, tenant, v["id"])
    ok: list[dict[str, Any]] = [
        {"protocol": "tcp", "port_min": 1, "port_max": 65535},
        {"protocol": "udp", "port_min": 53, "port_max": 53},
        {"protocol": "tcp", "port_min": 22},
        {"protocol": "icmp", "remote_cidr": "0.0.0.0/0"},
        {"protocol": "any", "remote_group_id": g["id"]},
        {"protocol": "tcp", "direction": "egress", "remote_cidr": "192.0.2.7/32"},
    ]
    for body in ok:
        out = h.rule(client, tenant, g["id"], **body)
        assert {k: out[k] for k in body} == body


def test_error_messages_say_what_is_wrong(client: TestClient, tenant: Tenant) -> None:
    """The message names the fix, not just 'invalid'."""
    r = client.post("/v1/vpcs", json={"cidr": "10.0.0.1/16"}, headers=tenant.headers)
    assert "10.0.0.0/16" in json.dumps(h.problem(r, 422)["errors"])
    r = client.post("/v1/vpcs", json={"cidr": "10.0.0.0/255.255.0.0"}, headers=tenant.headers)
    assert "10.0.0.0/16" in json.dumps(h.problem(r, 422)["errors"])
