"""A typed snapshot of what the kernel holds of the agent's own objects.

`observe.py` fills it from netlink (our firewall part from iptables-save and ipset
save); `plan()` compares it with the desired state. It
holds only objects the agent owns (prefixed link names, fdb entries on its own VXLAN
devices, the workload ends of its own veths) plus which namespaces exist and which of
them the agent created. Plain frozen dataclasses, so unit tests build them by hand.

A snapshot can also be partial: `Scope` names the objects a scoped observation looked
at, and `Observed.merged()` replaces exactly those in an older snapshot. That is how an
incremental sync avoids dumping 1000 links to change one port.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from workers.agent.ruleset import NetnsFirewall
from workers.agent.typed_state import TypedObs

ZERO_MAC = "00:00:00:00:00:00"


@dataclass(frozen=True)
class BridgeObs:
    name: str
    mtu: int
    up: bool


@dataclass(frozen=True)
class VxlanObs:
    name: str
    vni: int
    local: str | None
    learning: bool
    dstport: int
    mtu: int
    master: str | None  # name of the bridge it is enslaved to
    up: bool


@dataclass(frozen=True, order=True)
class FdbEntry:
    """A forwarding entry on one of our VXLAN devices: MAC -> remote VTEP."""

    device: str
    mac: str  # lower case; ZERO_MAC is a flood entry
    dst: str


@dataclass(frozen=True)
class HostVethObs:
    name: str
    master: str | None
    mtu: int
    up: bool


@dataclass(frozen=True, order=True)
class RouteObs:
    destination: str  # normalised CIDR, "0.0.0.0/0" for the default route
    gateway: str


@dataclass(frozen=True)
class WorkloadObs:
    """The workload end of a port's veth, found in `netns` under `name`.

    Observation reports it only when that interface really is the peer of the port's
    host-side veth; a same-named interface that is not ours is never reported.
    """

    netns: str
    name: str
    mac: str
    mtu: int
    up: bool
    addresses: frozenset[str] = frozenset()  # "ip/prefixlen", IPv4 only
    routes: frozenset[RouteObs] = frozenset()  # only routes the agent installed


@dataclass(frozen=True)
class RouterLinkObs:
    """A veth end inside a router namespace; `peer` is its host end's name when that
    host end is one of ours (the pair is intact), else None."""

    name: str
    mac: str
    mtu: int
    up: bool
    peer: str | None
    addresses: frozenset[str] = frozenset()  # "ip/prefixlen"


@dataclass(frozen=True, order=True)
class RouterRouteObs:
    destination: str  # normalised CIDR
    gateway: str
    device: str  # the router-side interface it leaves by


@dataclass(frozen=True)
class RouterObs:
    """A router namespace's interfaces, the routes the agent installed, ip_forward."""

    netns: str
    links: Mapping[str, RouterLinkObs] = field(default_factory=dict)
    routes: frozenset[RouterRouteObs] = frozenset()
    forwarding: bool = False


@dataclass(frozen=True)
class ExternalIfObs:
    """The host's external interface (agent flag): which bridge holds it, whether up."""

    name: str
    master: str | None
    up: bool


@dataclass(frozen=True)
class ServiceObs:
    """A subnet's DHCP/DNS service as found: its namespace, its leg (host end and the end
    inside), the files in its state directory and whether its dnsmasq runs."""

    token: str
    netns: bool = False
    leg: HostVethObs | None = None
    inner: WorkloadObs | None = None
    files: Mapping[str, str] = field(default_factory=dict)
    has_dir: bool = False
    running: bool = False


@dataclass(frozen=True)
class LbObs:
    """A load balancer's daemon and namespace settings, found by the agent's pid files."""

    netns: str
    socket: str = ""  # its stats socket's path (under the agent's state directory)
    haproxy: bool = False  # our haproxy runs (pid file, argv and namespace verified)
    config: str | None = None  # the configuration file it was last given
    forwarding: bool = False  # net.ipv4.ip_forward in its namespace (UDP DNAT needs it)


