"""plan(desired, observed) -> ops: the whole of the agent's decision making, kept pure.

No I/O, no drivers, no pyroute2 (an import-linter contract checks it): the same inputs
always give the same list, sorted by phase and then by target, so unit tests can pin it
down exactly and an apply is reproducible. Every Op is a small frozen dataclass that
names its target by kernel name; the agent maps each one onto one driver call.

What it decides (DESIGN §4, L2):
- A subnet is realised on this host when a valid local port uses it: a bridge and a
  VXLAN device (VNI, local VTEP, dstport 4789, learning off, MTU), enslaved and up.
- FDB on that VXLAN device: one all-zeros flood entry per remote VTEP and one unicast
  entry per remote port; anything else on our own device is stale and removed.
- A port: a veth whose host end sits on the subnet bridge and whose workload end is in
  the port's netns, named interface_name, with MAC, IP/prefix, MTU, up, a default route
  via the gateway when `routed`, and the subnet's host routes.
- Owned objects that are not desired go; a namespace goes only if the agent created it
  and no desired port uses it. Nothing without our name prefix is ever a target.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass
from typing import ClassVar

from workers.agent import names
from workers.agent.observed import ZERO_MAC, FdbEntry, Observed, RouteObs, Scope, WorkloadObs
from workers.protocol import HostState, PortState, SubnetState

VXLAN_PORT = 4789
DEFAULT_ROUTE = "0.0.0.0/0"

# ---------------------------------------------------------------------------- ops


@dataclass(frozen=True)
class Op:
    """One kernel change. ORDER is its phase: deletions (which free names) come before
    creations, parents before children, and within a phase ops sort by target."""

    ORDER: ClassVar[int] = 0

    @property
    def target(self) -> str:
        raise NotImplementedError

    @property
    def resource(self) -> tuple[str, str] | None:
        """The (kind, id) whose result this op decides; None for host housekeeping."""
        return None

    def scope(self) -> Scope:
        """What to re-observe after applying it."""
        return Scope(links=frozenset({self.target}))

    def sort_key(self) -> tuple[int, str, str]:
        return (self.ORDER, self.target, repr(self))


@dataclass(frozen=True)
class _SubnetOp(Op):
    name: str
    subnet_id: str | None = None  # None when the subnet is no longer desired

    @property
    def target(self) -> str:
        return self.name

    @property
    def resource(self) -> tuple[str, str] | None:
        return ("subnet", self.subnet_id) if self.subnet_id else None


@dataclass(frozen=True)
class DeleteNetns(Op):
    """Remove a namespace the agent created. First of all: the kernel then tears down
    the veths inside it in one batch, far faster than deleting them one by one (a
    veth delete waits for an RCU grace period, ≈16 ms); the DeletePort that follows
    for their host ends usually finds them already gone."""

    ORDER: ClassVar[int] = 0
    name: str

    @property
    def target(self) -> str:
        return self.name

    def scope(self) -> Scope:
        return Scope(netns=frozenset({self.name}))


@dataclass(frozen=True)
class DeletePort(Op):
    """Delete a host-side veth; the kernel removes its workload end with it."""

    ORDER: ClassVar[int] = 1
    veth: str
    port_id: str | None = None  # set when a desired port is being recreated

    @property
    def target(self) -> str:
        return self.veth

    @property
    def resource(self) -> tuple[str, str] | None:
        return ("port", self.port_id) if self.port_id else None

    def scope(self) -> Scope:
        ports = frozenset({self.port_id}) if self.port_id else frozenset()
        return Scope(links=frozenset({self.veth}), ports=ports)


@dataclass(frozen=True)
class DeleteVxlan(_SubnetOp):
    ORDER: ClassVar[int] = 2


@dataclass(frozen=True)
class DeleteBridge(_SubnetOp):
    ORDER: ClassVar[int] = 3


@dataclass(frozen=True)
class CreateNetns(Op):
    ORDER: ClassVar[int] = 4
    name: str

    @property
    def target(self) -> str:
        return self.name

    def scope(self) -> Scope:
        return Scope(netns=frozenset({self.name}))


@dataclass(frozen=True)
class CreateBridge(_SubnetOp):
    ORDER: ClassVar[int] = 5
    mtu: int = 0


@dataclass(frozen=True)
class ConfigureBridge(_SubnetOp):
    """Set the bridge's MTU and bring it up."""

    ORDER: ClassVar[int] = 6
    mtu: int = 0


