"""The resources vpcctl knows: one row each, from which its CRUD commands are generated.

A row names the API path, the list's columns and filters, and the typed options of
`create`; a test checks every row against the app's OpenAPI document.
"""

import inspect
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

import typer


@dataclass(frozen=True)
class Opt:
    """A typed `create` option: the API field it fills and how it is spelled on the command line."""

    field: str
    help: str
    flags: tuple[str, ...] = ()
    type: type = str
    many: bool = False  # repeatable; the values are sent as a list
    choices: tuple[str, ...] = ()

    @property
    def param(self) -> str:
        return "opt_" + self.field

    @property
    def flag(self) -> str:
        return self.flags[0] if self.flags else "--" + self.field.replace("_", "-")

    def parameter(self) -> inspect.Parameter:
        flags = self.flags or (self.flag,)
        if self.type is bool:
            flags = (f"{flags[0]}/--no-{flags[0][2:]}", *flags[1:])
        # typer takes choices from an Enum (it vendors its own click, so no click.Choice)
        kind: Any = StrEnum(self.field, {c: c for c in self.choices}) if self.choices else self.type
        base: Any = list[kind] if self.many else kind
        extra: dict[str, Any] = {"show_default": False}
        annotation = Annotated[base | None, typer.Option(*flags, help=self.help, **extra)]
        return inspect.Parameter(
            self.param, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
        )


@dataclass(frozen=True)
class Resource:
    name: str  # the sub-command, e.g. "security-groups"
    path: str
    singular: str
    help: str
    columns: tuple[str, ...]
    filters: tuple[str, ...]
    create: tuple[Opt, ...]
    example: str = ""  # a `create --set` example for a field that has no option of its own
    realised: bool = False  # hosts realise it: it has a status, and create can --wait

    @property
    def a(self) -> str:
        """The singular with its article, for help texts."""
        return ("an " if self.singular[0] in "aeiou" else "a ") + self.singular

    @property
    def metavar(self) -> str:
        return self.singular.upper().replace(" ", "_") + "_ID"

    @property
    def flags(self) -> dict[str, str]:
        """The `create` flag of each field that has one (for naming fields in errors)."""
        return {o.field: o.flag for o in self.create}


def ref(field: str, what: str) -> Opt:
    return Opt(field, f"Id of the {what}.")


NAME = Opt("name", "Name.")
POOLS = """--set 'allocation_pools=[{"start":"10.0.0.10","end":"10.0.0.20"}]'"""
DESCRIPTION = Opt("description", "Free-text description.")
TAGS = Opt("tags", "A tag; repeat for several.", ("--tag",), many=True)

