"""The in-memory kernel's DHCP/DNS part: services (namespace, leg, files, daemon) and
resolv.conf files, with the real drivers' refusals (a leg needs its bridge and its
namespace, a daemon its namespace, files and leg address; a reload a running daemon)."""

from __future__ import annotations

from dataclasses import replace

from workers.agent import names
from workers.agent.observed import HostVethObs, Observed, ServiceObs, WorkloadObs
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


class ServiceModel:
    bridges: dict[str, object]

    def init_services(self, observed: Observed) -> None:
        self.services = dict(observed.services)
        self.resolv = dict(observed.resolv)
        self.reloads: list[str] = []
        self.starts: list[str] = []

    def _svc(self, token: str) -> ServiceObs:
        return self.services.get(token) or ServiceObs(token)

    def stop_dnsmasq(self, op: StopDnsmasq) -> None:
        self.services[op.token] = replace(self._svc(op.token), running=False)

    def delete_service_netns(self, op: DeleteServiceNetns) -> None:
        svc = self._svc(op.token)
        assert not svc.running, "namespace deleted under a running daemon"
        self.services[op.token] = replace(svc, netns=False, leg=None, inner=None)

    def remove_service_files(self, op: RemoveServiceFiles) -> None:
        self.services[op.token] = replace(self._svc(op.token), files={}, has_dir=False)
        self._forget(op.token)

    def _forget(self, token: str) -> None:
        svc = self.services[token]
        if not (svc.netns or svc.has_dir or svc.running or svc.leg):
            del self.services[token]

    def delete_service_leg(self, op: DeleteServiceLeg) -> None:
        self.services[op.token] = replace(self._svc(op.token), leg=None, inner=None)

    def create_service_netns(self, op: CreateServiceNetns) -> None:
        self.services[op.token] = replace(self._svc(op.token), netns=True)

    def create_service_leg(self, op: CreateServiceLeg) -> None:
        svc = self._svc(op.token)
        assert svc.netns and op.bridge in self.bridges, "leg before its namespace or bridge"
        assert svc.leg is None, "leg name still taken"
        leg = HostVethObs(op.veth, op.bridge, op.mtu, True)
        inner = WorkloadObs(op.netns, names.SERVICE_IFNAME, op.mac, op.mtu, False)
        self.services[op.token] = replace(svc, leg=leg, inner=inner)

    def configure_service_leg(self, op: ConfigureServiceLeg) -> None:
        svc = self._svc(op.token)
        assert svc.inner is not None
        addresses = (svc.inner.addresses - set(op.del_addresses)) | set(op.add_addresses)
        if op.del_addresses or op.add_addresses:  # an address change: the driver re-adds all
            routes = frozenset(op.routes)
        else:
            routes = (svc.inner.routes - set(op.del_routes)) | set(op.add_routes)
        inner = replace(
            svc.inner, mac=op.mac, mtu=op.mtu, up=True, addresses=addresses, routes=routes
        )
        leg = HostVethObs(op.veth, op.bridge, op.mtu, True)
        self.services[op.token] = replace(svc, leg=leg, inner=inner)

    def write_service_files(self, op: WriteServiceFiles) -> None:
        svc = self._svc(op.token)
        self.services[op.token] = replace(svc, files={**svc.files, **dict(op.files)}, has_dir=True)

    def start_dnsmasq(self, op: StartDnsmasq) -> None:
        svc = self._svc(op.token)
        assert svc.netns and svc.inner is not None and svc.inner.addresses and svc.files
        assert not svc.running, "started twice"
        self.services[op.token] = replace(svc, running=True)
        self.starts.append(op.token)

    def reload_dnsmasq(self, op: ReloadDnsmasq) -> None:
        assert self._svc(op.token).running, "SIGHUP to a daemon that is not running"
        self.reloads.append(op.token)

    def write_resolv_conf(self, op: WriteResolvConf) -> None:
        self.resolv[op.netns] = op.text

    def remove_resolv_conf(self, op: RemoveResolvConf) -> None:
        self.resolv.pop(op.netns, None)