@dataclass(frozen=True)
class CreateVxlan(_SubnetOp):
    """A VXLAN device, learning off, enslaved to `bridge` and up."""

    ORDER: ClassVar[int] = 7
    vni: int = 0
    local: str = ""
    dstport: int = VXLAN_PORT
    mtu: int = 0
    bridge: str = ""


@dataclass(frozen=True)
class ConfigureVxlan(_SubnetOp):
    """Set MTU and master and bring it up (the immutable attributes need a recreate)."""

    ORDER: ClassVar[int] = 8
    mtu: int = 0
    bridge: str = ""


@dataclass(frozen=True)
class _FdbOp(Op):
    device: str
    mac: str
    dst: str
    subnet_id: str | None = None

    @property
    def target(self) -> str:
        return self.device

    @property
    def resource(self) -> tuple[str, str] | None:
        return ("subnet", self.subnet_id) if self.subnet_id else None


@dataclass(frozen=True)
class DelFdb(_FdbOp):
    ORDER: ClassVar[int] = 9


@dataclass(frozen=True)
class AddFdb(_FdbOp):
    """Flood entries (all-zeros MAC) are appended; unicast entries replace the MAC's."""

    ORDER: ClassVar[int] = 10


@dataclass(frozen=True)
class _PortOp(Op):
    port_id: str

    @property
    def target(self) -> str:
        return names.host_veth_name(self.port_id)

    @property
    def resource(self) -> tuple[str, str] | None:
        return ("port", self.port_id)

    def scope(self) -> Scope:
        return Scope(links=frozenset({self.target}), ports=frozenset({self.port_id}))


@dataclass(frozen=True)
class CreatePort(_PortOp):
    """One RTM_NEWLINK: host end `veth` on `bridge`, MTU, up; workload end created
    straight in `netns` as `ifname` with `mac` and MTU (down: a veth end cannot be
    brought up before its pair exists, so ConfigurePort does that)."""

    ORDER: ClassVar[int] = 11
    veth: str = ""
    bridge: str = ""
    netns: str = ""
    ifname: str = ""
    mac: str = ""
    mtu: int = 0


@dataclass(frozen=True)
class ConfigureHostVeth(_PortOp):
    """Put the host end back on its bridge, with its MTU, up."""

    ORDER: ClassVar[int] = 12
    veth: str = ""
    bridge: str = ""
    mtu: int = 0


@dataclass(frozen=True)
class ConfigurePort(_PortOp):
    """Converge the workload end. None/empty fields mean "already right".

    `routes` is the full desired set: removing an address makes the kernel drop routes
    through it, so after any address removal the driver re-adds all of them.
    """

    ORDER: ClassVar[int] = 13
    netns: str = ""
    ifname: str = ""
    mac: str | None = None
    mtu: int | None = None
    up: bool = False
    del_addresses: tuple[str, ...] = ()
    add_addresses: tuple[str, ...] = ()
    del_routes: tuple[RouteObs, ...] = ()
    add_routes: tuple[RouteObs, ...] = ()
    routes: tuple[RouteObs, ...] = ()


# ------------------------------------------------------------------ desired state


def port_problems(desired: HostState, netns_prefix: str = "") -> dict[str, str]:
    """Ports that cannot be realised, with why; plan() leaves their kernel state alone."""
    subnets = {s.id for s in desired.subnets}
    # Names are 48-bit hashes of ids; should two ids ever collide, the lower id keeps it.
    bad_subnets: dict[str, str] = {}
    bridges: dict[str, str] = {}
    for sid in sorted(subnets):
        other = bridges.setdefault(names.bridge_name(sid), sid)
        if other != sid:
            bad_subnets[sid] = f"subnet {sid} has the same device names as subnet {other}"
    problems: dict[str, str] = {}
    seen: dict[tuple[str, str], str] = {}
    owners: dict[str, tuple[str, str]] = {}  # netns -> (tenant, first port)
    veths: dict[str, str] = {}
    for port in sorted(desired.ports, key=lambda p: p.id):
        if port.subnet_id not in subnets:
            problems[port.id] = f"subnet {port.subnet_id} is not in this host's state"
            continue
        if port.subnet_id in bad_subnets:
            problems[port.id] = bad_subnets[port.subnet_id]
            continue
        other = veths.setdefault(names.host_veth_name(port.id), port.id)
        if other != port.id:
            problems[port.id] = f"port {port.id} has the same veth name as port {other}"
            continue
        try:
            netns = names.workload_netns(netns_prefix, port.netns)
            names.check_ifname(port.interface_name)
        except ValueError as exc:
            problems[port.id] = str(exc)
            continue
        tenant, first = owners.setdefault(netns, (port.tenant_id, port.id))
        if tenant != port.tenant_id:  # never put one tenant's interface in another's netns
            problems[port.id] = f"netns {netns} holds port {first} of another tenant"
            continue
        key = (netns, port.interface_name)
        if key in seen:
            problems[port.id] = (
                f"interface {port.interface_name} in netns {netns} is already port {seen[key]}'s"
            )
            continue
        seen[key] = port.id
    return problems


