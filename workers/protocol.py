"""The host-state protocol (DESIGN §2): one versioned, typed document per host.

The controller compiles a HostState from the DB; the agent applies it only if its
revision is newer than the last one applied, then answers with a Report. The same
document is what `plan()` takes and what unit tests build by hand. This module imports
nothing from api/ or models/, so the agent can depend on it alone.

Mixed-version rollouts: the document's top-level lists are *sections*. Each agent
advertises the protocol version and the sections it supports in its heartbeat; the
controller sends only those, so adding a section needs no version bump (the version
changes only when the envelope itself does). An agent refuses a document with a section
it does not know, whole: a partial apply would report success for half a host.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PROTOCOL_VERSION = 1
TENANT_MTU = 1450  # underlay 1500 - 50 bytes of VXLAN overhead

# What an agent that sends no sections in its heartbeat (an older one) supports.
SECTIONS_L2: tuple[str, ...] = ("subnets", "ports")


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RemotePort(_Doc):
    """A port of this subnet on another host: a unicast FDB entry MAC -> VTEP."""

    mac: str
    ip: str
    vtep_ip: str


class Route(_Doc):
    destination: str
    nexthop: str


class SubnetState(_Doc):
    id: str
    revision: int
    vni: int
    cidr: str
    gateway_ip: str
    mtu: int = TENANT_MTU
    routed: bool = Field(
        default=False, description="A router serves this subnet: ports get a default route."
    )
    host_routes: list[Route] = []
    remote_vteps: list[str] = Field(
        default=[], description="Flood entries: every other host carrying this subnet."
    )
    remote_ports: list[RemotePort] = []


class PortState(_Doc):
    id: str
    revision: int
    subnet_id: str
    tenant_id: str = Field(default="", description="A workload namespace is one tenant's.")
    netns: str = Field(description="The workload namespace, as the user named it.")
    interface_name: str = "eth0"
    mac: str
    ip: str
    prefixlen: int
    security_group_ids: list[str] | None = Field(
        default=None,
        description="The port's security groups (their union applies); [] denies all "
        "ingress. None: the port is not filtered (a document without the security_groups "
        "section, which then carries no such field).",
    )


class SecurityGroupRuleState(_Doc):
    """One allow rule of a group: what it matches, from/to a CIDR or a remote group."""

    id: str
    direction: Literal["ingress", "egress"]
    protocol: Literal["tcp", "udp", "icmp", "any"]
    port_min: int | None = None
    port_max: int | None = None
    remote_cidr: str | None = None
    remote_group_id: str | None = None


class SecurityGroupState(_Doc):
    """A group a local port uses, or one a local group's rule names as remote group.

    `members` (the IPs of every port in the group, on any host) is filled only for a
    group some rule in the document names as its remote group: the host keeps it in an
    ipset, so rules never depend on the group's size."""

    id: str
    revision: int
    rules: list[SecurityGroupRuleState] = []
    members: list[str] = []


class NetworkAclEntryState(_Doc):
    rule_number: int
    direction: Literal["ingress", "egress"]
    action: Literal["allow", "deny"]
    protocol: Literal["tcp", "udp", "icmp", "any"]
    port_min: int | None = None
    port_max: int | None = None
    cidr: str


class NetworkAclState(_Doc):
    """A stateless ACL on this host's subnets `subnet_ids`: entries in rule-number order
    per direction, the first match wins, no match is denied."""

    id: str
    revision: int
    subnet_ids: list[str]
    entries: list[NetworkAclEntryState] = []


class RouterInterfaceState(_Doc):
    """A router leg: the subnet's gateway IP on the host's bridge of that subnet (whose
    VNI and MTU the subnets section carries). The leg is a port of its own: an agent
    reports it as kind "port" at `port_revision`, next to the router's result."""

    subnet_id: str
    port_id: str
    port_revision: int
    gateway_ip: str
    prefixlen: int
    mac: str


class ExternalGatewayState(_Doc):
    external_network_id: str
    cidr: str
    gateway_ip: str = Field(description="The external network's next hop.")
    external_ip: str = Field(description="The router's own address on the external network.")