RESOURCES: tuple[Resource, ...] = (
    Resource(
        "tenants",
        "/v1/tenants",
        "tenant",
        "Tenants (admin): who owns resources.",
        columns=("id", "name", "description"),
        filters=("name",),
        create=(Opt("name", "Unique tenant name."), DESCRIPTION),
    ),
    Resource(
        "hosts",
        "/v1/hosts",
        "host",
        "Hosts (admin): machines whose agents realise resources.",
        columns=("id", "name", "vtep_ip", "roles", "status", "realised_revision"),
        filters=("name",),
        create=(
            Opt("name", "Host name (what ports' --host refers to)."),
            Opt("vtep_ip", "Underlay address of the host's VXLAN endpoint."),
            Opt(
                "roles",
                "A role; repeat for both.",
                ("--role",),
                many=True,
                choices=("compute", "network"),
            ),
        ),
    ),
    Resource(
        "vpcs",
        "/v1/vpcs",
        "VPC",
        "VPCs: isolated address spaces, each with a default group.",
        columns=("id", "name", "cidr", "tags", "default_security_group_id"),
        filters=("name", "tag", "cidr"),
        create=(
            Opt("cidr", "Address range, e.g. 10.0.0.0/16."),
            NAME,
            DESCRIPTION,
            Opt("dns_domain", "Domain of the VPC's names (default: <name>.vpc.internal)."),
            TAGS,
        ),
    ),
    Resource(
        "subnets",
        "/v1/subnets",
        "subnet",
        "Subnets: a range of a VPC, one L2 segment (VNI).",
        columns=("id", "name", "vpc_id", "cidr", "gateway_ip", "vni", "status"),
        filters=("vpc_id", "name", "tag", "cidr"),
        create=(
            ref("vpc_id", "VPC"),
            Opt("cidr", "Address range inside the VPC, e.g. 10.0.1.0/24."),
            NAME,
            DESCRIPTION,
            Opt("gateway_ip", "Gateway address (default: the first host address)."),
            Opt(
                "dns_nameservers",
                "A DNS server; repeat for several.",
                ("--dns-nameserver",),
                many=True,
            ),
            Opt("enable_dhcp", "Run the subnet's DHCP and DNS service (default on).", type=bool),
            TAGS,
        ),
        example=POOLS,
        realised=True,
    ),
    Resource(
        "ports",
        "/v1/ports",
        "port",
        "Ports: a workload's interface on a subnet.",
        columns=("id", "name", "subnet_id", "ip_address", "mac_address", "host", "status"),
        filters=(
            "subnet_id",
            "host",
            "name",
            "tag",
            "device_id",
            "ip_address",
            "security_group_id",
        ),
        create=(
            ref("subnet_id", "subnet"),
            NAME,
            DESCRIPTION,
            Opt("ip_address", "Fixed address (default: a free one, picked at random)."),
            Opt("mac_address", "MAC address (default: generated)."),
            Opt("host", "Host that carries the port."),
            Opt("netns", "The workload's network namespace on that host."),
            Opt("interface_name", "Interface name inside the namespace (default eth0)."),
            Opt(
                "ip_config",
                "static: the agent sets the address; dhcp: the workload's DHCP client does.",
                choices=("static", "dhcp"),
            ),
            Opt("dns_name", "A DNS label: resolves as <dns-name>.<the VPC's dns_domain>."),
            Opt(
                "security_group_ids",
                "A security group id; repeat for several (default: the VPC's default group).",
                ("--security-group-id",),
                many=True,
            ),
            TAGS,
        ),
        realised=True,
    ),
    Resource(
        "routers",
        "/v1/routers",
        "router",
        "Routers: connect a VPC's subnets and the outside.",
        columns=(
            "id",
            "name",
            "vpc_id",
            "external_network_id",
            "external_ip",
            "subnet_ids",
            "status",
        ),
        filters=("vpc_id", "name", "tag", "external_network_id"),
        create=(
            ref("vpc_id", "VPC"),
            NAME,
            DESCRIPTION,
            ref("external_network_id", "external network for the gateway"),
            Opt(
                "enable_snat",
                "Source-NAT the subnets behind the gateway (default on).",
                ("--snat",),
                type=bool,
            ),
            TAGS,
        ),
        example="""--set 'routes=[{"destination":"192.168.0.0/16","nexthop":"10.0.1.254"}]'""",
        realised=True,
    ),
    Resource(
        "security-groups",
        "/v1/security-groups",
        "security group",
        "Security groups: stateful firewall rule sets for ports.",
        columns=("id", "name", "vpc_id", "is_default", "description"),
        filters=("vpc_id", "name", "tag"),
        create=(ref("vpc_id", "VPC"), NAME, DESCRIPTION, TAGS),
    ),
    Resource(
        "security-group-rules",
        "/v1/security-group-rules",
        "security group rule",
        "Security group rules: what a group lets in or out.",
        columns=(
            "id",
            "security_group_id",
            "direction",
            "protocol",
            "port_min",
            "port_max",
            "remote_cidr",
            "remote_group_id",
        ),
        filters=("security_group_id", "remote_group_id", "direction"),
        create=(
            ref("security_group_id", "security group"),
            Opt("direction", "Traffic direction.", choices=("ingress", "egress")),
            Opt("protocol", "IP protocol.", choices=("tcp", "udp", "icmp", "any")),
            Opt("port_min", "First port (tcp/udp).", type=int),
            Opt("port_max", "Last port (tcp/udp).", type=int),
            Opt("remote_cidr", "Peer address range."),
            ref("remote_group_id", "peer security group"),
            DESCRIPTION,
        ),
    ),
    Resource(
        "network-acls",
        "/v1/network-acls",
        "network ACL",
        "Network ACLs: stateless, ordered allow/deny lists for subnets.",
        columns=("id", "name", "vpc_id", "subnet_ids", "status"),
        filters=("vpc_id", "name", "tag"),
        create=(ref("vpc_id", "VPC"), NAME, DESCRIPTION, TAGS),
        realised=True,
    ),
    Resource(
        "network-acl-entries",
        "/v1/network-acl-entries",
        "network ACL entry",
        "Network ACL entries: evaluated lowest rule number first; the first match wins.",
        columns=(
            "id",
            "network_acl_id",
            "rule_number",
            "direction",
            "action",
            "protocol",
            "port_min",
            "port_max",
            "cidr",
        ),
        filters=("network_acl_id", "direction"),
        create=(
            ref("network_acl_id", "network ACL"),
            Opt("rule_number", "Evaluation order (1-32766), per direction.", type=int),
            Opt("direction", "Traffic direction.", choices=("ingress", "egress")),
            Opt("action", "What a match does.", choices=("allow", "deny")),
            Opt("protocol", "IP protocol.", choices=("tcp", "udp", "icmp", "any")),
            Opt("port_min", "First destination port (tcp/udp).", type=int),
            Opt("port_max", "Last destination port (tcp/udp).", type=int),
            Opt("cidr", "Peer address range."),
            DESCRIPTION,
        ),
    ),
    Resource(
        "external-networks",
        "/v1/external-networks",
        "external network",
        "External networks (admin): where router gateways and floating IPs come from.",
        columns=("id", "name", "cidr", "gateway_ip", "allocation_pools"),
        filters=("name", "tag"),
        create=(
            NAME,
            Opt("cidr", "Address range of the external segment."),
            Opt("gateway_ip", "Upstream gateway on that segment."),
            DESCRIPTION,
            TAGS,
        ),
        example=POOLS.replace("10.0.0.", "203.0.113."),
    ),
    Resource(
        "floating-ips",
        "/v1/floating-ips",
        "floating IP",
        "Floating IPs: public addresses mapped onto ports.",
        columns=(
            "id",
            "address",
            "external_network_id",
            "port_id",
            "fixed_ip_address",
            "router_id",
            "status",
        ),
        filters=("external_network_id", "port_id", "router_id", "tag"),
        create=(
            ref("external_network_id", "external network to allocate from"),
            ref("port_id", "port to associate at once"),
            DESCRIPTION,
            TAGS,
        ),
        realised=True,
    ),
    Resource(
        "load-balancers",
        "/v1/load-balancers",
        "load balancer",
        "Load balancers: a VIP on a subnet; create whole trees with --set listeners=[...].",
        columns=(
            "id",
            "name",
            "vip_address",
            "host",
            "provisioning_status",
            "operating_status",
        ),
        filters=("vpc_id", "vip_subnet_id", "vip_address", "name", "tag"),
        create=(
            ref("vip_subnet_id", "subnet of the VIP"),
            Opt("vip_address", "Fixed VIP address; allocated if omitted."),
            NAME,
            DESCRIPTION,
            TAGS,
        ),
    ),
    Resource(
        "listeners",
        "/v1/listeners",
        "listener",
        "Listeners: a protocol and port on a load balancer's VIP.",
        columns=(
            "id",
            "load_balancer_id",
            "protocol",
            "protocol_port",
            "default_pool_id",
            "provisioning_status",
            "operating_status",
        ),
        filters=(
            "load_balancer_id",
            "default_pool_id",
            "protocol",
            "protocol_port",
            "name",
            "tag",
        ),
        create=(
            ref("load_balancer_id", "load balancer"),
            Opt("protocol", "Protocol.", choices=("TCP", "HTTP", "UDP")),
            Opt("protocol_port", "Port on the VIP.", type=int),
            ref("default_pool_id", "pool it sends to"),
            NAME,
            TAGS,
        ),
    ),
    Resource(
        "pools",
        "/v1/pools",
        "pool",
        "Pools: members and an algorithm (members: /v1/pools/{id}/members).",
        columns=(
            "id",
            "load_balancer_id",
            "protocol",
            "lb_algorithm",
            "provisioning_status",
            "operating_status",
        ),
        filters=("load_balancer_id", "protocol", "lb_algorithm", "name", "tag"),
        create=(
            ref("load_balancer_id", "load balancer"),
            ref("listener_id", "listener whose default pool it becomes"),
            Opt("protocol", "Protocol.", choices=("TCP", "HTTP", "UDP")),
            Opt(
                "lb_algorithm",
                "Algorithm.",
                choices=("ROUND_ROBIN", "LEAST_CONNECTIONS", "SOURCE_IP"),
            ),
            NAME,
            TAGS,
        ),
    ),
    Resource(
        "health-monitors",
        "/v1/health-monitors",
        "health monitor",
        "Health monitors: how a pool's members are checked.",
        columns=("id", "pool_id", "type", "delay", "timeout", "provisioning_status"),
        filters=("pool_id", "type", "name", "tag"),
        create=(
            ref("pool_id", "pool"),
            Opt("type", "Check.", choices=("TCP", "HTTP", "UDP-CONNECT", "PING")),
            Opt("delay", "Seconds between checks.", type=int),
            Opt("timeout", "Seconds a check may take (at most the delay).", type=int),
            Opt("max_retries", "Successes that bring a member back.", type=int),
            Opt("max_retries_down", "Failures that take a member out.", type=int),
            NAME,
            TAGS,
        ),
    ),
)
