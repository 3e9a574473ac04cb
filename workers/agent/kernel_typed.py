"""The real kernel's methods for flat and routed ports (planners/typed.py's ops), mixed
into HostKernel: one driver call (or a few idempotent ones) per op."""

from __future__ import annotations

from typing import Any

from workers.agent import drivers
from workers.agent.drivers import Netlink
from workers.agent.drivers import typed as tdrv
from workers.agent.planners.typed import (
    ConfigureRoutedHost,
    ConfigureTypedWorkload,
    CreateFlatPort,
    CreateRoutedPort,
    DeleteRoutedVeth,
    SetTypedRoutes,
)
from workers.agent.typed_state import IP_FORWARD, PROXY_ARP
from workers.protocol import ROUTED_GATEWAY


class TypedKernel:
    nl: Netlink
    host_netns: str | None

    def _thost(self) -> Any:
        return self.nl.handle(self.host_netns)

    def delete_routed_veth(self, op: DeleteRoutedVeth) -> None:
        ipr = self._thost()
        found = drivers.get_link(ipr, op.veth)
        if found is not None:
            tdrv.delete_link(ipr, int(found["index"]))

    def create_routed_port(self, op: CreateRoutedPort) -> None:
        tdrv.create_routed_veth(self._thost(), op.veth, op.mtu, op.netns, op.ifname, op.mac)

    def create_flat_port(self, op: CreateFlatPort) -> None:
        ipr = self._thost()
        parent = drivers.link_index(ipr, op.parent)
        tdrv.create_macvlan(ipr, parent, op.netns, op.ifname, op.mac, op.mtu)

    def configure_routed_host(self, op: ConfigureRoutedHost) -> None:
        ipr = self._thost()
        i = drivers.link_index(ipr, op.veth)
        drivers.set_link(ipr, i, mtu=op.mtu, up=True)
        drivers.sysctl.write(self.host_netns, {PROXY_ARP.format(op.veth): "1"})
        drivers.add_address(ipr, i, f"{ROUTED_GATEWAY}/32")

    def configure_typed_workload(self, op: ConfigureTypedWorkload) -> None:
        ipr = self.nl.handle(op.netns)
        i = drivers.link_index(ipr, op.ifname)
        if op.mac is not None or op.mtu is not None or op.up:
            drivers.set_link(ipr, i, address=op.mac, mtu=op.mtu, up=True if op.up else None)
        for cidr in op.del_addresses:
            drivers.delete_address(ipr, i, cidr)
        for cidr in op.add_addresses:
            drivers.add_address(ipr, i, cidr)
        for r in op.del_routes:
            tdrv.delete_route(ipr, r.destination, r.gateway, i)
        for r in op.routes if op.del_addresses else op.add_routes:
            tdrv.add_route(ipr, r.destination, r.gateway, i)

    def set_typed_routes(self, op: SetTypedRoutes) -> None:
        ipr = self._thost()
        if op.forwarding:
            drivers.sysctl.write(self.host_netns, {IP_FORWARD: "1"})
        for r in op.delete:
            found = drivers.get_link(ipr, r.device) if r.device else None
            if r.device and found is None:
                continue  # its interface went, and the route with it
            tdrv.delete_route(ipr, r.destination, r.gateway, found and int(found["index"]))
        for r in op.add:
            oif = drivers.link_index(ipr, r.device) if r.device else None
            tdrv.add_route(ipr, r.destination, r.gateway, oif)