def needed_subnets(
    desired: HostState, netns_prefix: str = "", problems: dict[str, str] | None = None
) -> dict[str, SubnetState]:
    """The subnets this host must carry: those with a realisable local port."""
    if problems is None:
        problems = port_problems(desired, netns_prefix)
    used = {p.subnet_id for p in desired.ports if p.id not in problems}
    return {s.id: s for s in desired.subnets if s.id in used}


def desired_fdb(subnet: SubnetState, vtep_ip: str) -> frozenset[FdbEntry]:
    device = names.vxlan_name(subnet.id)
    entries = {FdbEntry(device, ZERO_MAC, vtep) for vtep in subnet.remote_vteps if vtep != vtep_ip}
    unicast: dict[str, str] = {}
    for rp in sorted(subnet.remote_ports, key=lambda r: (r.mac.lower(), r.vtep_ip)):
        if rp.vtep_ip != vtep_ip:
            unicast.setdefault(rp.mac.lower(), rp.vtep_ip)
    entries |= {FdbEntry(device, mac, vtep) for mac, vtep in unicast.items()}
    return frozenset(entries)


def desired_routes(subnet: SubnetState) -> tuple[RouteObs, ...]:
    """Default route when a router serves the subnet, then host routes (which win)."""
    routes: dict[str, str] = {}
    if subnet.routed:
        routes[DEFAULT_ROUTE] = subnet.gateway_ip
    for r in subnet.host_routes:
        routes[str(ipaddress.ip_network(r.destination, strict=False))] = r.nexthop
    return tuple(sorted(RouteObs(d, g) for d, g in routes.items()))


def desired_workload(
    port: PortState, subnet: SubnetState, netns: str, routes: frozenset[RouteObs] | None = None
) -> WorkloadObs:
    """The workload end `port` should have; `routes` is desired_routes(subnet), if known."""
    return WorkloadObs(
        netns=netns,
        name=port.interface_name,
        mac=port.mac.lower(),
        mtu=subnet.mtu,
        up=True,
        addresses=frozenset({f"{port.ip}/{port.prefixlen}"}),
        routes=frozenset(desired_routes(subnet)) if routes is None else routes,
    )


# ---------------------------------------------------------------------------- plan


def plan(desired: HostState, observed: Observed, *, netns_prefix: str = "") -> list[Op]:
    """The ops that take the kernel from `observed` to `desired`, in apply order."""
    ops: list[Op] = []
    problems = port_problems(desired, netns_prefix)
    subnets = {s.id: s for s in desired.subnets}
    needed = needed_subnets(desired, netns_prefix, problems)
    ops += _plan_subnets(needed, desired.vtep_ip, observed)

    ports = [p for p in desired.ports if p.id not in problems]
    want_netns = {names.workload_netns(netns_prefix, p.netns) for p in ports}
    ops += [CreateNetns(ns) for ns in want_netns - observed.netns]
    for ns in (observed.owned_netns & observed.netns) - want_netns:
        ops.append(DeleteNetns(ns))

    # A desired port's veth is never deleted as stale, even if the port cannot be
    # realised right now: a controller glitch must not tear down a working workload.
    keep = {names.host_veth_name(p.id) for p in desired.ports}
    for veth in sorted(set(observed.veths) - keep):
        ops.append(DeletePort(veth))
    routes = {sid: frozenset(desired_routes(s)) for sid, s in needed.items()}
    for port in ports:
        ns = names.workload_netns(netns_prefix, port.netns)
        ops += _plan_port(port, subnets[port.subnet_id], routes[port.subnet_id], ns, observed)
    return sorted(ops, key=Op.sort_key)