@dataclass(frozen=True)
class Scope:
    """What a scoped observation looked at (host links, port workloads, namespaces,
    and the namespaces whose firewall tables and sets were read again).

    A VXLAN name in `links` covers its fdb entries too. In `firewall`, None is the
    host namespace.
    """

    links: frozenset[str] = frozenset()
    ports: frozenset[str] = frozenset()
    netns: frozenset[str] = frozenset()
    firewall: frozenset[str | None] = frozenset()
    routers: frozenset[str] = frozenset()  # router namespaces to read again

    def __or__(self, other: Scope) -> Scope:
        return Scope(
            self.links | other.links,
            self.ports | other.ports,
            self.netns | other.netns,
            self.firewall | other.firewall,
            self.routers | other.routers,
        )

    def __bool__(self) -> bool:
        return bool(self.links or self.ports or self.netns or self.firewall or self.routers)


@dataclass(frozen=True)
class Observed:
    bridges: Mapping[str, BridgeObs] = field(default_factory=dict)
    vxlans: Mapping[str, VxlanObs] = field(default_factory=dict)
    fdb: frozenset[FdbEntry] = frozenset()
    veths: Mapping[str, HostVethObs] = field(default_factory=dict)
    workloads: Mapping[str, WorkloadObs] = field(default_factory=dict)  # by port id
    netns: frozenset[str] = frozenset()  # namespaces that exist
    owned_netns: frozenset[str] = frozenset()  # of those, the ones the agent created
    firewall: Mapping[str | None, NetnsFirewall] = field(default_factory=dict)  # None: host
    ext_bridges: Mapping[str, BridgeObs] = field(default_factory=dict)
    legs: Mapping[str, HostVethObs] = field(default_factory=dict)  # host ends of router legs
    external: ExternalIfObs | None = None
    routers: Mapping[str, RouterObs] = field(default_factory=dict)  # by router netns
    # DHCP/DNS services by token: few and cheap, so every observation (scoped or not)
    # reads all of them again; our /etc/netns/<netns>/resolv.conf files by netns: one
    # per workload namespace, so a scoped observation reads those of its namespaces.
    services: Mapping[str, ServiceObs] = field(default_factory=dict)
    resolv: Mapping[str, str] = field(default_factory=dict)
    lbs: Mapping[str, LbObs] = field(default_factory=dict)  # by load balancer id, always whole
    typed: TypedObs = field(default_factory=TypedObs)  # flat and routed ports, always whole

    def merged(self, part: Observed, scope: Scope) -> Observed:
        """This snapshot with everything `scope` names replaced by `part`'s view of it."""

        def keep(items: Mapping[str, object], names: Iterable[str]) -> dict:
            # A copy, then a pop per name: the scope is small, the snapshot is not.
            out = dict(items)
            for name in names:
                out.pop(name, None)
            return out

        return Observed(
            bridges={**keep(self.bridges, scope.links), **part.bridges},
            vxlans={**keep(self.vxlans, scope.links), **part.vxlans},
            fdb=frozenset(e for e in self.fdb if e.device not in scope.links) | part.fdb,
            veths={**keep(self.veths, scope.links), **part.veths},
            workloads={**keep(self.workloads, scope.ports), **part.workloads},
            netns=(self.netns - scope.netns - scope.routers) | part.netns,
            owned_netns=(self.owned_netns - scope.netns - scope.routers) | part.owned_netns,
            firewall={
                **{k: v for k, v in self.firewall.items() if k not in scope.firewall},
                **part.firewall,
            },
            ext_bridges={**keep(self.ext_bridges, scope.links), **part.ext_bridges},
            legs={**keep(self.legs, scope.links), **part.legs},
            external=(
                part.external
                if self.external is None or self.external.name in scope.links
                else self.external
            ),
            routers={**keep(self.routers, scope.routers), **part.routers},
            services=part.services,
            resolv={**keep(self.resolv, scope.netns), **part.resolv},
            lbs=part.lbs,  # cheap to read, so every observation reads all of it
            typed=part.typed if part.typed.read else self.typed,
        )
