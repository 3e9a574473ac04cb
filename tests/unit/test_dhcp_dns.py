"""DHCP/DNS planning and rendering, pure: the dnsmasq files, what each change costs
(reload, restart, start), cleanup, DHCP ports and the workloads' resolv.conf."""

from __future__ import annotations

from dataclasses import replace

from tests.unit.kernel_model import ModelKernel, apply_ops
from tests.unit.test_plan import P1, P2, S1, VTEP, port, subnet
from workers.agent import dispatch, dnsmasq, names
from workers.agent.desired import Desired
from workers.agent.observed import Observed, RouteObs, WorkloadObs
from workers.agent.ops import Op
from workers.agent.plan import plan
from workers.agent.planners.dhcp_dns import (
    ConfigureServiceLeg,
    CreateServiceLeg,
    CreateServiceNetns,
    DeleteServiceNetns,
    ReloadDnsmasq,
    RemoveResolvConf,
    RemoveServiceFiles,
    StartDnsmasq,
    StopDnsmasq,
    WriteResolvConf,
    WriteServiceFiles,
)
from workers.agent.planners.l2 import CreateBridge, DeleteBridge
from workers.agent.planners.ports import ConfigurePort
from workers.protocol import (
    DhcpDnsState,
    DhcpLease,
    DnsRecord,
    HostState,
    ResolverState,
    Route,
)

STATE_DIR = "/var/lib/vpcd-test"
SVC_PORT = "5e770000-0000-4000-8000-000000000001"
TOKEN = names.service_token(S1)


def service(**kw: object) -> DhcpDnsState:
    base: dict[str, object] = {
        "subnet_id": S1,
        "revision": 1,
        "port_id": SVC_PORT,
        "port_revision": 1,
        "mac": "fa:16:3e:00:00:fe",
        "address": "192.168.1.254",
        "cidr": "192.168.1.0/24",
        "domain": "prod.vpc.internal",
        "leases": [DhcpLease(mac="02:aa:00:00:00:01", ip="192.168.1.11", hostname="web")],
        "hosts": [DnsRecord(name="web.prod.vpc.internal", ip="192.168.1.11")],
    }
    base.update(kw)
    return DhcpDnsState.model_validate(base)


def state(services: list[DhcpDnsState], **kw: object) -> HostState:
    base: dict[str, object] = {
        "host": "net1",
        "revision": 1,
        "vtep_ip": VTEP,
        "subnets": [subnet()],
        "dhcp_dns": services,
    }
    base.update(kw)
    return HostState.model_validate(base)


def desired(doc: HostState) -> Desired:
    return Desired.build(doc, "", STATE_DIR)


def converge(doc: HostState, observed: Observed | None = None) -> tuple[Observed, list[Op]]:
    """Apply the plan through the model kernel; the re-plan must be empty."""
    ops = plan(desired(doc), observed or Observed())
    after = apply_ops(observed or Observed(), ops)
    assert plan(desired(doc), after) == []
    return after, ops


def kinds(ops: list[Op]) -> list[str]:
    return [type(op).__name__ for op in ops]


# -- rendering -------------------------------------------------------------------------------


def test_render_static_leases_names_options_and_upstreams() -> None:
    routes = [Route(destination="10.9.0.0/16", nexthop="192.168.1.5")]
    svc = service(router="192.168.1.1", host_routes=routes, upstreams=["198.51.100.53"])
    files = dnsmasq.render(svc, "/d")
    conf = files["dnsmasq.conf"].splitlines()
    assert "dhcp-range=192.168.1.0,static,255.255.255.0,1h" in conf
    assert not [line for line in conf if line.startswith("dhcp-range") and "static" not in line]
    for line in ("no-resolv", "no-hosts", "bind-interfaces", "interface=svc0"):
        assert line in conf
    assert "except-interface=lo" in conf and "local=/prod.vpc.internal/" in conf
    assert "user=dnsmasq" in conf and "group=nogroup" in conf  # never root
    assert not [line for line in conf if line.startswith("user=") and line != "user=dnsmasq"]
    assert "dhcp-hostsfile=/d/dhcp_hosts" in conf and "addn-hosts=/d/addn_hosts" in conf
    assert files["dhcp_hosts"].splitlines()[1:] == ["02:aa:00:00:00:01,192.168.1.11,web"]
    assert files["addn_hosts"].splitlines()[1:] == ["192.168.1.11 web.prod.vpc.internal web"]
    assert files["servers"].splitlines()[1:] == ["server=198.51.100.53"]
    assert files["dhcp_opts"].splitlines()[1:] == [
        "option:router,192.168.1.1",
        "option:dns-server,192.168.1.254",
        "option:domain-name,prod.vpc.internal",
        "option:mtu,1450",
        "option:classless-static-route,0.0.0.0/0,192.168.1.1,10.9.0.0/16,192.168.1.5",
    ]
    assert dnsmasq.argv("/d") == ["dnsmasq", "--keep-in-foreground", "--conf-file=/d/dnsmasq.conf"]


