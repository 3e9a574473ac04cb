"""The in-memory kernel's flat/routed part, with the real kernel's refusals: a port's
interface needs its namespace, a name taken there is EEXIST, a route out of an interface
needs that interface up, and an interface takes its routes (and a veth its peer) along
when it goes."""

from __future__ import annotations

from dataclasses import replace

from workers.agent.observed import Observed
from workers.agent.planners.typed import (
    ConfigureRoutedHost,
    ConfigureTypedWorkload,
    CreateFlatPort,
    CreateRoutedPort,
    DeleteRoutedVeth,
    SetTypedRoutes,
)
from workers.agent.typed_state import TypedLinkObs, TypedObs, routed_veth_name
from workers.protocol import ROUTED_GATEWAY


class TypedModel:
    netns: set[str]

    def init_typed(self, observed: Observed) -> None:
        t = observed.typed
        self.t_veths = dict(t.veths)
        self.t_workloads = dict(t.workloads)
        self.t_routes = set(t.host_routes)
        self.t_forwarding = t.forwarding

    def typed_netns_gone(self, netns: str) -> None:
        for pid in [p for p, w in self.t_workloads.items() if w.netns == netns]:
            self.t_workloads.pop(pid)
            self._drop_veth(routed_veth_name(pid))

    def _drop_veth(self, veth: str) -> None:
        self.t_veths.pop(veth, None)
        self.t_routes = {r for r in self.t_routes if r.device != veth}
        for pid in [p for p in self.t_workloads if routed_veth_name(p) == veth]:
            self.t_workloads.pop(pid)

    def _new_workload(
        self, pid: str, netns: str, ifname: str, kind: str, mac: str, mtu: int
    ) -> None:
        assert netns in self.netns, f"netns {netns} does not exist"
        taken = [w for w in self.t_workloads.values() if (w.netns, w.name) == (netns, ifname)]
        assert not taken, f"EEXIST: {ifname} in {netns}"
        self.t_workloads[pid] = TypedLinkObs(ifname, kind, mac, mtu, False, netns=netns)

    def delete_routed_veth(self, op: DeleteRoutedVeth) -> None:
        self._drop_veth(op.veth)

    def create_routed_port(self, op: CreateRoutedPort) -> None:
        if op.veth in self.t_veths:
            return
        self._new_workload(op.port_id, op.netns, op.ifname, "veth", op.mac, op.mtu)
        self.t_veths[op.veth] = TypedLinkObs(op.veth, "veth", "", op.mtu, up=False)

    def create_flat_port(self, op: CreateFlatPort) -> None:
        assert op.parent, "a macvlan needs its parent"
        self._new_workload(op.port_id, op.netns, op.ifname, "macvlan", op.mac, op.mtu)

    def configure_routed_host(self, op: ConfigureRoutedHost) -> None:
        self.t_veths[op.veth] = replace(
            self.t_veths[op.veth],
            mtu=op.mtu,
            up=True,
            proxy_arp=True,
            addresses=self.t_veths[op.veth].addresses | {f"{ROUTED_GATEWAY}/32"},
        )

    def configure_typed_workload(self, op: ConfigureTypedWorkload) -> None:
        w = self.t_workloads[op.port_id]
        assert (w.netns, w.name) == (op.netns, op.ifname)
        addresses = (w.addresses - set(op.del_addresses)) | set(op.add_addresses)
        routes = set(w.routes) - set(op.del_routes)
        if op.del_addresses:
            routes = set()  # the kernel dropped them with the address
        routes |= set(op.routes if op.del_addresses else op.add_routes)
        self.t_workloads[op.port_id] = replace(
            w,
            mac=op.mac or w.mac,
            mtu=op.mtu or w.mtu,
            up=w.up or op.up,
            addresses=frozenset(addresses),
            routes=frozenset(routes),
        )

    def set_typed_routes(self, op: SetTypedRoutes) -> None:
        self.t_forwarding = self.t_forwarding or op.forwarding
        self.t_routes -= set(op.delete)
        for r in op.add:
            if r.device:
                dev = self.t_veths.get(r.device)
                assert dev is not None and dev.up, f"ENETDOWN: {r.device}"
            self.t_routes.add(r)

    def typed_obs(self) -> TypedObs:
        return TypedObs(
            veths=dict(self.t_veths),
            workloads={p: w for p, w in self.t_workloads.items() if w.netns in self.netns},
            host_routes=frozenset(self.t_routes),
            forwarding=self.t_forwarding,
        )
