"""What a subnet's network type allows (DESIGN §4), checked at the API.

- `vxlan`: as before.
- `flat`: on an admin-made physical network the tenant may use (shared or granted); a VLAN
  (`segmentation_id`) only where every host mapping that network reports 8021q; CIDRs on
  one segment never overlap across tenants. No DHCP service (the segment has its own), no
  router interfaces (the gateway is on the physical network), no security groups and no
  network ACL: a macvlan child's traffic never crosses the host's netfilter, so neither
  could be enforced.
- `routed`: inside an admin-defined address scope, never overlapping another routed subnet
  (any tenant's): without encapsulation the underlay cannot tell overlapping addresses
  apart. Security groups and network ACLs apply (on the host-side veth); no DHCP service
  or router interface (every port routes through its host, gateway 169.254.1.1).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from api.errors import Conflict, Invalid
from models import AddressScope, Host, PhysicalNetwork, Subnet
from models.nettypes import (
    FLAT,
    ROUTED,
    VXLAN,
    lock_row,
    may_use,
    physical_network_named,
    scopes,
    subnets_sharing_underlay,
)

VLAN_CAPABILITY = "8021q"


def subnet_fields(
    session: Session, tenant_id: str, body: Any, net: ipaddress.IPv4Network
) -> dict[str, Any]:
    """The type's columns for a new subnet (the body has network_type, physical_network,
    segmentation_id, enable_dhcp); 422 for a wrong combination, 409 for a conflict."""
    kind = body.network_type
    fields: dict[str, Any] = {"network_type": kind, "address_scope_id": None}
    if kind != FLAT:
        for name in ("physical_network", "segmentation_id"):
            if getattr(body, name) is not None:
                raise Invalid(f"body.{name}", f"only a flat subnet has a {name}")
    if kind != VXLAN and body.enable_dhcp:
        raise Invalid("body.enable_dhcp", f"a {kind} subnet has no DHCP service")
    if kind == FLAT:
        _flat(session, tenant_id, body, net)
    elif kind == ROUTED:
        fields["address_scope_id"] = _routed(session, tenant_id, net)
    return fields


def _flat(session: Session, tenant_id: str, body: Any, net: ipaddress.IPv4Network) -> None:
    if body.physical_network is None:
        raise Invalid("body.physical_network", "a flat subnet needs a physical network")
    physnet = physical_network_named(session, body.physical_network)
    if physnet is None or not may_use(session, physnet, tenant_id):
        raise Invalid(
            "body.physical_network",
            f"no physical network named {body.physical_network!r} is available to this tenant",
        )
    if body.segmentation_id is not None:
        check_vlan(session, physnet.name, body.segmentation_id)
    lock_row(session, PhysicalNetwork, physnet.id)
    segment = f"physical network {physnet.name!r}"
    if body.segmentation_id is not None:
        segment += f" VLAN {body.segmentation_id}"
    _no_overlap(session, tenant_id, net, FLAT, segment, physnet.name, body.segmentation_id)


def check_vlan(session: Session, physical_network: str, vlan: int) -> None:
    hosts = [h for h in session.scalars(sa.select(Host).order_by(Host.name))]
    carrying = [h for h in hosts if physical_network in h.physical_networks]
    if not carrying:
        raise Conflict(
            f"VLAN {vlan} refused: no host maps physical network {physical_network!r}, so "
            f"none can be shown to support 802.1Q ({VLAN_CAPABILITY})"
        )
    lacking = [h.name for h in carrying if VLAN_CAPABILITY not in h.capabilities]
    if lacking:
        raise Conflict(
            f"VLAN {vlan} refused: hosts {', '.join(lacking)} carry physical network "
            f"{physical_network!r} but their kernels lack 802.1Q ({VLAN_CAPABILITY})",
            errors=[{"field": "body.segmentation_id", "message": "hosts lack 8021q"}],
        )


def _routed(session: Session, tenant_id: str, net: ipaddress.IPv4Network) -> str:
    scope = next((s for s in scopes(session) if net.subnet_of(ipaddress.IPv4Network(s.cidr))), None)
    if scope is None:
        raise Invalid(
            "body.cidr",
            f"{net} is not inside any routed address scope (see GET /v1/address-scopes)",
        )
    lock_row(session, AddressScope, scope.id)
    _no_overlap(session, tenant_id, net, ROUTED, f"address scope {scope.id}", None, None)
    return scope.id


def _no_overlap(
    session: Session,
    tenant_id: str,
    net: ipaddress.IPv4Network,
    kind: str,
    domain: str,
    physical_network: str | None,
    vlan: int | None,
) -> None:
    """Another tenant's subnet is not named (no existence leak), only the reason."""
    for ident, owner, cidr in subnets_sharing_underlay(session, kind, physical_network, vlan):
        if not net.overlaps(ipaddress.IPv4Network(cidr)):
            continue
        whose = f"subnet {ident} ({cidr})" if owner == tenant_id else "another tenant's subnet"
        raise Conflict(
            f"{net} overlaps {whose} in {domain}: without encapsulation the underlay cannot "
            "tell overlapping addresses apart, so these CIDRs are unique across tenants",
            errors=[{"field": "body.cidr", "message": "overlaps an existing subnet"}],
        )


