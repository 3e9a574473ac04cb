"""A load balancer's haproxy configuration and its status roll-up, as pure functions.

`render(lb, stats_socket)` is the whole haproxy.cfg for the TCP and HTTP listeners of one
load balancer (UDP ones are DNAT in the kernel, planners/lb.py); the agent writes it and
reloads the master seamlessly when it changed. `operating(lb, servers)` turns what
haproxy's stats socket says of each member (`show stat`) into the Octavia operating
statuses of members, pools, listeners and the load balancer.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping

from workers.protocol import ListenerState, LoadBalancerState, MonitorState, PoolState

ALGORITHMS = {"ROUND_ROBIN": "roundrobin", "LEAST_CONNECTIONS": "leastconn", "SOURCE_IP": "source"}
TIMEOUTS = ("timeout connect 5s", "timeout client 60s", "timeout server 60s")
# PING monitors: haproxy's external check runs this script (the drivers write it beside
# the stats socket) with the server's address as its third argument, as Octavia's does
PING_CHECK = "ping-check"
PING_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def frontend_name(listener_id: str) -> str:
    return f"l-{listener_id}"


def backend_name(pool_id: str) -> str:
    return f"p-{pool_id}"


def server_name(member_id: str) -> str:
    return f"m-{member_id}"


def haproxy_listeners(lb: LoadBalancerState) -> list[ListenerState]:
    """The listeners haproxy serves (TCP and HTTP), by port."""
    return [x for x in lb.listeners if x.protocol != "UDP"]


def expect_codes(codes: str) -> str:
    """Octavia's expected_codes (200, 200,202 or 200-204) as an http-check expect."""
    if "-" in codes:
        low, high = (int(c) for c in codes.split("-"))
        listed = [str(c) for c in range(low, high + 1)]
    else:
        listed = codes.split(",")
    if len(listed) == 1:
        return f"http-check expect status {listed[0]}"
    return f"http-check expect rstatus ^({'|'.join(listed)})$"


def ping_check(stats_socket: str) -> str:
    """The PING check script of the load balancer whose stats socket this is."""
    return posixpath.join(posixpath.dirname(stats_socket), PING_CHECK)


def _pings(lb: LoadBalancerState) -> bool:
    return any(
        p.monitor is not None and p.monitor.admin_state_up and p.monitor.type == "PING"
        for p in lb.pools
        if p.protocol != "UDP"
    )


def _checks(monitor: MonitorState | None, ping: str) -> tuple[list[str], str]:
    """The backend lines of a monitor and the flag its servers take."""
    if monitor is None or not monitor.admin_state_up:
        return [], ""
    lines = [
        f"timeout check {monitor.timeout}s",
        f"default-server inter {monitor.delay}s fall {monitor.max_retries_down} "
        f"rise {monitor.max_retries}",
    ]
    if monitor.type == "HTTP":
        lines += [
            "option httpchk",
            f"http-check send meth {monitor.http_method or 'GET'} uri {monitor.url_path or '/'}",
            expect_codes(monitor.expected_codes or "200"),
        ]
    elif monitor.type == "PING":
        lines += [
            "option external-check",
            f'external-check path "{PING_PATH}"',
            f"external-check command {ping}",
        ]
    return lines, " check"


def _backend(pool: PoolState, ping: str) -> list[str]:
    mode = "http" if pool.protocol == "HTTP" else "tcp"
    lines = [f"backend {backend_name(pool.id)}", f"    mode {mode}"]
    lines.append(f"    balance {ALGORITHMS[pool.lb_algorithm]}")
    if pool.lb_algorithm == "SOURCE_IP":
        lines.append("    hash-type consistent")
    checks, flag = _checks(pool.monitor, ping)
    lines += [f"    {line}" for line in checks]
    if not pool.admin_state_up:
        lines.append("    disabled")
    for m in pool.members:
        # admin down: maintenance, so new connections go elsewhere while a reload lets
        # the old worker finish the open ones; weight 0 drains the same way
        off = "" if m.admin_state_up else " disabled"
        lines.append(
            f"    server {server_name(m.id)} {m.address}:{m.protocol_port} "
            f"weight {m.weight}{flag}{off}"
        )
    return lines


def _frontend(lb: LoadBalancerState, listener: ListenerState, pools: set[str]) -> list[str]:
    mode = "http" if listener.protocol == "HTTP" else "tcp"
    lines = [
        f"frontend {frontend_name(listener.id)}",
        f"    mode {mode}",
        f"    bind {lb.vip_address}:{listener.protocol_port}",
    ]
    if listener.protocol == "HTTP":
        lines.append("    option forwardfor")
    if not listener.admin_state_up:
        lines.append("    disabled")
    if listener.default_pool_id in pools:
        lines.append(f"    default_backend {backend_name(listener.default_pool_id or '')}")
    return lines


