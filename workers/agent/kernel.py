"""The real kernel behind the dispatch table: one method per op type, each a thin call
into workers/agent/drivers. It resolves names to ifindexes once per apply, maps the
host namespace (None in ops) to the agent's, and counts the userspace tool calls that
SyncStats reports.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from workers.agent import dnsmasq, drivers, names
from workers.agent.drivers import Netlink, rawnl, rawwrite
from workers.agent.drivers.cmd import ToolCalls
from workers.agent.kernel_typed import TypedKernel
from workers.agent.observed import ZERO_MAC
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
    FORWARDING,
    ConfigureLegHost,
    ConfigureRouter,
    ConfigureRouterLink,
    CreateLeg,
    DeleteExtBridge,
    DeleteLeg,
    EnsureExtBridge,
)
from workers.agent.ruleset import EB

_AWAIT_FROM = 8  # veths going with their namespaces: from this many, let the kernel do it


@dataclass
class HostKernel(TypedKernel):
    nl: Netlink
    host_netns: str | None
    state_dir: str = "/var/lib/vpcd"
    calls: ToolCalls = field(default_factory=ToolCalls)
    _index: dict[str, int] = field(default_factory=dict)

    def begin(self) -> None:
        """Forget cached ifindexes: a new apply may follow changes made by hand."""
        self._index.clear()

    def netns(self, netns: str | None) -> str | None:
        """The namespace an op's `netns` means: None is the host's."""
        return self.host_netns if netns is None else netns

    def _host(self) -> object:
        return self.nl.handle(self.host_netns)

    def _idx(self, name: str) -> int:
        if name not in self._index:
            self._index[name] = rawnl.link_index(self.nl.raw(self.host_netns), name)
        return self._index[name]

    def _delete_link(self, name: str) -> None:
        self._index.pop(name, None)
        sock = self.nl.raw(self.host_netns)
        link = rawnl.get_link(sock, name)
        if link is not None:
            rawwrite.delete_link(sock, link.index)

    def await_gone(self, links: set[str], patience: float = 0.5) -> None:
        """Let the kernel remove host links by itself while it makes progress: the host
        ends of veths whose namespace was just deleted go in its batched namespace
        cleanup, far cheaper than one RTM_DELLINK each (≈16 ms: an RCU grace period).
        Gives up after `patience` seconds without progress; their ops delete the rest.
        A few are not awaited: the kernel's cleanup takes longer to start than their
        deletes take, and each wait is a dump of every host link (≈30 ms at 1000)."""
        if len(links) < _AWAIT_FROM:
            return
        sock = self.nl.raw(self.host_netns)
        left, since = len(links), time.monotonic()
        while True:
            present = sum(1 for link in rawnl.dump_links(sock) if link.name in links)
            if present < left:
                left, since = present, time.monotonic()
            if not present or time.monotonic() - since > patience:
                return
            time.sleep(0.01)

    # ------------------------------------------------------------------- ports

    def delete_netns(self, op: DeleteNetns) -> None:
        self.nl.delete_netns(op.name)

    def create_netns(self, op: CreateNetns) -> None:
        self.nl.create_netns(op.name)

    def delete_port(self, op: DeletePort) -> None:
        self._delete_link(op.veth)

    def _veth_into(
        self, netns: str, veth: str, bridge: str, mtu: int, ifname: str, mac: str | None
    ) -> None:
        """A veth whose host end is on `bridge` and whose other end is `ifname` in `netns`."""
        fd = drivers.open_netns_fd(netns)
        try:
            rawwrite.create_veth(
                self.nl.raw(self.host_netns),
                veth,
                master=self._idx(bridge),
                mtu=mtu,
                peer_name=ifname,
                peer_mac=mac,
                peer_netns_fd=fd,
            )
        finally:
            os.close(fd)

    def _host_end(self, veth: str, bridge: str, mtu: int) -> None:
        drivers.set_link(self._host(), self._idx(veth), master=self._idx(bridge), mtu=mtu, up=True)

    def _converge(self, op: ConfigurePort | ConfigureRouterLink) -> tuple[socket.socket, int]:
        """MAC, MTU, up and addresses of an interface inside a namespace (raw netlink:
        a workload namespace never needs a pyroute2 IPRoute)."""
        sock = self.nl.raw(op.netns)
        i = rawnl.link_index(sock, op.ifname)
        if op.mac is not None or op.mtu is not None or op.up:
            rawwrite.set_link(sock, i, address=op.mac, mtu=op.mtu, up=True if op.up else None)
        for cidr in op.del_addresses:
            rawwrite.delete_address(sock, i, cidr)
        for cidr in op.add_addresses:
            rawwrite.add_address(sock, i, cidr)
        return sock, i

    def create_port(self, op: CreatePort) -> None:
        self._veth_into(op.netns, op.veth, op.bridge, op.mtu, op.ifname, op.mac)

    def configure_host_veth(self, op: ConfigureHostVeth) -> None:
        self._host_end(op.veth, op.bridge, op.mtu)

    def configure_port(self, op: ConfigurePort) -> None:
        sock, i = self._converge(op)
        for route in op.del_routes:
            rawwrite.delete_route(sock, i, route.destination, route.gateway)
        # Removing an address drops the routes through it: then re-add all of them.
        for route in op.routes if op.del_addresses else op.add_routes:
            rawwrite.add_route(sock, i, route.destination, route.gateway)

    # ---------------------------------------------------------------------- l2

    def delete_vxlan(self, op: DeleteVxlan) -> None:
        self._delete_link(op.name)

    def delete_bridge(self, op: DeleteBridge) -> None:
        self._delete_link(op.name)

    def create_bridge(self, op: CreateBridge) -> None:
        drivers.create_bridge(self._host(), op.name, op.mtu)

    def configure_bridge(self, op: ConfigureBridge) -> None:
        drivers.set_link(self._host(), self._idx(op.name), mtu=op.mtu, up=True)

    def create_vxlan(self, op: CreateVxlan) -> None:
        drivers.create_vxlan(
            self._host(),
            op.name,
            vni=op.vni,
            local=op.local,
            dstport=op.dstport,
            mtu=op.mtu,
            master=self._idx(op.bridge),
        )

    def configure_vxlan(self, op: ConfigureVxlan) -> None:
        drivers.set_link(
            self._host(), self._idx(op.name), mtu=op.mtu, master=self._idx(op.bridge), up=True
        )

    def del_fdb(self, op: DelFdb) -> None:
        drivers.fdb_delete(self._host(), self._idx(op.device), op.mac, op.dst)

    def add_fdb(self, op: AddFdb) -> None:
        add = drivers.fdb_append if op.mac == ZERO_MAC else drivers.fdb_replace
        add(self._host(), self._idx(op.device), op.mac, op.dst)

    # ---------------------------------------------------------------- firewall

    def fill_ipsets(self, op: FillIpsets) -> None:
        self.calls.ipset_restores += 1
        drivers.ipset.restore(self.netns(op.netns), op.text)

    def restore_ruleset(self, op: RestoreRuleset) -> None:
        self.calls.iptables_restores += 1
        if op.table.startswith(EB):
            drivers.ebtables.restore(self.netns(op.netns), op.text)
        else:
            drivers.iptables.restore(self.netns(op.netns), op.text)

    def destroy_ipsets(self, op: DestroyIpsets) -> None:
        for name in op.names:
            drivers.ipset.destroy(self.netns(op.netns), name)

    # ----------------------------------------------------------------- routers

    def delete_leg(self, op: DeleteLeg) -> None:
        self._delete_link(op.veth)

    def delete_ext_bridge(self, op: DeleteExtBridge) -> None:
        self._delete_link(op.name)

    def ensure_ext_bridge(self, op: EnsureExtBridge) -> None:
        drivers.create_bridge(self._host(), op.name, 1500)
        self._index.pop(op.name, None)
        drivers.set_link(self._host(), self._idx(op.name), up=True)
        drivers.set_link(self._host(), self._idx(op.interface), master=self._idx(op.name), up=True)

    def create_leg(self, op: CreateLeg) -> None:
        self._veth_into(op.netns, op.veth, op.bridge, op.mtu, op.ifname, op.mac)

    def configure_leg_host(self, op: ConfigureLegHost) -> None:
        self._host_end(op.veth, op.bridge, op.mtu)

    def configure_router_link(self, op: ConfigureRouterLink) -> None:
        self._converge(op)

    def configure_router(self, op: ConfigureRouter) -> None:
        if op.forwarding:
            drivers.sysctl.write(op.netns, {FORWARDING: "1"})
        ipr = self.nl.handle(op.netns)
        for route in op.del_routes:
            drivers.delete_route(
                ipr, drivers.link_index(ipr, route.device), route.destination, route.gateway
            )
        for route in op.add_routes:
            drivers.add_route(
                ipr, drivers.link_index(ipr, route.device), route.destination, route.gateway
            )

    def restore_router_ruleset(self, op: RestoreRouterRuleset) -> None:
        self.calls.iptables_restores += 1
        drivers.iptables.restore(op.netns, op.text)

    def flush_conntrack(self, op: FlushConntrack) -> None:
        drivers.conntrack.delete_all(
            op.netns,
            [{"orig_dst": op.address}, {"orig_src": op.fixed_ip, "reply_dst": op.address}],
        )

    def announce(self, op: Announce) -> None:
        drivers.garp.announce(op.netns, op.ifname, op.address)

    # ------------------------------------------------------------- dhcp / dns

    def _daemon(self, op: StopDnsmasq | StartDnsmasq | ReloadDnsmasq) -> tuple[str, list[str]]:
        return dnsmasq.daemon_name(op.token), dnsmasq.argv(op.directory)

    def stop_dnsmasq(self, op: StopDnsmasq) -> None:
        name, argv = self._daemon(op)
        drivers.processes.stop(self.state_dir, name, op.netns, argv)

    def start_dnsmasq(self, op: StartDnsmasq) -> None:
        name, argv = self._daemon(op)
        drivers.processes.start(self.state_dir, name, op.netns, argv)

    def reload_dnsmasq(self, op: ReloadDnsmasq) -> None:
        name, argv = self._daemon(op)
        if not drivers.processes.send_signal(self.state_dir, name, op.netns, argv, signal.SIGHUP):
            raise drivers.DriverError(errno.ESRCH, f"{name} is not running")

    def delete_service_netns(self, op: DeleteServiceNetns) -> None:
        self.nl.delete_netns(op.netns)

    def create_service_netns(self, op: CreateServiceNetns) -> None:
        self.nl.create_netns(op.netns)

    def remove_service_files(self, op: RemoveServiceFiles) -> None:
        drivers.files.remove_tree(op.directory)

    def write_service_files(self, op: WriteServiceFiles) -> None:
        for name, text in op.files:
            drivers.files.write(Path(op.directory) / name, text, group=dnsmasq.GROUP)

    def delete_service_leg(self, op: DeleteServiceLeg) -> None:
        self._delete_link(op.veth)

    def create_service_leg(self, op: CreateServiceLeg) -> None:
        self._veth_into(op.netns, op.veth, op.bridge, op.mtu, names.SERVICE_IFNAME, op.mac)

    def configure_service_leg(self, op: ConfigureServiceLeg) -> None:
        drivers.set_link(
            self._host(), self._idx(op.veth), master=self._idx(op.bridge), mtu=op.mtu, up=True
        )
        ipr = self.nl.handle(op.netns)
        drivers.set_link(ipr, drivers.link_index(ipr, "lo"), up=True)
        i = drivers.link_index(ipr, names.SERVICE_IFNAME)
        drivers.set_link(ipr, i, address=op.mac, mtu=op.mtu, up=True)
        for cidr in op.del_addresses:
            drivers.delete_address(ipr, i, cidr)
        for cidr in op.add_addresses:
            drivers.add_address(ipr, i, cidr)
        for route in op.del_routes:
            drivers.delete_route(ipr, i, route.destination, route.gateway)
        for route in op.routes if op.del_addresses or op.add_addresses else op.add_routes:
            drivers.add_route(ipr, i, route.destination, route.gateway)

    def write_resolv_conf(self, op: WriteResolvConf) -> None:
        drivers.files.write_resolv(op.netns, op.text)

    def remove_resolv_conf(self, op: RemoveResolvConf) -> None:
        drivers.files.remove_resolv(op.netns)

    def set_sysctls(self, op: SetSysctls) -> None:
        drivers.sysctl.write(self.netns(op.netns), dict(op.values))

    def cut_conntrack(self, op: CutConntrack) -> None:
        self.calls.conntrack_deletes += len(op.cuts)
        drivers.conntrack.delete_all(self.netns(op.netns), [cut._asdict() for cut in op.cuts])

    # ----------------------------------------------------------- load balancers

    def stop_haproxy(self, op: StopHaproxy) -> None:
        lb = op.lb_id
        drivers.haproxy.stop(self.state_dir, names.lb_daemon(lb), names.lb_token(lb), op.netns)

    def start_haproxy(self, op: StartHaproxy) -> None:
        lb = op.lb_id
        drivers.haproxy.start(
            self.state_dir, names.lb_daemon(lb), names.lb_token(lb), op.netns, op.config
        )

    def reload_haproxy(self, op: ReloadHaproxy) -> None:
        lb = op.lb_id
        drivers.haproxy.reload(
            self.state_dir, names.lb_daemon(lb), names.lb_token(lb), op.netns, op.config
        )

    def enable_forwarding(self, op: EnableForwarding) -> None:
        drivers.haproxy.enable_forwarding(op.netns)