def check_dhcp(subnet: Subnet, enable_dhcp: bool | None) -> None:
    if enable_dhcp and subnet.network_type != VXLAN:
        raise Invalid("body.enable_dhcp", f"a {subnet.network_type} subnet has no DHCP service")


def check_acl(subnet: Subnet, acl_id: str | None) -> None:
    """A flat subnet takes no ACL: no host could enforce it (the ACL would stay pending)."""
    if acl_id is not None and subnet.network_type == FLAT:
        raise Conflict(
            "a network ACL cannot be enforced on a flat subnet: its ports' macvlan traffic "
            "goes straight to the physical interface and never crosses the host's netfilter",
            errors=[{"field": "body.network_acl_id", "message": "must be null"}],
        )


def port_groups(subnet: Subnet, resolved: list[str], given: list[str] | None) -> list[str]:
    """A flat port has no groups (none could be enforced): the VPC's default one is not
    applied, and naming any is a 409 that says why."""
    if subnet.network_type != FLAT:
        return resolved
    if given:
        raise Conflict(
            "security groups cannot be enforced on a flat port: its macvlan traffic goes "
            "straight to the physical interface and never crosses the host's netfilter",
            errors=[{"field": "body.security_group_ids", "message": "must be empty"}],
        )
    return []


def check_port_host(session: Session, subnet: Subnet, host: str | None) -> None:
    """A flat port binds only to a host that maps its physical network (and, on a VLAN,
    whose kernel has 8021q)."""
    if subnet.network_type != FLAT or host is None:
        return
    row = session.scalar(sa.select(Host).where(Host.name == host))
    if row is None:
        return
    if subnet.physical_network not in row.physical_networks:
        raise Conflict(
            f"host {host!r} does not map physical network {subnet.physical_network!r} "
            "(agent flag --physical-interface)",
            errors=[{"field": "body.host", "message": "physical network not mapped"}],
        )
    if subnet.segmentation_id is not None and VLAN_CAPABILITY not in row.capabilities:
        raise Conflict(
            f"host {host!r} lacks 802.1Q ({VLAN_CAPABILITY}) for VLAN {subnet.segmentation_id}",
            errors=[{"field": "body.host", "message": "kernel lacks 8021q"}],
        )


def check_router_leg(subnet: Subnet) -> None:
    if subnet.network_type == FLAT:
        raise Conflict("a flat subnet's gateway is on its physical network, not a vpcd router")
    if subnet.network_type == ROUTED:
        raise Conflict(
            "a routed subnet has no router interface: each port routes through its host "
            "(gateway 169.254.1.1)"
        )