def render(lb: LoadBalancerState, stats_socket: str) -> str:
    """The haproxy.cfg of one load balancer (deterministic: same input, same bytes)."""
    pools = {p.id: p for p in lb.pools if p.protocol != "UDP"}
    lines = [
        "global",
        f"    stats socket {stats_socket} mode 600 level admin expose-fd listeners",
        "    maxconn 2000",  # haproxy needs 2 fds a connection under the hard limit
        *(["    external-check", "    insecure-fork-wanted"] if _pings(lb) else []),
        "",
        "defaults",
        *(f"    {t}" for t in TIMEOUTS),
        "",
    ]
    for listener in haproxy_listeners(lb):
        lines += [*_frontend(lb, listener, set(pools)), ""]
    for pool in sorted(pools.values(), key=lambda p: p.id):
        lines += [*_backend(pool, ping_check(stats_socket)), ""]
    return "\n".join(lines)


# -- operating statuses -----------------------------------------------------------------------


def member_status(stat: str | None, monitored: bool, admin_up: bool) -> str:
    """One server's `show stat` status (UP, DOWN, MAINT, no check, UP 1/3, ...)."""
    if not admin_up:
        return "OFFLINE"
    if stat is None:
        return "OFFLINE"  # not (yet) known to haproxy
    word = stat.split(" ")[0]
    if word in ("MAINT", "DOWN"):
        return "OFFLINE"
    if not monitored or stat == "no check":
        return "NO_MONITOR"
    return "ONLINE"  # UP, UP 1/3 (going down), NOLB, DRAIN


def _pool_status(members: list[str], admin_up: bool) -> str:
    if not admin_up or not members:
        return "OFFLINE"
    down = sum(1 for s in members if s == "OFFLINE")
    if down == 0:
        return "ONLINE"
    return "ERROR" if down == len(members) else "DEGRADED"


def operating(
    lb: LoadBalancerState, servers: Mapping[str, str], probed: Mapping[str, bool] | None = None
) -> dict[str, str]:
    """Operating status by id (load balancer, listeners, pools, members).

    `servers` maps member id -> haproxy status; `probed` maps member id -> whether the
    agent's own probe (UDP pools) found it up."""
    probed = probed or {}
    out: dict[str, str] = {}
    for pool in lb.pools:
        monitored = pool.monitor is not None and pool.monitor.admin_state_up
        statuses = []
        for m in pool.members:
            if pool.protocol == "UDP":
                if not m.admin_state_up:
                    status = "OFFLINE"
                elif not monitored:
                    status = "NO_MONITOR"
                else:
                    status = "ONLINE" if probed.get(m.id, True) else "OFFLINE"
            else:
                status = member_status(servers.get(m.id), monitored, m.admin_state_up)
            out[m.id] = status
            if m.admin_state_up:
                statuses.append(status)
        out[pool.id] = _pool_status(statuses, pool.admin_state_up)
    worst = "ONLINE"
    for listener in lb.listeners:
        if not listener.admin_state_up:
            out[listener.id] = "OFFLINE"
            continue
        pool_status = out.get(listener.default_pool_id or "", "ONLINE")
        status = pool_status if pool_status in ("DEGRADED", "ERROR") else "ONLINE"
        out[listener.id] = status
        if status != "ONLINE":
            worst = "DEGRADED"
    out[lb.id] = worst if lb.admin_state_up else "OFFLINE"
    return out


def measure(
    lb: LoadBalancerState, show_stat: str, probed: Mapping[str, bool] | None = None
) -> dict[str, str]:
    """`operating` from a `show stat` answer; nothing (keep what was reported last) when
    haproxy should know members but did not answer: a missed read is no outage."""
    servers = parse_show_stat(show_stat)
    served = [
        m
        for p in lb.pools
        if p.protocol != "UDP" and any(x.default_pool_id == p.id for x in haproxy_listeners(lb))
        for m in p.members
    ]
    if lb.admin_state_up and served and not servers:
        return {}
    return operating(lb, servers, probed)


def parse_show_stat(text: str) -> dict[str, str]:
    """member id -> status from `show stat` CSV (servers named m-<id>)."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        return {}
    header = lines[0][2:].split(",")
    try:
        sv, st = header.index("svname"), header.index("status")
    except ValueError:
        return {}
    out: dict[str, str] = {}
    for line in lines[1:]:
        fields = line.split(",")
        if len(fields) > max(sv, st) and fields[sv].startswith("m-"):
            out[fields[sv][2:]] = fields[st]
    return out
