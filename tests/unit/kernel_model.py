"""An in-memory kernel: what each op does, the same contract the real drivers keep.

It is driven through the agent's own dispatch table (workers/agent/dispatch.py), so an
op type without a row, or a row without a model method, fails here before it reaches a
kernel. Its firewall part interprets the iptables-restore / ipset restore text the
planner emits, with the kernel's refusals (a jump to a missing chain, a match on a
missing set, deleting a chain or set still in use), so phase order is checked too.
"""

from __future__ import annotations

import itertools
import shlex
from dataclasses import replace

from tests.unit.service_model import ServiceModel
from tests.unit.typed_model import TypedModel
from workers.agent import dispatch, names
from workers.agent.observed import (
    ZERO_MAC,
    BridgeObs,
    ExternalIfObs,
    FdbEntry,
    HostVethObs,
    LbObs,
    Observed,
    RouterLinkObs,
    RouterObs,
    VxlanObs,
    WorkloadObs,
)
from workers.agent.ops import Op
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
    ConfigureLegHost,
    ConfigureRouter,
    ConfigureRouterLink,
    CreateLeg,
    DeleteExtBridge,
    DeleteLeg,
    EnsureExtBridge,
)
from workers.agent.ruleset import BUILTIN_CHAINS, IpsetState, NetnsFirewall, Ruleset, owned


class RestoreError(AssertionError):
    """What iptables-restore / ipset restore would refuse."""


def _target(spec: str) -> str | None:
    words = shlex.split(spec)
    for flag, value in itertools.pairwise(words):
        if flag in ("-j", "-g"):
            return value
    return None


def _match_sets(spec: str) -> list[str]:
    words = shlex.split(spec)
    return [v for f, v in itertools.pairwise(words) if f == "--match-set"]


class ModelFirewall:
    """Our part of one namespace's tables and sets, mutated by restore texts."""

    def __init__(self, fw: NetnsFirewall) -> None:
        self.tables = {
            t: ({c: list(r) for c, r in rs.chains.items()}, list(rs.hooks))
            for t, rs in fw.tables.items()
        }
        self.sets = {n: (s.type, set(s.members)) for n, s in fw.sets.items()}
        self.sysctls = dict(fw.sysctls)
        self.cuts: list[object] = []  # conntrack filters applied, in order

    def referenced_sets(self) -> set[str]:
        out: set[str] = set()
        for chains, hooks in self.tables.values():
            for rules in chains.values():
                for spec in rules:
                    out |= set(_match_sets(spec))
            for _, spec in hooks:
                out |= set(_match_sets(spec))
        return out

    def iptables_restore(self, text: str, table: str | None = None) -> None:
        """`table` names an ebtables table ("eb:filter"), whose input says "*filter"."""
        lines = [line for line in text.splitlines() if line and not line.startswith("#")]
        assert lines[0].startswith("*") and lines[-1] == "COMMIT", text
        assert table is None or table.removeprefix("eb:") == lines[0][1:], text
        table = table or lines[0][1:]
        chains, hooks = self.tables.setdefault(table, ({}, []))
        chains, hooks = {c: list(r) for c, r in chains.items()}, list(hooks)  # a transaction
        for line in lines[1:-1]:
            if line.startswith(":"):
                name = line[1:].split()[0]
                assert owned(name), f"declared a chain that is not ours: {line}"
                chains[name] = []  # --noflush: declaring a user chain flushes it
                continue
            verb, chain, *rest = line.split(" ", 2)
            spec = rest[0] if rest else ""
            if verb == "-I":
                position, _, spec = spec.partition(" ")
                assert position == "1"
            target = _target(spec) if spec else None
            if verb in ("-A", "-I"):
                if target is not None and owned(target) and target not in chains:
                    raise RestoreError(f"jump to a missing chain: {line}")
                for name in _match_sets(spec):
                    if name not in self.sets:
                        raise RestoreError(f"match on a missing set: {line}")
            if owned(chain):
                if verb == "-A":
                    chains[chain].append(spec)
                elif verb == "-D":
                    chains[chain].remove(spec)
                elif verb == "-X":
                    if chains[chain] or any(_target(s) == chain for _, s in hooks):
                        raise RestoreError(f"chain in use: {line}")
                    del chains[chain]
                else:
                    raise RestoreError(f"unexpected line: {line}")
            else:
                assert chain in BUILTIN_CHAINS and target is not None and owned(target), line
                if verb == "-A":
                    hooks.append((chain, spec))
                elif verb == "-I":
                    hooks.insert(0, (chain, spec))
                elif verb == "-D":
                    if (chain, spec) not in hooks:
                        raise RestoreError(f"no such rule: {line}")
                    hooks.remove((chain, spec))
                else:
                    raise RestoreError(f"unexpected line: {line}")
        self.tables[table] = (chains, hooks)

    def ipset_restore(self, text: str) -> None:
        for line in text.splitlines():
            words = line.split()
            if not words:
                continue
            verb, name = words[0], words[1]
            if verb == "create":
                if name in self.sets and self.sets[name][0] != words[2]:
                    raise RestoreError(f"set {name} exists with another type")
                self.sets.setdefault(name, (words[2], set()))
            elif verb == "flush":
                self.sets[name][1].clear()
            elif verb == "add":
                self.sets[name][1].add(words[2])
            elif verb == "swap":
                a, b = self.sets[name], self.sets[words[2]]
                self.sets[name], self.sets[words[2]] = b, a
            elif verb == "destroy":
                self.destroy(name)
            else:
                raise RestoreError(f"unexpected line: {line}")

    def destroy(self, name: str) -> None:
        if name in self.referenced_sets():
            raise RestoreError(f"set {name} is in use by a rule")
        self.sets.pop(name, None)

    def frozen(self) -> NetnsFirewall:
        """Empty tables are left out: nothing of ours there reads the same as no table."""
        return NetnsFirewall(
            tables={
                t: Ruleset({c: tuple(r) for c, r in chains.items()}, tuple(hooks))
                for t, (chains, hooks) in self.tables.items()
                if chains or hooks
            },
            sets={n: IpsetState(n, t, frozenset(m)) for n, (t, m) in self.sets.items()},
            sysctls=dict(self.sysctls),
        )