def test_unrouted_subnet_offers_no_router_and_no_forwarding() -> None:
    files = dnsmasq.render(service(), "/d")
    opts = files["dhcp_opts"].splitlines()[1:]
    assert opts[0] == "option:router"  # empty: dnsmasq would otherwise offer itself
    assert not any("classless" in o for o in opts)
    assert files["servers"].splitlines()[1:] == []


# -- planning --------------------------------------------------------------------------------


def test_a_service_from_nothing_and_its_bridge() -> None:
    _, ops = converge(state([service()]))
    names_ = kinds(ops)
    for kind in ("CreateServiceNetns", "CreateServiceLeg", "ConfigureServiceLeg"):
        assert kind in names_
    assert names_[-2:] == ["WriteServiceFiles", "StartDnsmasq"]
    assert any(isinstance(op, CreateBridge) for op in ops)  # L2 realises the subnet here
    (leg,) = [op for op in ops if isinstance(op, CreateServiceLeg)]
    assert (leg.bridge, leg.veth, leg.netns) == (
        names.bridge_name(S1),
        names.leg_name(S1),
        f"vpcd-dhcp-{TOKEN}",
    )
    assert all(op.resource == ("port", SVC_PORT) for op in ops if "Service" in type(op).__name__)


def test_names_and_leases_are_a_reload_never_a_restart() -> None:
    before, _ = converge(state([service()]))
    renamed = service(hosts=[DnsRecord(name="www.prod.vpc.internal", ip="192.168.1.11")])
    more = [*renamed.leases, DhcpLease(mac="02:aa:00:00:00:02", ip="192.168.1.12")]
    _, ops = converge(state([renamed.model_copy(update={"leases": more})]), before)
    assert kinds(ops) == ["WriteServiceFiles", "ReloadDnsmasq"]
    (write,) = [op for op in ops if isinstance(op, WriteServiceFiles)]
    assert [n for n, _ in write.files] == ["addn_hosts", "dhcp_hosts"]
    _, ops = converge(state([service(upstreams=["198.51.100.53"])]), before)
    assert kinds(ops) == ["WriteServiceFiles", "ReloadDnsmasq"]


def test_a_new_domain_restarts_and_a_dead_daemon_starts() -> None:
    before, _ = converge(state([service()]))
    _, ops = converge(state([service(domain="corp.example")]), before)
    assert kinds(ops) == ["StopDnsmasq", "WriteServiceFiles", "StartDnsmasq"]
    svc = before.services[TOKEN]
    killed = replace(before, services={TOKEN: replace(svc, running=False)})
    _, ops = converge(state([service()]), killed)
    assert kinds(ops) == ["StartDnsmasq"]


def test_a_service_no_longer_desired_leaves_nothing() -> None:
    before, _ = converge(state([service()]))
    after, ops = converge(state([], subnets=[]), before)
    service_ops = [type(op) for op in ops if type(op).__module__.endswith("dhcp_dns")]
    assert service_ops == [StopDnsmasq, DeleteServiceNetns, RemoveServiceFiles]
    assert DeleteBridge in {type(op) for op in ops}
    assert after.services == {} and after.bridges == {}


def test_a_service_of_a_subnet_not_in_the_document_is_not_run() -> None:
    doc = state([service(subnet_id="5a1b0000-0000-4000-8000-0000000000ff")])
    assert desired(doc).services == {}
    _, ops = converge(doc)
    assert not any(isinstance(op, (CreateServiceNetns, StartDnsmasq)) for op in ops)


