"""The host-state protocol (DESIGN §2): one versioned, typed document per host.

The controller compiles a HostState from the DB; the agent applies it only if its
revision is newer than the last one applied, then answers with a Report. The same
document is what `plan()` takes and what unit tests build by hand. This module imports
nothing from api/ or models/, so the agent can depend on it alone.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PROTOCOL_VERSION = 1
TENANT_MTU = 1450  # underlay 1500 - 50 bytes of VXLAN overhead


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


class HostState(_Doc):
    """Everything one host must carry, stamped with a monotonic revision."""

    version: int = PROTOCOL_VERSION
    host: str
    revision: int
    vtep_ip: str
    subnets: list[SubnetState] = []
    ports: list[PortState] = []


class ResourceResult(_Doc):
    kind: Literal["subnet", "port", "router", "security_group", "floating_ip"]
    id: str
    revision: int
    ok: bool
    detail: str | None = None


class Report(_Doc):
    """The agent's answer: which revision it applied and how each resource fared."""

    host: str
    revision: int
    ok: bool
    detail: str | None = None
    full: bool = False
    duration_ms: float | None = None
    ops: int = 0
    results: list[ResourceResult] = []
