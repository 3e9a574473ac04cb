"""The one table from op type to the kernel method that carries it out.

Every kernel the agent can drive (the real one in workers/agent/kernel.py, the
in-memory model the unit tests check plans against) implements one method per row,
taking the op; `apply` looks the method up here. Adding an op type is: its planner, its
driver, one row.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from workers.agent.ops import Op
from workers.agent.planners.dhcp_dns import (
    ConfigureServiceLeg,
    CreateServiceLeg,
    CreateServiceNetns,
    DeleteServiceLeg,
    DeleteServiceNetns,
    ReloadDnsmasq,
    RemoveResolvConf,
    RemoveServiceFiles,
    StartDnsmasq,
    StopDnsmasq,
    WriteResolvConf,
    WriteServiceFiles,
)
from workers.agent.planners.firewall import (
    CutConntrack,
    DestroyIpsets,
    FillIpsets,
    RestoreNetnsRuleset,
    RestoreRuleset,
    SetSysctls,
)
from workers.agent.planners.l2 import (
    AddFdb,
    ConfigureBridge,
    ConfigureVxlan,
    CreateBridge,
    CreateVxlan,
    DeleteBridge,
    DeleteVxlan,
    DelFdb,
)
from workers.agent.planners.lb import EnableForwarding, ReloadHaproxy, StartHaproxy, StopHaproxy
from workers.agent.planners.nat import Announce, FlushConntrack, RestoreRouterRuleset
from workers.agent.planners.ports import (
    ConfigureHostVeth,
    ConfigurePort,
    CreateNetns,
    CreatePort,
    DeleteNetns,
    DeletePort,
)
from workers.agent.planners.router import (
    ConfigureLegHost,
    ConfigureRouter,
    ConfigureRouterLink,
    CreateLeg,
    DeleteExtBridge,
    DeleteLeg,
    EnsureExtBridge,
)
from workers.agent.planners.typed import (
    ConfigureRoutedHost,
    ConfigureTypedWorkload,
    CreateFlatPort,
    CreateRoutedPort,
    DeleteRoutedVeth,
    SetTypedRoutes,
)

HANDLERS: Mapping[type[Op], str] = MappingProxyType(
    {
        DeleteNetns: "delete_netns",
        DeletePort: "delete_port",
        DeleteVxlan: "delete_vxlan",
        DeleteBridge: "delete_bridge",
        CreateNetns: "create_netns",
        CreateBridge: "create_bridge",
        ConfigureBridge: "configure_bridge",
        CreateVxlan: "create_vxlan",
        ConfigureVxlan: "configure_vxlan",
        DelFdb: "del_fdb",
        AddFdb: "add_fdb",
        CreatePort: "create_port",
        ConfigureHostVeth: "configure_host_veth",
        ConfigurePort: "configure_port",
        FillIpsets: "fill_ipsets",
        RestoreRuleset: "restore_ruleset",
        RestoreNetnsRuleset: "restore_ruleset",
        DestroyIpsets: "destroy_ipsets",
        DeleteLeg: "delete_leg",
        DeleteExtBridge: "delete_ext_bridge",
        EnsureExtBridge: "ensure_ext_bridge",
        CreateLeg: "create_leg",
        ConfigureLegHost: "configure_leg_host",
        ConfigureRouterLink: "configure_router_link",
        ConfigureRouter: "configure_router",
        RestoreRouterRuleset: "restore_router_ruleset",
        FlushConntrack: "flush_conntrack",
        Announce: "announce",
        StopDnsmasq: "stop_dnsmasq",
        DeleteServiceNetns: "delete_service_netns",
        RemoveServiceFiles: "remove_service_files",
        DeleteServiceLeg: "delete_service_leg",
        CreateServiceNetns: "create_service_netns",
        CreateServiceLeg: "create_service_leg",
        ConfigureServiceLeg: "configure_service_leg",
        WriteServiceFiles: "write_service_files",
        StartDnsmasq: "start_dnsmasq",
        ReloadDnsmasq: "reload_dnsmasq",
        WriteResolvConf: "write_resolv_conf",
        RemoveResolvConf: "remove_resolv_conf",
        SetSysctls: "set_sysctls",
        CutConntrack: "cut_conntrack",
        StopHaproxy: "stop_haproxy",
        StartHaproxy: "start_haproxy",
        ReloadHaproxy: "reload_haproxy",
        EnableForwarding: "enable_forwarding",
        DeleteRoutedVeth: "delete_routed_veth",
        CreateRoutedPort: "create_routed_port",
        CreateFlatPort: "create_flat_port",
        ConfigureRoutedHost: "configure_routed_host",
        ConfigureTypedWorkload: "configure_typed_workload",
        SetTypedRoutes: "set_typed_routes",
    }
)


def apply(kernel: object, op: Op) -> None:
    """Carry out `op` on `kernel` through its row; an op without a row is a bug."""
    name = HANDLERS.get(type(op))
    if name is None:
        raise TypeError(f"no driver for {op!r}")
    getattr(kernel, name)(op)