class FloatingIpState(_Doc):
    """A 1:1 NAT on the router's gateway leg: DNAT to `fixed_ip`, SNAT from it."""

    id: str
    revision: int
    address: str
    fixed_ip: str
    port_id: str


class RouterState(_Doc):
    """A router on this host (DESIGN §4): its legs, gateway, SNAT, routes and floating IPs."""

    id: str
    revision: int
    interfaces: list[RouterInterfaceState] = []
    external_gateway: ExternalGatewayState | None = None
    enable_snat: bool = True
    routes: list[Route] = []
    floating_ips: list[FloatingIpState] = []


class DhcpLease(_Doc):
    """A static lease: this MAC always gets this (IPAM) address, and the hostname."""

    mac: str
    ip: str
    hostname: str | None = None


class DnsRecord(_Doc):
    name: str = Field(description="A fully qualified name, lower case, without trailing dot.")
    ip: str


class DhcpDnsState(_Doc):
    """A subnet's DHCP and DNS service on this host (DESIGN §4): one dnsmasq in a netns
    of its own with a leg (the service port) on the subnet's bridge, whose VNI and MTU
    the subnets section carries. Static leases only; names of the whole VPC. The leg is
    a port: an agent reports it as kind "port" at `port_revision`."""

    subnet_id: str
    revision: int
    port_id: str
    port_revision: int
    mac: str
    address: str
    cidr: str
    mtu: int = TENANT_MTU
    router: str | None = Field(default=None, description="The gateway, when a router serves it.")
    host_routes: list[Route] = []
    domain: str
    upstreams: list[str] = Field(default=[], description="Resolvers other names go to.")
    leases: list[DhcpLease] = []
    hosts: list[DnsRecord] = Field(default=[], description="Every named port of the VPC.")


class ResolverState(_Doc):
    """What workloads of a subnet on this host get from its DHCP/DNS service: the resolver
    for `/etc/netns/<netns>/resolv.conf`, and which ports take their address by DHCP (their
    interface comes up without one)."""

    subnet_id: str
    nameserver: str | None = None
    domain: str
    dhcp_ports: list[str] = []


class MemberState(_Doc):
    id: str
    revision: int
    address: str
    protocol_port: int
    weight: int = Field(description="0 drains: no new connections, open ones finish.")
    admin_state_up: bool = True


class MonitorState(_Doc):
    """A pool's health check: haproxy's for TCP/HTTP pools, the agent's probes for UDP."""

    id: str
    revision: int
    type: Literal["TCP", "HTTP", "UDP-CONNECT", "PING"]
    delay: int
    timeout: int
    max_retries: int = Field(description="Successes that bring a member back (rise).")
    max_retries_down: int = Field(description="Failures that take a member out (fall).")
    http_method: str | None = None
    url_path: str | None = None
    expected_codes: str | None = None
    admin_state_up: bool = True


class PoolState(_Doc):
    id: str
    revision: int
    protocol: Literal["TCP", "HTTP", "UDP"]
    lb_algorithm: Literal["ROUND_ROBIN", "LEAST_CONNECTIONS", "SOURCE_IP"]
    admin_state_up: bool = True
    members: list[MemberState] = []
    monitor: MonitorState | None = None


class ListenerState(_Doc):
    id: str
    revision: int
    protocol: Literal["TCP", "HTTP", "UDP"]
    protocol_port: int
    admin_state_up: bool = True
    default_pool_id: str | None = None


class LoadBalancerState(_Doc):
    """A load balancer on this host (DESIGN §4): its namespace (named from its id) with a
    VIP leg on the host's bridge of the VIP subnet (which the subnets section carries).
    The VIP is a port of its own: an agent reports it as kind "port" at
    `vip_port_revision`."""

    id: str
    revision: int
    admin_state_up: bool = True
    subnet_id: str
    vip_port_id: str
    vip_port_revision: int
    vip_address: str
    prefixlen: int
    mac: str
    gateway_ip: str | None = Field(
        default=None, description="The default route, when a router serves the subnet."
    )
    listeners: list[ListenerState] = []
    pools: list[PoolState] = []


