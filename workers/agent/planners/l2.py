"""L2 per subnet (DESIGN §4): bridge, VXLAN device and its forwarding database.

A subnet is realised on this host when a valid local port uses it: a bridge and a VXLAN
device (VNI, local VTEP, dstport 4789, learning off, MTU), enslaved and up. Its fdb
holds one all-zeros flood entry per remote VTEP and one unicast entry per remote port;
anything else on our own device is stale and removed. Devices of subnets no longer
needed go.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import ClassVar

from workers.agent import names
from workers.agent.desired import Desired
from workers.agent.observed import ZERO_MAC, FdbEntry, Observed
from workers.agent.ops import Op, Phase
from workers.protocol import SubnetState

VXLAN_PORT = 4789


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
class DeleteVxlan(_SubnetOp):
    PHASE: ClassVar[Phase] = Phase.DELETE_VXLAN


@dataclass(frozen=True)
class DeleteBridge(_SubnetOp):
    PHASE: ClassVar[Phase] = Phase.DELETE_BRIDGE


@dataclass(frozen=True)
class CreateBridge(_SubnetOp):
    PHASE: ClassVar[Phase] = Phase.CREATE_BRIDGE
    mtu: int = 0


@dataclass(frozen=True)
class ConfigureBridge(_SubnetOp):
    """Set the bridge's MTU and bring it up."""

    PHASE: ClassVar[Phase] = Phase.CONFIGURE_BRIDGE
    mtu: int = 0


@dataclass(frozen=True)
class CreateVxlan(_SubnetOp):
    """A VXLAN device, learning off, enslaved to `bridge` and up."""

    PHASE: ClassVar[Phase] = Phase.CREATE_VXLAN
    vni: int = 0
    local: str = ""
    dstport: int = VXLAN_PORT
    mtu: int = 0
    bridge: str = ""


@dataclass(frozen=True)
class ConfigureVxlan(_SubnetOp):
    """Set MTU and master and bring it up (the immutable attributes need a recreate)."""

    PHASE: ClassVar[Phase] = Phase.CONFIGURE_VXLAN
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
    PHASE: ClassVar[Phase] = Phase.DELETE_FDB


@dataclass(frozen=True)
class AddFdb(_FdbOp):
    """Flood entries (all-zeros MAC) are appended; unicast entries replace the MAC's."""

    PHASE: ClassVar[Phase] = Phase.ADD_FDB


def desired_fdb(subnet: SubnetState, vtep_ip: str) -> frozenset[FdbEntry]:
    device = names.vxlan_name(subnet.id)
    entries = {FdbEntry(device, ZERO_MAC, vtep) for vtep in subnet.remote_vteps if vtep != vtep_ip}
    unicast: dict[str, str] = {}
    for rp in sorted(subnet.remote_ports, key=lambda r: (r.mac.lower(), r.vtep_ip)):
        if rp.vtep_ip != vtep_ip:
            unicast.setdefault(rp.mac.lower(), rp.vtep_ip)
    entries |= {FdbEntry(device, mac, vtep) for mac, vtep in unicast.items()}
    return frozenset(entries)


def plan_l2(desired: Desired, observed: Observed) -> list[Op]:
    ops: list[Op] = []
    vtep_ip = desired.vtep_ip
    fdb_by_device: dict[str, set[FdbEntry]] = defaultdict(set)
    for entry in observed.fdb:
        fdb_by_device[entry.device].add(entry)
    want_bridges = {names.bridge_name(sid) for sid in desired.needed}
    want_vxlans = {names.vxlan_name(sid) for sid in desired.needed}
    ops += [DeleteBridge(name) for name in set(observed.bridges) - want_bridges]
    ops += [DeleteVxlan(name) for name in set(observed.vxlans) - want_vxlans]

    for sid, subnet in desired.needed.items():
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
