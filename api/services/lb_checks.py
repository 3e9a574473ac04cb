"""The cross-field and cross-resource rules of the load-balancer family, each a 4xx naming
the field (DESIGN §3). They read; they never write."""

from __future__ import annotations

import ipaddress
from typing import Any

from sqlalchemy.orm import Session

from api.errors import Conflict, Invalid
from api.rest.preconditions import Lookup
from models import LoadBalancer, Pool, Subnet
from models.loadbalancer import listener_on, member_at, monitor_of

# Which monitors a pool's protocol can run: haproxy checks TCP and HTTP pools (PING, as in
# Octavia, through haproxy's external check running `ping`); the agent's own probes check
# UDP pools: UDP-CONNECT, or PING with its ICMP prober.
MONITORS_FOR = {
    "TCP": ("TCP", "HTTP", "PING"),
    "HTTP": ("TCP", "HTTP", "PING"),
    "UDP": ("UDP-CONNECT", "PING"),
}
HTTP_DEFAULTS = {"http_method": "GET", "url_path": "/", "expected_codes": "200"}


def transport(protocol: str) -> str:
    """The socket a listener takes: HTTP and TCP share TCP ports."""
    return "udp" if protocol == "UDP" else "tcp"


def listener_port_free(
    session: Session, lb_id: str, protocol: str, port: int, field: str, taken: set[Any]
) -> None:
    """One listener per (transport, port) on a load balancer: 409 naming the other."""
    key = (transport(protocol), port)
    other = listener_on(session, lb_id, *key)
    if other is not None or key in taken:
        owner = f"listener {other}" if other else "another listener of this request"
        raise Conflict(
            f"{protocol} port {port} is already taken on this load balancer by {owner}",
            errors=[{"field": field, "message": f"port {port} is taken by {owner}"}],
        )
    taken.add(key)


def pool_matches_listener(listener_protocol: str, pool_protocol: str, field: str) -> None:
    if listener_protocol != pool_protocol:
        raise Invalid(
            field,
            f"the pool's protocol {pool_protocol} does not match "
            f"its listener's protocol {listener_protocol}",
        )


def pool_usable_by(pool: Pool, lb_id: str, listener_protocol: str, field: str) -> None:
    """A listener's default pool: of the same load balancer and protocol."""
    if pool.load_balancer_id != lb_id:
        raise Invalid(field, f"pool {pool.id} belongs to another load balancer")
    pool_matches_listener(listener_protocol, pool.protocol, field)


def monitor_fields(fields: dict[str, Any], pool_protocol: str, prefix: str) -> dict[str, Any]:
    """A monitor's whole field set checked (create, or an update merged over the row), with
    the HTTP defaults filled in."""
    kind = fields["type"]
    if kind not in MONITORS_FOR[pool_protocol]:
        allowed = " or ".join(MONITORS_FOR[pool_protocol])
        raise Invalid(f"{prefix}.type", f"a {pool_protocol} pool is checked by {allowed}")
    if fields["timeout"] > fields["delay"]:
        raise Invalid(
            f"{prefix}.timeout",
            f"the timeout ({fields['timeout']} s) must not exceed the delay ({fields['delay']} s)",
        )
    if kind == "HTTP":
        out = dict(fields)
        for name, default in HTTP_DEFAULTS.items():
            if out.get(name) is None:
                out[name] = default
        codes = str(out["expected_codes"])
        if "-" in codes:
            low, high = (int(c) for c in codes.split("-"))
            if low > high:
                raise Invalid(f"{prefix}.expected_codes", f"the range {codes} is reversed")
        return out
    for name in HTTP_DEFAULTS:
        if fields.get(name) is not None:
            raise Invalid(f"{prefix}.{name}", f"applies only to HTTP monitors, not {kind}")
    return fields


def no_monitor_yet(session: Session, pool_id: str, field: str) -> None:
    existing = monitor_of(session, pool_id)
    if existing is not None:
        raise Conflict(
            f"pool {pool_id} already has health monitor {existing.id}",
            errors=[{"field": field, "message": f"already monitored by {existing.id}"}],
        )


def member_subnet(
    lookup: Lookup, lb: LoadBalancer, subnet_id: str | None, address: str, prefix: str
) -> Subnet:
    """The member's subnet (another tenant's is a 404): of the load balancer's VPC, and
    holding the member's address."""
    subnet = lookup.get(Subnet, subnet_id or lb.vip_subnet_id)
    if subnet.vpc_id != lb.vpc_id:
        raise Invalid(f"{prefix}.subnet_id", "the subnet belongs to another VPC than the LB")
    net = ipaddress.IPv4Network(subnet.cidr)
    ip = ipaddress.IPv4Address(address)
    if ip not in net:
        raise Invalid(f"{prefix}.address", f"{ip} is outside the member's subnet {net}")
    if ip in (net.network_address, net.broadcast_address):
        raise Invalid(f"{prefix}.address", f"{ip} is the network or broadcast address of {net}")
    return subnet


def member_free(
    session: Session, pool_id: str, address: str, port: int, field: str, taken: set[Any]
) -> None:
    key = (pool_id, address, port)
    other = member_at(session, pool_id, address, port)
    if other is not None or key in taken:
        owner = f"member {other}" if other else "another member of this request"
        raise Conflict(
            f"{address}:{port} is already a member of this pool ({owner})",
            errors=[{"field": field, "message": f"already {owner}"}],
        )
    taken.add(key)