class ModelKernel(ServiceModel, TypedModel):
    """One method per dispatch row, acting on an Observed-shaped state."""

    def __init__(self, observed: Observed) -> None:
        self.bridges = dict(observed.bridges)
        self.vxlans = dict(observed.vxlans)
        self.fdb = set(observed.fdb)
        self.veths = dict(observed.veths)
        self.workloads = dict(observed.workloads)
        self.netns, self.owned = set(observed.netns), set(observed.owned_netns)
        self.firewall = {ns: ModelFirewall(fw) for ns, fw in observed.firewall.items()}
        self.ext_bridges = dict(observed.ext_bridges)
        self.legs = dict(observed.legs)
        self.external = observed.external
        self.routers = dict(observed.routers)
        self.announced: list[str] = []
        self.flushed: list[tuple[str, str]] = []
        self.init_services(observed)
        self.lbs = dict(observed.lbs)
        self.init_typed(observed)

    def _drop_port(self, veth: str) -> None:
        self.veths.pop(veth, None)
        for pid in [p for p in self.workloads if names.host_veth_name(p) == veth]:
            del self.workloads[pid]

    def _fw(self, netns: str | None) -> ModelFirewall:
        return self.firewall.setdefault(netns, ModelFirewall(NetnsFirewall()))

    def delete_netns(self, op: DeleteNetns) -> None:
        self.typed_netns_gone(op.name)
        self.netns.discard(op.name)
        self.owned.discard(op.name)
        self.firewall.pop(op.name, None)
        gone = self.routers.pop(op.name, None)
        for link in gone.links.values() if gone else ():
            if link.peer is not None:
                self.legs.pop(link.peer, None)
        for pid in [p for p, w in self.workloads.items() if w.netns == op.name]:
            self._drop_port(names.host_veth_name(pid))

    def delete_port(self, op: DeletePort) -> None:
        self._drop_port(op.veth)

    def delete_vxlan(self, op: DeleteVxlan) -> None:
        self.vxlans.pop(op.name, None)
        self.fdb = {e for e in self.fdb if e.device != op.name}

    def delete_bridge(self, op: DeleteBridge) -> None:
        self.bridges.pop(op.name, None)
        for name, v in self.vxlans.items():
            if v.master == op.name:
                self.vxlans[name] = replace(v, master=None)
        for name, h in self.veths.items():
            if h.master == op.name:
                self.veths[name] = replace(h, master=None)

    def create_netns(self, op: CreateNetns) -> None:
        self.netns.add(op.name)
        self.owned.add(op.name)

    def create_bridge(self, op: CreateBridge) -> None:
        self.bridges[op.name] = BridgeObs(op.name, op.mtu, True)

    def configure_bridge(self, op: ConfigureBridge) -> None:
        self.bridges[op.name] = BridgeObs(op.name, op.mtu, True)

    def create_vxlan(self, op: CreateVxlan) -> None:
        assert op.bridge in self.bridges, "vxlan created before its bridge"
        self.vxlans[op.name] = VxlanObs(
            op.name, op.vni, op.local, False, op.dstport, op.mtu, op.bridge, True
        )

    def configure_vxlan(self, op: ConfigureVxlan) -> None:
        self.vxlans[op.name] = replace(self.vxlans[op.name], mtu=op.mtu, master=op.bridge, up=True)

    def del_fdb(self, op: DelFdb) -> None:
        self.fdb.discard(FdbEntry(op.device, op.mac, op.dst))

    def add_fdb(self, op: AddFdb) -> None:
        assert op.device in self.vxlans
        if op.mac != ZERO_MAC:  # replace semantics for unicast
            self.fdb = {e for e in self.fdb if (e.device, e.mac) != (op.device, op.mac)}
        self.fdb.add(FdbEntry(op.device, op.mac, op.dst))

    def create_port(self, op: CreatePort) -> None:
        assert op.bridge in self.bridges and op.netns in self.netns
        assert op.veth not in self.veths, "veth name still taken"
        self.veths[op.veth] = HostVethObs(op.veth, op.bridge, op.mtu, True)
        self.workloads[op.port_id] = WorkloadObs(op.netns, op.ifname, op.mac, op.mtu, False)

    def configure_host_veth(self, op: ConfigureHostVeth) -> None:
        self.veths[op.veth] = HostVethObs(op.veth, op.bridge, op.mtu, True)

    def configure_port(self, op: ConfigurePort) -> None:
        w = self.workloads[op.port_id]
        addresses = (w.addresses - set(op.del_addresses)) | set(op.add_addresses)
        if op.del_addresses:  # the kernel drops routes with the address; driver re-adds
            routes = frozenset(op.routes)
        else:
            routes = (w.routes - set(op.del_routes)) | set(op.add_routes)
        self.workloads[op.port_id] = replace(
            w,
            mac=op.mac or w.mac,
            mtu=op.mtu or w.mtu,
            up=True,
            addresses=frozenset(addresses),
            routes=frozenset(routes),
        )

    def fill_ipsets(self, op: FillIpsets) -> None:
        self._fw(op.netns).ipset_restore(op.text)

    def restore_ruleset(self, op: RestoreRuleset) -> None:
        self._fw(op.netns).iptables_restore(op.text, op.table)

    def destroy_ipsets(self, op: DestroyIpsets) -> None:
        for name in op.names:
            self._fw(op.netns).destroy(name)

    # ----------------------------------------------------------------- routers

    def _router(self, netns: str) -> RouterObs:
        assert netns in self.netns, f"router netns {netns} does not exist"
        return self.routers.get(netns) or RouterObs(netns)

    def delete_leg(self, op: DeleteLeg) -> None:
        self.legs.pop(op.veth, None)
        for ns, r in self.routers.items():
            links = {n: link for n, link in r.links.items() if link.peer != op.veth}
            self.routers[ns] = replace(r, links=links)

    def delete_ext_bridge(self, op: DeleteExtBridge) -> None:
        assert not any(h.master == op.name for h in self.legs.values()), "bridge still used"
        self.ext_bridges.pop(op.name, None)
        if self.external is not None and self.external.master == op.name:
            self.external = replace(self.external, master=None)

    def ensure_ext_bridge(self, op: EnsureExtBridge) -> None:
        self.ext_bridges[op.name] = BridgeObs(op.name, 1500, True)
        self.external = ExternalIfObs(op.interface, op.name, True)

    def create_leg(self, op: CreateLeg) -> None:
        assert op.bridge in self.bridges or op.bridge in self.ext_bridges, "leg before bridge"
        assert op.veth not in self.legs, "leg name still taken"
        r = self._router(op.netns)
        assert op.ifname not in r.links, "router-side name still taken"
        self.legs[op.veth] = HostVethObs(op.veth, op.bridge, op.mtu, True)
        link = RouterLinkObs(op.ifname, op.mac or "02:00:00:00:00:01", op.mtu, False, op.veth)
        self.routers[op.netns] = replace(r, links={**r.links, op.ifname: link})

    def configure_leg_host(self, op: ConfigureLegHost) -> None:
        self.legs[op.veth] = HostVethObs(op.veth, op.bridge, op.mtu, True)

    def configure_router_link(self, op: ConfigureRouterLink) -> None:
        r = self._router(op.netns)
        link = r.links[op.ifname]
        addresses = (link.addresses - set(op.del_addresses)) | set(op.add_addresses)
        # the kernel drops routes through an interface whose address goes
        routes = (
            r.routes
            if not op.del_addresses
            else frozenset(x for x in r.routes if x.device != op.ifname)
        )
        link = replace(
            link,
            mac=op.mac or link.mac,
            mtu=op.mtu or link.mtu,
            up=True,
            addresses=frozenset(addresses),
        )
        self.routers[op.netns] = replace(r, links={**r.links, op.ifname: link}, routes=routes)

    def configure_router(self, op: ConfigureRouter) -> None:
        r = self._router(op.netns)
        for route in op.add_routes:
            assert route.device in r.links, f"route via missing {route.device}"
        routes = (r.routes - set(op.del_routes)) | set(op.add_routes)
        self.routers[op.netns] = replace(
            r, routes=frozenset(routes), forwarding=r.forwarding or op.forwarding
        )

    def restore_router_ruleset(self, op: RestoreRouterRuleset) -> None:
        assert op.netns in self.netns, "ruleset restored before its namespace exists"
        self._fw(op.netns).iptables_restore(op.text)

    def flush_conntrack(self, op: FlushConntrack) -> None:
        self.flushed.append((op.address, op.fixed_ip))

    def announce(self, op: Announce) -> None:
        self.announced.append(op.address)

    def set_sysctls(self, op: SetSysctls) -> None:
        self._fw(op.netns).sysctls.update(op.values)

    def cut_conntrack(self, op: CutConntrack) -> None:
        self._fw(op.netns).cuts.extend(op.cuts)

    def _lb(self, lb_id: str, netns: str) -> LbObs:
        return self.lbs.get(lb_id) or LbObs(netns)

    def stop_haproxy(self, op: StopHaproxy) -> None:
        self.lbs[op.lb_id] = replace(self._lb(op.lb_id, op.netns), haproxy=False, config=None)

    def start_haproxy(self, op: StartHaproxy) -> None:
        assert op.netns in self.netns, "haproxy started before its namespace"
        have = self._lb(op.lb_id, op.netns)
        assert not have.haproxy, "a second haproxy for one load balancer"
        self.lbs[op.lb_id] = replace(have, haproxy=True, config=op.config)

    def reload_haproxy(self, op: ReloadHaproxy) -> None:
        self.lbs[op.lb_id] = replace(self._lb(op.lb_id, op.netns), haproxy=True, config=op.config)

    def enable_forwarding(self, op: EnableForwarding) -> None:
        assert op.netns in self.netns
        self.lbs[op.lb_id] = replace(self._lb(op.lb_id, op.netns), forwarding=True)

    def observed(self) -> Observed:
        return Observed(
            bridges=self.bridges,
            vxlans=self.vxlans,
            fdb=frozenset(self.fdb),
            veths=self.veths,
            workloads=self.workloads,
            netns=frozenset(self.netns),
            owned_netns=frozenset(self.owned),
            firewall={
                ns: frozen
                for ns, frozen in ((ns, fw.frozen()) for ns, fw in self.firewall.items())
                if frozen != NetnsFirewall()
            },
            ext_bridges=self.ext_bridges,
            legs=self.legs,
            external=self.external,
            routers={ns: r for ns, r in self.routers.items() if ns in self.netns},
            services=self.services,
            resolv={ns: t for ns, t in self.resolv.items() if ns in self.netns},
            lbs=self.lbs,
            typed=self.typed_obs(),
        )


def apply_ops(observed: Observed, ops: list[Op]) -> Observed:
    """What the kernel looks like after the drivers ran `ops`, through the dispatch table."""
    kernel = ModelKernel(observed)
    for op in ops:
        dispatch.apply(kernel, op)
    return kernel.observed()
