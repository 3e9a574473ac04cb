"""Request and response bodies of the load-balancer family (Octavia's shapes).

They live here, not in one route module, because the load balancer's "fully populated"
create nests the listener, pool, member and monitor bodies that their own routes take.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from api.netcheck import IPv4
from api.rest.schemas import Description, Input, Name, NotNull, Patch, Status, Tags, TenantOutput

Protocol = Literal["TCP", "HTTP", "UDP"]
Algorithm = Literal["ROUND_ROBIN", "LEAST_CONNECTIONS", "SOURCE_IP"]
MonitorType = Literal["TCP", "HTTP", "UDP-CONNECT", "PING"]
HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]
Operating = Literal["ONLINE", "OFFLINE", "DEGRADED", "ERROR", "NO_MONITOR"]
PortNumber = Annotated[int, Field(ge=1, le=65535)]
Weight = Annotated[int, Field(ge=0, le=256, description="0 drains: no new connections.")]
Seconds = Annotated[int, Field(ge=1, le=3600)]
Retries = Annotated[int, Field(ge=1, le=10)]
UrlPath = Annotated[str, Field(pattern=r"^/[\x21-\x7e]*$", max_length=255)]
ExpectedCodes = Annotated[
    str,
    Field(
        pattern=r"^[1-5]\d\d(-[1-5]\d\d|(,[1-5]\d\d)*)$",
        description="One code (200), a list (200,202) or a range (200-204).",
    ),
]


# -- the nested specs (also the bodies of the children's own creates) ------------------------


class MemberSpec(Input):
    name: Name = ""
    address: IPv4
    protocol_port: PortNumber
    weight: Weight = 1
    subnet_id: str | None = Field(
        default=None, description="The member's subnet; the VIP subnet if omitted."
    )
    admin_state_up: bool = True
    tags: Tags = []


class MonitorSpec(Input):
    name: Name = ""
    type: MonitorType
    delay: Seconds
    timeout: Seconds
    max_retries: Retries
    max_retries_down: Retries = 3
    http_method: HttpMethod | None = None
    url_path: UrlPath | None = None
    expected_codes: ExpectedCodes | None = None
    admin_state_up: bool = True
    tags: Tags = []


class PoolFields(Input):
    name: Name = ""
    description: Description = ""
    protocol: Protocol
    lb_algorithm: Algorithm
    admin_state_up: bool = True
    tags: Tags = []


class PoolSpec(PoolFields):
    """A pool inside a fully populated load balancer, with its members and monitor."""

    members: Annotated[list[MemberSpec], Field(max_length=256)] = []
    healthmonitor: MonitorSpec | None = None


class ListenerFields(Input):
    name: Name = ""
    description: Description = ""
    protocol: Protocol
    protocol_port: PortNumber
    admin_state_up: bool = True
    tags: Tags = []


class ListenerSpec(ListenerFields):
    default_pool: PoolSpec | None = None


# -- creates and updates --------------------------------------------------------------------


class LoadBalancerCreate(Input):
    name: Name = ""
    description: Description = ""
    vip_subnet_id: str
    vip_address: IPv4 | None = Field(default=None, description="Allocated if omitted.")
    admin_state_up: bool = True
    tags: Tags = []
    listeners: Annotated[list[ListenerSpec], Field(max_length=16)] = []
    pools: Annotated[list[PoolSpec], Field(max_length=16)] = Field(
        default=[], description="Pools no listener uses as its default (yet)."
    )


class LoadBalancerUpdate(Patch):
    immutable = frozenset({"vip_subnet_id", "vip_address"})
    name: Name | None = NotNull()
    description: Description | None = NotNull()
    admin_state_up: bool | None = NotNull()
    tags: Tags | None = NotNull()


class ListenerCreate(ListenerFields):
    load_balancer_id: str
    default_pool_id: str | None = None


class ListenerUpdate(Patch):
    immutable = frozenset({"load_balancer_id", "protocol", "protocol_port"})
    name: Name | None = NotNull()
    description: Description | None = NotNull()
    default_pool_id: str | None = None
    admin_state_up: bool | None = NotNull()
    tags: Tags | None = NotNull()


class PoolCreate(PoolFields):
    load_balancer_id: str | None = None
    listener_id: str | None = Field(
        default=None, description="Make the pool this listener's default pool."
    )


class PoolUpdate(Patch):
    immutable = frozenset({"load_balancer_id", "protocol"})
    name: Name | None = NotNull()
    description: Description | None = NotNull()
    lb_algorithm: Algorithm | None = NotNull()
    admin_state_up: bool | None = NotNull()
    tags: Tags | None = NotNull()


class MemberCreate(MemberSpec):
    pass


class MemberUpdate(Patch):
    immutable = frozenset({"address", "protocol_port", "subnet_id"})
    name: Name | None = NotNull()
    weight: Weight | None = NotNull()
    admin_state_up: bool | None = NotNull()
    tags: Tags | None = NotNull()


class MonitorCreate(MonitorSpec):
    pool_id: str


class MonitorUpdate(Patch):
    immutable = frozenset({"pool_id", "type"})
    name: Name | None = NotNull()
    delay: Seconds | None = NotNull()
    timeout: Seconds | None = NotNull()
    max_retries: Retries | None = NotNull()
    max_retries_down: Retries | None = NotNull()
    http_method: HttpMethod | None = NotNull()
    url_path: UrlPath | None = NotNull()
    expected_codes: ExpectedCodes | None = NotNull()
    admin_state_up: bool | None = NotNull()
    tags: Tags | None = NotNull()


# -- answers --------------------------------------------------------------------------------


class Provisioned(TenantOutput):
    """`provisioning_status` is whether the LB's host realised this revision (Octavia's
    name for what other resources call `status`)."""

    name: str
    admin_state_up: bool
    tags: list[str]
    provisioning_status: Status
    status_detail: str | None = None


class Operated(Provisioned):
    operating_status: Operating


class MemberRef(BaseModel):
    id: str
    address: str
    protocol_port: int


class PoolRef(BaseModel):
    id: str
    protocol: Protocol
    members: list[MemberRef]
    healthmonitor_id: str | None


class ListenerRef(BaseModel):
    id: str
    protocol: Protocol
    protocol_port: int
    default_pool_id: str | None


class LoadBalancerOut(Operated):
    description: str
    vpc_id: str
    vip_subnet_id: str
    vip_address: str
    vip_port_id: str | None
    host: str | None
    listeners: list[ListenerRef]
    pools: list[PoolRef]


class ListenerOut(Operated):
    load_balancer_id: str
    description: str
    protocol: Protocol
    protocol_port: int
    default_pool_id: str | None


class PoolOut(Operated):
    load_balancer_id: str
    description: str
    protocol: Protocol
    lb_algorithm: Algorithm
    listener_ids: list[str]
    healthmonitor_id: str | None


class MemberOut(Operated):
    pool_id: str
    address: str
    protocol_port: int
    weight: int
    subnet_id: str


class MonitorOut(Provisioned):
    pool_id: str
    type: MonitorType
    delay: int
    timeout: int
    max_retries: int
    max_retries_down: int
    http_method: HttpMethod | None
    url_path: str | None
    expected_codes: str | None
