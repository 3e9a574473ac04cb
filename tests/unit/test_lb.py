"""Load balancers on the agent, pure parts (issue 9): the haproxy configuration, the UDP
DNAT rules, the status roll-up, and the plan against the in-memory kernel."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.unit.kernel_model import apply_ops
from workers.agent import names
from workers.agent.desired import Desired
from workers.agent.lbconf import (
    expect_codes,
    measure,
    member_status,
    operating,
    parse_show_stat,
    render,
)
from workers.agent.observed import LbObs, Observed
from workers.agent.plan import plan
from workers.agent.planners.firewall import RestoreNetnsRuleset
from workers.agent.planners.lb import (
    EnableForwarding,
    ReloadHaproxy,
    StartHaproxy,
    StopHaproxy,
)
from workers.agent.planners.ports import CreateNetns, CreatePort
from workers.agent.planners.udp import udp_ruleset
from workers.protocol import (
    HostState,
    ListenerState,
    LoadBalancerState,
    MemberState,
    MonitorState,
    PoolState,
    PortState,
    SubnetState,
)

SOCK = "/state/lb/x.sock"


def member(i: int, weight: int = 1, up: bool = True, port: int = 8080) -> MemberState:
    return MemberState(
        id=f"m{i}",
        revision=1,
        address=f"10.0.1.{10 + i}",
        protocol_port=port,
        weight=weight,
        admin_state_up=up,
    )


def monitor(kind: str = "TCP", **kw: object) -> MonitorState:
    fields: dict[str, object] = {"delay": 2, "timeout": 1, "max_retries": 2, "max_retries_down": 3}
    return MonitorState(id=f"hm-{kind}", revision=1, type=kind, **(fields | kw))  # type: ignore[arg-type]


def pool(
    pid: str, protocol: str = "TCP", algorithm: str = "ROUND_ROBIN", **kw: object
) -> PoolState:
    kw.setdefault("members", [member(1), member(2), member(3)])
    return PoolState(id=pid, revision=1, protocol=protocol, lb_algorithm=algorithm, **kw)  # type: ignore[arg-type]


def listener(
    lid: str, protocol: str, port: int, pool_id: str | None, up: bool = True
) -> ListenerState:
    return ListenerState(
        id=lid,
        revision=1,
        protocol=protocol,  # type: ignore[arg-type]
        protocol_port=port,
        default_pool_id=pool_id,
        admin_state_up=up,
    )


def lb(
    listeners: list[ListenerState], pools: list[PoolState], up: bool = True
) -> LoadBalancerState:
    return LoadBalancerState(
        id="11111111-2222-3333-4444-555555555555",
        revision=3,
        admin_state_up=up,
        subnet_id="s1",
        vip_port_id="vip",
        vip_port_revision=2,
        vip_address="10.0.1.100",
        prefixlen=24,
        mac="fa:16:3e:00:00:64",
        listeners=listeners,
        pools=pools,
    )


# -- haproxy configuration ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "line"),
    [
        ("ROUND_ROBIN", "balance roundrobin"),
        ("LEAST_CONNECTIONS", "balance leastconn"),
        ("SOURCE_IP", "balance source"),
    ],
)
def test_algorithms(algorithm: str, line: str) -> None:
    text = render(lb([listener("l", "TCP", 80, "p")], [pool("p", algorithm=algorithm)]), SOCK)
    assert f"    {line}\n" in text
    assert ("hash-type consistent" in text) == (algorithm == "SOURCE_IP")


def test_tcp_listener_with_a_tcp_monitor() -> None:
    text = render(lb([listener("l", "TCP", 80, "p")], [pool("p", monitor=monitor("TCP"))]), SOCK)
    assert (
        text.splitlines()[1] == f"    stats socket {SOCK} mode 600 level admin expose-fd listeners"
    )
    assert "frontend l-l\n    mode tcp\n    bind 10.0.1.100:80\n    default_backend p-p\n" in text
    assert "    default-server inter 2s fall 3 rise 2\n" in text
    assert "    timeout check 1s\n" in text
    assert "    server m-m1 10.0.1.11:8080 weight 1 check\n" in text
    assert "forwardfor" not in text and "httpchk" not in text


def test_http_listener_forwards_for_and_checks_http() -> None:
    hm = monitor("HTTP", http_method="HEAD", url_path="/healthz", expected_codes="200-202")
    text = render(lb([listener("l", "HTTP", 80, "p")], [pool("p", "HTTP", monitor=hm)]), SOCK)
    assert "    mode http\n    bind 10.0.1.100:80\n    option forwardfor\n" in text
    assert "    option httpchk\n    http-check send meth HEAD uri /healthz\n" in text
    assert "    http-check expect rstatus ^(200|201|202)$\n" in text


def test_ping_monitor_runs_the_external_check() -> None:
    text = render(lb([listener("l", "TCP", 80, "p")], [pool("p", monitor=monitor("PING"))]), SOCK)
    assert "global\n" in text and "    external-check\n    insecure-fork-wanted\n" in text
    assert "    option external-check\n" in text
    assert '    external-check path "/usr/sbin:/usr/bin:/sbin:/bin"\n' in text
    assert "    external-check command /state/lb/ping-check\n" in text
    assert "    server m-m1 10.0.1.11:8080 weight 1 check\n" in text
    tcp = render(lb([listener("l", "TCP", 80, "p")], [pool("p", monitor=monitor())]), SOCK)
    assert "external-check" not in tcp and "insecure-fork" not in tcp


@pytest.mark.parametrize(
    ("codes", "line"),
    [
        ("200", "http-check expect status 200"),
        ("200,204", "http-check expect rstatus ^(200|204)$"),
        ("301-302", "http-check expect rstatus ^(301|302)$"),
    ],
)
def test_expected_codes(codes: str, line: str) -> None:
    assert expect_codes(codes) == line


def test_members_drain_disable_and_monitors_switch_off() -> None:
    members = [member(1, weight=0), member(2, up=False), member(3, weight=256)]
    text = render(
        lb(
            [listener("l", "TCP", 80, "p")],
            [pool("p", members=members, monitor=monitor(admin_state_up=False))],
        ),
        SOCK,
    )
    assert "    server m-m1 10.0.1.11:8080 weight 0\n" in text
    assert "    server m-m2 10.0.1.12:8080 weight 1 disabled\n" in text
    assert "    server m-m3 10.0.1.13:8080 weight 256\n" in text
    assert "default-server" not in text  # an admin-down monitor checks nothing


def test_udp_pools_and_listeners_are_not_haproxy_s() -> None:
    text = render(
        lb(
            [listener("t", "TCP", 80, "p"), listener("u", "UDP", 53, "q")],
            [pool("p"), pool("q", "UDP")],
        ),
        SOCK,
    )
    assert "frontend l-t" in text and "backend p-p" in text
    assert "l-u" not in text and "p-q" not in text


def test_admin_down_listener_and_pool_and_no_default_pool() -> None:
    text = render(
        lb(
            [listener("a", "TCP", 80, None), listener("b", "TCP", 81, "p", up=False)],
            [pool("p", admin_state_up=False)],
        ),
        SOCK,
    )
    first = text.split("frontend l-a\n")[1].split("\n\n")[0]
    assert "default_backend" not in first
    assert "frontend l-b\n    mode tcp\n    bind 10.0.1.100:81\n    disabled\n" in text
    assert "backend p-p\n    mode tcp\n    balance roundrobin\n    disabled\n" in text


def test_rendering_is_deterministic() -> None:
    a = lb([listener("l", "TCP", 80, "p")], [pool("p"), pool("o")])
    b = lb([listener("l", "TCP", 80, "p")], [pool("o"), pool("p")])
    assert render(a, SOCK) == render(b, SOCK)


# -- UDP in the kernel ------------------------------------------------------------------------


def test_udp_equal_weights_rotate_with_nth() -> None:
    rules = udp_ruleset(lb([listener("u", "UDP", 53, "q")], [pool("q", "UDP")]))
    chain = f"vpcd-u-{names.lb_token('u')}"
    assert rules.chains[chain] == (
        "-p udp -m statistic --mode nth --every 3 --packet 0"
        " -j DNAT --to-destination 10.0.1.11:8080",
        "-p udp -m statistic --mode nth --every 2 --packet 0"
        " -j DNAT --to-destination 10.0.1.12:8080",
        "-p udp -j DNAT --to-destination 10.0.1.13:8080",
    )
    assert rules.chains["vpcd-lb-PRE"] == (f"-d 10.0.1.100/32 -p udp -m udp --dport 53 -j {chain}",)
    assert rules.chains["vpcd-lb-POST"] == (
        "-m conntrack --ctstate DNAT -j SNAT --to-source 10.0.1.100",
    )
    assert rules.hooks == (
        ("PREROUTING", "-j vpcd-lb-PRE"),
        ("POSTROUTING", "-j vpcd-lb-POST"),
    )


def test_udp_weights_use_probabilities_and_skip_drained_members() -> None:
    members = [member(1, 2), member(2, 1), member(3, 1), member(4, 0), member(5, up=False)]
    rules = udp_ruleset(lb([listener("u", "UDP", 53, "q")], [pool("q", "UDP", members=members)]))
    assert rules.chains[f"vpcd-u-{names.lb_token('u')}"] == (
        "-p udp -m statistic --mode random --probability 0.50000000000"
        " -j DNAT --to-destination 10.0.1.11:8080",
        "-p udp -m statistic --mode random --probability 0.50000000000"
        " -j DNAT --to-destination 10.0.1.12:8080",
        "-p udp -j DNAT --to-destination 10.0.1.13:8080",
    )
    probed = udp_ruleset(
        lb([listener("u", "UDP", 53, "q")], [pool("q", "UDP")]), frozenset({"m1", "m3"})
    )
    assert probed.chains[f"vpcd-u-{names.lb_token('u')}"] == (
        "-p udp -j DNAT --to-destination 10.0.1.12:8080",
    )


def test_no_udp_listener_no_nat() -> None:
    assert udp_ruleset(lb([listener("l", "TCP", 80, "p")], [pool("p")])).chains == {}


# -- operating statuses ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stat", "monitored", "admin", "want"),
    [
        ("UP", True, True, "ONLINE"),
        ("UP 1/3", True, True, "ONLINE"),
        ("DOWN", True, True, "OFFLINE"),
        ("DOWN 1/2", True, True, "OFFLINE"),
        ("MAINT", True, True, "OFFLINE"),
        ("no check", False, True, "NO_MONITOR"),
        ("UP", True, False, "OFFLINE"),
        (None, True, True, "OFFLINE"),
    ],
)
def test_member_status(stat: str | None, monitored: bool, admin: bool, want: str) -> None:
    assert member_status(stat, monitored, admin) == want


def test_roll_up() -> None:
    the_lb = lb(
        [listener("l", "TCP", 80, "p"), listener("k", "TCP", 81, "q")],
        [pool("p", monitor=monitor()), pool("q", monitor=monitor())],
    )
    stats = {"m1": "UP", "m2": "DOWN", "m3": "UP"}
    got = operating(the_lb, stats)
    assert (got["m1"], got["m2"], got["p"], got["l"], got[the_lb.id]) == (
        "ONLINE",
        "OFFLINE",
        "DEGRADED",
        "DEGRADED",
        "DEGRADED",
    )
    assert operating(the_lb, {m: "UP" for m in stats})[the_lb.id] == "ONLINE"
    all_down = operating(the_lb, {m: "DOWN" for m in stats})
    assert (all_down["p"], all_down["l"]) == ("ERROR", "ERROR")
    assert operating(lb([], [], up=False), {})["11111111-2222-3333-4444-555555555555"] == "OFFLINE"


def test_udp_members_follow_the_probes() -> None:
    the_lb = lb([listener("u", "UDP", 53, "q")], [pool("q", "UDP", monitor=monitor("UDP-CONNECT"))])
    got = operating(the_lb, {}, {"m2": False})
    assert (got["m1"], got["m2"], got["q"]) == ("ONLINE", "OFFLINE", "DEGRADED")
    unmonitored = lb([listener("u", "UDP", 53, "q")], [pool("q", "UDP")])
    assert operating(unmonitored, {})["m1"] == "NO_MONITOR"


def test_an_unanswered_stats_read_measures_nothing() -> None:
    the_lb = lb([listener("l", "TCP", 80, "p")], [pool("p", monitor=monitor())])
    assert measure(the_lb, "") == {}
    text = "# pxname,svname,status\np-p,m-m1,UP\np-p,m-m2,DOWN\np-p,m-m3,UP\n"
    assert measure(the_lb, text)["m2"] == "OFFLINE"
    udp_only = lb([listener("u", "UDP", 53, "q")], [pool("q", "UDP")])
    assert measure(udp_only, "")["m1"] == "NO_MONITOR"


def test_parse_show_stat() -> None:
    text = (
        "# pxname,svname,qcur,status,weight\n"
        "l-x,FRONTEND,,OPEN,\n"
        "p-y,m-abc,0,UP,1\n"
        "p-y,m-def,0,DOWN 1/2,1\n"
        "p-y,BACKEND,0,UP,2\n"
    )
    assert parse_show_stat(text) == {"abc": "UP", "def": "DOWN 1/2"}
    assert parse_show_stat("") == {}


# -- the plan ---------------------------------------------------------------------------------


def state(*lbs: LoadBalancerState, ports: tuple[PortState, ...] = ()) -> HostState:
    subnet = SubnetState(id="s1", revision=1, vni=10, cidr="10.0.1.0/24", gateway_ip="10.0.1.1")
    return HostState(
        host="net-1",
        revision=5,
        vtep_ip="192.0.2.1",
        subnets=[subnet],
        ports=list(ports),
        load_balancers=list(lbs),
    )


def observe_lbs(desired: Desired, observed: Observed, running: set[str]) -> Observed:
    """What observation adds for load balancers, given which haproxy runs."""
    lbs = {
        lb_id: LbObs(netns=desired.lb_netns[lb_id], socket=SOCK, haproxy=lb_id in running)
        for lb_id in desired.lbs
    }
    return replace(observed, lbs={**observed.lbs, **lbs})


def test_a_new_load_balancer_is_realised_in_order_and_converges() -> None:
    the_lb = lb(
        [listener("l", "TCP", 80, "p"), listener("u", "UDP", 53, "q")],
        [pool("p"), pool("q", "UDP")],
    )
    desired = Desired.build(state(the_lb), "net-1-")
    netns = f"net-1-lb-{the_lb.id}"
    assert desired.lb_netns == {the_lb.id: netns}
    ops = plan(desired, observe_lbs(desired, Observed(), set()))
    kinds = [type(op) for op in ops]
    # namespace, leg, NAT and haproxy, in that order
    assert kinds.index(CreateNetns) < kinds.index(CreatePort) < kinds.index(RestoreNetnsRuleset)
    assert kinds.index(RestoreNetnsRuleset) < kinds.index(StartHaproxy)
    start = next(op for op in ops if isinstance(op, StartHaproxy))
    assert start.netns == netns and start.config == render(the_lb, SOCK)
    assert any(isinstance(op, EnableForwarding) for op in ops)
    port = next(op for op in ops if isinstance(op, CreatePort))
    assert (port.port_id, port.netns, port.ifname) == ("vip", netns, "vip0")
    after = apply_ops(observe_lbs(desired, Observed(), set()), ops)
    assert plan(desired, after) == []


def test_config_change_reloads_and_a_kill_restarts() -> None:
    the_lb = lb([listener("l", "TCP", 80, "p")], [pool("p")])
    desired = Desired.build(state(the_lb))
    base = apply_ops(
        observe_lbs(desired, Observed(), set()),
        plan(desired, observe_lbs(desired, Observed(), set())),
    )
    changed = lb([listener("l", "TCP", 80, "p")], [pool("p", members=[member(1, weight=3)])])
    newer = Desired.build(state(changed))
    assert [type(op) for op in plan(newer, base)] == [ReloadHaproxy]
    killed = replace(base, lbs={k: replace(v, haproxy=False) for k, v in base.lbs.items()})
    assert [type(op) for op in plan(desired, killed)] == [StartHaproxy]


def test_a_removed_load_balancer_stops_haproxy_before_its_namespace_goes() -> None:
    the_lb = lb([listener("l", "TCP", 80, "p")], [pool("p")])
    desired = Desired.build(state(the_lb))
    realised = apply_ops(
        observe_lbs(desired, Observed(), set()),
        plan(desired, observe_lbs(desired, Observed(), set())),
    )
    gone = Desired.build(state())
    ops = plan(gone, realised)
    assert isinstance(ops[0], StopHaproxy) and not ops[0].desired
    assert any(op.target == f"lb-{the_lb.id}" for op in ops if type(op).__name__ == "DeleteNetns")
    assert plan(gone, apply_ops(realised, ops)) == []


def test_a_user_port_cannot_take_a_load_balancer_s_namespace() -> None:
    the_lb = lb([], [])
    squatter = PortState(
        id="user",
        revision=1,
        subnet_id="s1",
        tenant_id="t",
        netns=f"lb-{the_lb.id}",
        mac="fa:16:3e:00:00:01",
        ip="10.0.1.5",
        prefixlen=24,
    )
    desired = Desired.build(state(the_lb, ports=(squatter,)))
    assert "load balancer" in desired.problems["user"]
    assert "vip" not in desired.problems and the_lb.id in desired.lbs


# -- the agent's UDP probes and their pace ----------------------------------------------------


def test_udp_probes_follow_each_monitor_delay_and_rise_fall(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from workers.agent import drivers
    from workers.agent.lbhealth import IDLE, LbHealth

    answers = {"10.0.1.12": False}  # m2's server is gone: an ICMP port unreachable
    probed: list[list[str]] = []

    def fake_probe(netns: str, targets: list[tuple[str, int]], timeout: float) -> list[bool]:
        probed.append([a for a, _ in targets])
        return [answers.get(a, True) for a, _ in targets]

    monkeypatch.setattr(drivers, "udp_probe", fake_probe)
    mon = monitor("UDP-CONNECT", delay=2, max_retries=2, max_retries_down=3)
    the_lb = lb([listener("u", "UDP", 53, "q")], [pool("q", "UDP", monitor=mon)])
    desired = Desired.build(state(the_lb))
    now = [100.0]
    health = LbHealth("/state", clock=lambda: now[0])
    assert LbHealth.pace(desired) == 2 and LbHealth.pace(None) == IDLE

    def tick(seconds: float) -> None:
        now[0] += seconds
        health.probe(desired)

    health.probe(desired)
    tick(1)  # not the pool's turn yet: no probe, no count
    assert len(probed) == 1
    tick(1)
    assert len(probed) == 2 and health.down() == frozenset()
    tick(2)  # the third failure in a row: out
    assert health.down() == {"m2"} and health.up()["m1"] is True
    answers.clear()
    tick(2)
    assert health.down() == {"m2"}  # one success is not max_retries
    tick(2)
    assert health.down() == frozenset()
    gone = Desired.build(state())
    health.probe(gone)
    assert health.up() == {}


def test_a_ping_monitor_on_a_udp_pool_uses_the_icmp_prober(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from workers.agent import drivers
    from workers.agent.lbhealth import LbHealth

    pinged: list[list[str]] = []

    def fake_icmp(netns: str, targets: list[str], timeout: float) -> list[bool]:
        pinged.append(targets)
        return [t != "10.0.1.12" for t in targets]

    def no_udp(netns: str, targets: list[tuple[str, int]], timeout: float) -> list[bool]:
        raise AssertionError("a PING monitor sends no UDP datagram")

    monkeypatch.setattr(drivers, "icmp_probe", fake_icmp)
    monkeypatch.setattr(drivers, "udp_probe", no_udp)
    mon = monitor("PING", delay=1, max_retries=1, max_retries_down=1)
    the_lb = lb([listener("u", "UDP", 53, "q")], [pool("q", "UDP", monitor=mon)])
    health = LbHealth("/state", clock=lambda: 0.0)
    health.probe(Desired.build(state(the_lb)))
    assert pinged and "10.0.1.12" in pinged[0] and health.down() == {"m2"}
    assert "external-check" not in render(the_lb, SOCK)  # UDP pools are not haproxy's


def test_icmp_echo_packets() -> None:
    from workers.agent.drivers.icmp import checksum, echo_request, parse_reply

    request = echo_request(0x1234, 7)
    assert checksum(request) == 0  # a packet with its checksum sums to zero
    assert request[:1] == b"\x08" and request[4:8] == bytes([0x12, 0x34, 0, 7])
    ip_header = bytes([0x45]) + bytes(19)
    reply = ip_header + bytes([0, 0]) + request[2:]
    assert parse_reply(reply, 0x1234) == 7
    assert parse_reply(reply, 0x4321) is None  # someone else's ping
    assert parse_reply(ip_header + request, 0x1234) is None  # a request, not a reply
    assert parse_reply(ip_header[:10], 0x1234) is None