def _plan_subnets(needed: dict[str, SubnetState], vtep_ip: str, observed: Observed) -> list[Op]:
    ops: list[Op] = []
    fdb_by_device: dict[str, set[FdbEntry]] = defaultdict(set)
    for entry in observed.fdb:
        fdb_by_device[entry.device].add(entry)
    want_bridges = {names.bridge_name(sid) for sid in needed}
    want_vxlans = {names.vxlan_name(sid) for sid in needed}
    ops += [DeleteBridge(name) for name in set(observed.bridges) - want_bridges]
    ops += [DeleteVxlan(name) for name in set(observed.vxlans) - want_vxlans]

    for sid, subnet in needed.items():
        br, vx = names.bridge_name(sid), names.vxlan_name(sid)
        bridge = observed.bridges.get(br)
        if bridge is None:
            ops.append(CreateBridge(br, sid, mtu=subnet.mtu))
        elif bridge.mtu != subnet.mtu or not bridge.up:
            ops.append(ConfigureBridge(br, sid, mtu=subnet.mtu))

        vxlan = observed.vxlans.get(vx)
        have: set[FdbEntry] = fdb_by_device.get(vx, set())
        if vxlan is not None and (vxlan.vni, vxlan.local, vxlan.learning, vxlan.dstport) != (
            subnet.vni,
            vtep_ip,
            False,
            VXLAN_PORT,
        ):
            ops.append(DeleteVxlan(vx, sid))  # these attributes cannot change in place
            vxlan = None
        if vxlan is None:
            ops.append(
                CreateVxlan(vx, sid, vni=subnet.vni, local=vtep_ip, mtu=subnet.mtu, bridge=br)
            )
            have = set()  # a new device starts with an empty fdb
        elif vxlan.mtu != subnet.mtu or vxlan.master != br or not vxlan.up:
            ops.append(ConfigureVxlan(vx, sid, mtu=subnet.mtu, bridge=br))

        want = desired_fdb(subnet, vtep_ip)
        ops += [DelFdb(e.device, e.mac, e.dst, sid) for e in have - want]
        ops += [AddFdb(e.device, e.mac, e.dst, sid) for e in want - have]
    return ops


def _plan_port(
    port: PortState,
    subnet: SubnetState,
    routes: frozenset[RouteObs],
    netns: str,
    observed: Observed,
) -> list[Op]:
    ops: list[Op] = []
    veth, bridge = names.host_veth_name(port.id), names.bridge_name(subnet.id)
    want = desired_workload(port, subnet, netns, routes)
    host = observed.veths.get(veth)
    have = observed.workloads.get(port.id)
    if host is not None and (have is None or (have.netns, have.name) != (netns, want.name)):
        # The pair exists but its workload end is elsewhere (netns or name changed, or
        # moved by hand): recreate, since a veth end cannot be found from the host.
        ops.append(DeletePort(veth, port.id))
        host = have = None
    if host is None:
        ops.append(
            CreatePort(
                port.id,
                veth=veth,
                bridge=bridge,
                netns=netns,
                ifname=want.name,
                mac=want.mac,
                mtu=want.mtu,
            )
        )
        have = WorkloadObs(netns, want.name, want.mac, want.mtu, up=False)
    elif host.master != bridge or host.mtu != want.mtu or not host.up:
        ops.append(ConfigureHostVeth(port.id, veth=veth, bridge=bridge, mtu=want.mtu))
    assert have is not None
    if have == want:
        return ops

    ops.append(
        ConfigurePort(
            port.id,
            netns=netns,
            ifname=want.name,
            mac=want.mac if have.mac != want.mac else None,
            mtu=want.mtu if have.mtu != want.mtu else None,
            up=not have.up,
            del_addresses=tuple(sorted(have.addresses - want.addresses)),
            add_addresses=tuple(sorted(want.addresses - have.addresses)),
            del_routes=tuple(sorted(have.routes - want.routes)),
            add_routes=tuple(sorted(want.routes - have.routes)),
            routes=tuple(sorted(want.routes)),
        )
    )
    return ops