UNDERLAY_MTU = 1500  # flat and routed ports: no encapsulation overhead
ROUTED_GATEWAY = "169.254.1.1"  # a routed workload's default gateway, on the host side


class TypedNetworkState(_Doc):
    """A `flat` or `routed` subnet (DESIGN §4) with its ports on this host: no bridge, no
    VXLAN. flat: each port a macvlan (bridge mode) child of the interface the agent maps
    `physical_network` to, on VLAN `segmentation_id` if set, gateway on the physical
    network. routed: each port a veth whose host side has proxy ARP and a /32 route to it,
    the workload's default route via ROUTED_GATEWAY; `remote_ports` are the subnet's ports
    on other hosts, each a /32 route via that host's underlay address (`vtep_ip`)."""

    id: str
    revision: int
    network_type: Literal["flat", "routed"]
    cidr: str
    gateway_ip: str
    mtu: int = UNDERLAY_MTU
    physical_network: str | None = None
    segmentation_id: int | None = None
    host_routes: list[Route] = []
    ports: list[PortState] = []
    remote_ports: list[RemotePort] = []


class HostState(_Doc):
    """Everything one host must carry, stamped with a monotonic revision."""

    version: int = PROTOCOL_VERSION
    host: str
    revision: int
    vtep_ip: str
    subnets: list[SubnetState] = []
    ports: list[PortState] = []
    routers: list[RouterState] = []
    dhcp_dns: list[DhcpDnsState] = []
    resolvers: list[ResolverState] = []
    security_groups: list[SecurityGroupState] = []
    network_acls: list[NetworkAclState] = []
    load_balancers: list[LoadBalancerState] = []
    typed_networks: list[TypedNetworkState] = []

    def wire(self, sections: Iterable[str]) -> dict[str, Any]:
        """The document as sent to a host supporting `sections`: other sections absent,
        not empty, so an older agent (which forbids unknown fields) can read it; without
        the security_groups section the ports carry no group ids either."""
        drop = set(SECTIONS) - set(sections)
        body = self.model_dump(mode="json", exclude=drop)
        if "security_groups" in drop:
            for port in body.get("ports", []):
                port.pop("security_group_ids", None)
        return body


HEADER: frozenset[str] = frozenset({"version", "host", "revision", "vtep_ip"})
SECTIONS: tuple[str, ...] = tuple(f for f in HostState.model_fields if f not in HEADER)


def unsupported_sections(doc: Mapping[str, Any], supported: Iterable[str]) -> list[str]:
    """The document's top-level sections outside `supported` (unknown ones included)."""
    return sorted(set(doc) - HEADER - set(supported))


Operating = Literal["ONLINE", "OFFLINE", "DEGRADED", "ERROR", "NO_MONITOR"]


class ResourceResult(_Doc):
    kind: Literal[
        "subnet",
        "port",
        "router",
        "security_group",
        "floating_ip",
        "network_acl",
        "load_balancer",
        "listener",
        "pool",
        "member",
        "health_monitor",
    ]
    id: str
    revision: int
    ok: bool
    detail: str | None = None
    operating_status: Operating | None = Field(
        default=None,
        description="What the data plane sees (load balancers, listeners, pools, members); "
        "absent from agents that do not measure it.",
    )


class Report(_Doc):
    """The agent's answer: which revision it applied and how each resource fared."""

    host: str
    revision: int
    ok: bool
    detail: str | None = None
    full: bool = False
    duration_ms: float | None = None
    ops: int = 0
    # Optional (older agents send none of these): what the controller exports per host.
    ops_by_type: dict[str, int] = Field(
        default={}, description="Kernel ops applied successfully, by op type."
    )
    errors: int = Field(default=0, description="Ops that failed in this sync.")
    applied_revision: int | None = Field(
        default=None, description="The newest revision this agent has applied in full."
    )
    applied: bool = Field(
        default=True, description="False when the agent refused the document whole."
    )
    results: list[ResourceResult] = []
    # Only in answer to an incremental document (docdelta), so only to controllers that
    # send them: `results` holds just the results that changed since the last report,
    # `removed` the resources no longer carried.
    partial: bool = False
    removed: list[str] = []