# -- DHCP ports and resolv.conf --------------------------------------------------------------


def _workload_doc(**kw: object) -> HostState:
    base: dict[str, object] = {
        "host": "cmp2",
        "revision": 1,
        "vtep_ip": VTEP,
        "subnets": [subnet()],
        "ports": [port(P1), port(P2, netns="other")],
        "resolvers": [
            ResolverState(
                subnet_id=S1,
                nameserver="192.168.1.254",
                domain="prod.vpc.internal",
                dhcp_ports=[P1],
            )
        ],
    }
    base.update(kw)
    return HostState.model_validate(base)


def test_a_dhcp_port_gets_no_address_and_keeps_its_clients() -> None:
    doc = _workload_doc()
    after, ops = converge(doc)
    configured = {op.port_id: op for op in ops if isinstance(op, ConfigurePort)}
    assert configured[P1].add_addresses == () and configured[P1].add_routes == ()
    assert configured[P2].add_addresses != ()
    # The workload's client configures its lease: the agent leaves it alone.
    w = after.workloads[P1]
    leased = WorkloadObs(
        w.netns,
        w.name,
        w.mac,
        w.mtu,
        True,
        frozenset({"192.168.1.11/24"}),
        frozenset({RouteObs("0.0.0.0/0", "192.168.1.1")}),
    )
    with_lease = replace(after, workloads={**after.workloads, P1: leased})
    assert plan(desired(doc), with_lease) == []


def test_resolv_conf_for_namespaces_the_agent_made_only() -> None:
    doc = _workload_doc()
    d = desired(doc)
    p1_ns, p2_ns = d.port_netns[P1], d.port_netns[P2]
    foreign = Observed(netns=frozenset({p2_ns}))  # the caller made p2's namespace
    ops = plan(d, foreign)
    writes = [op for op in ops if isinstance(op, WriteResolvConf)]
    assert [w.netns for w in writes] == [p1_ns]
    assert writes[0].text.splitlines()[1:] == [
        "search prod.vpc.internal",
        "nameserver 192.168.1.254",
        "options timeout:1",
    ]
    after = apply_ops(foreign, ops)
    assert plan(d, after) == []
    # The port goes: its namespace and its resolv.conf go with it.
    gone = _workload_doc(ports=[port(P2, netns="other")])
    ops = plan(desired(gone), after)
    assert RemoveResolvConf(p1_ns) in ops
    assert plan(desired(gone), apply_ops(after, ops)) == []


def test_every_service_op_has_a_row() -> None:
    kernel = ModelKernel(Observed())
    for op_type in dispatch.HANDLERS:
        assert callable(getattr(kernel, dispatch.HANDLERS[op_type]))
    assert ReloadDnsmasq in dispatch.HANDLERS and RemoveServiceFiles in dispatch.HANDLERS


def test_a_routed_subnets_service_gets_its_routes_to_reach_upstreams() -> None:
    """dnsmasq forwards to upstreams beyond the subnet through the router (and host
    routes), as a workload would; routes come and go with `routed`, addresses stay."""
    before, _ = converge(state([service()]))
    assert before.services[TOKEN].inner is not None
    assert before.services[TOKEN].inner.routes == frozenset()
    routed = [
        subnet(routed=True, host_routes=[Route(destination="10.9.0.0/16", nexthop="192.168.1.5")])
    ]
    after, ops = converge(state([service(router="192.168.1.1")], subnets=routed), before)
    (leg,) = [op for op in ops if isinstance(op, ConfigureServiceLeg)]
    want = (RouteObs("0.0.0.0/0", "192.168.1.1"), RouteObs("10.9.0.0/16", "192.168.1.5"))
    assert (leg.add_routes, leg.del_addresses, leg.add_addresses) == (want, (), ())
    assert after.services[TOKEN].inner is not None
    assert after.services[TOKEN].inner.routes == frozenset(want)
    _, ops = converge(state([service()]), after)
    (leg,) = [op for op in ops if isinstance(op, ConfigureServiceLeg)]
    assert leg.del_routes == want and leg.add_routes == ()
