"""dnsmasq for one subnet's DHCP and DNS, rendered purely from its `DhcpDnsState`.

Everything dnsmasq re-reads on SIGHUP lives in files of its own (static leases in
`dhcp_hosts`, options in `dhcp_opts`, names in `addn_hosts`, upstream resolvers in
`servers`), so a change of names, leases, options or upstreams is a reload. Only
`dnsmasq.conf` (interface, range, domain, paths) needs a restart. The DHCP range is
`static`: dnsmasq answers only MACs it has a `dhcp-host` line for, so it never hands out
an address IPAM did not allocate.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from workers.agent import names
from workers.protocol import DhcpDnsState

SERVICE_DIR = "dhcp"  # under the agent's state dir, one directory per service token
CONF = "dnsmasq.conf"
RELOADABLE = ("dhcp_hosts", "dhcp_opts", "addn_hosts", "servers")
FILES = (CONF, *RELOADABLE)
LEASE_TIME = "1h"
# dnsmasq drops root for these (Debian's dnsmasq-base makes the user; nogroup is its
# primary group): the service's directory and files are root-owned, group-readable by it.
USER = "dnsmasq"
GROUP = "nogroup"
HEADER = "# vpcd: rendered by the agent; edits are overwritten\n"


def service_dir(state_dir: str | os.PathLike[str], token: str) -> str:
    if not names.is_service_token(token):
        raise ValueError(f"invalid service token {token!r}")
    return str(Path(state_dir) / SERVICE_DIR / token)


def daemon_name(token: str) -> str:
    """The pid file's name (workers/agent/drivers/processes.py)."""
    return f"dnsmasq-{token}"


def argv(directory: str) -> list[str]:
    """The command line: in the foreground (the agent watches it), the rest in the file."""
    return ["dnsmasq", "--keep-in-foreground", f"--conf-file={directory}/{CONF}"]


def render(svc: DhcpDnsState, directory: str) -> dict[str, str]:
    """Every file of the service, by name."""
    net = ipaddress.IPv4Network(svc.cidr)
    conf = [
        f"# subnet {svc.subnet_id}",
        # never root: it binds and opens its pid and lease files first, then drops to
        # this user, who re-reads the other files on SIGHUP (readable by GROUP)
        f"user={USER}",
        f"group={GROUP}",
        "no-hosts",  # names come from addn_hosts only, never the host's /etc/hosts
        "no-resolv",  # upstreams come from `servers` only, never the host's resolv.conf
        "domain-needed",
        "bogus-priv",
        "bind-interfaces",
        f"interface={names.SERVICE_IFNAME}",
        "except-interface=lo",
        f"domain={svc.domain}",
        f"local=/{svc.domain}/",  # the VPC's own names are never forwarded
        f"dhcp-range={net.network_address},static,{net.netmask},{LEASE_TIME}",
        f"dhcp-hostsfile={directory}/dhcp_hosts",
        f"dhcp-optsfile={directory}/dhcp_opts",
        f"addn-hosts={directory}/addn_hosts",
        f"servers-file={directory}/servers",
        f"dhcp-leasefile={directory}/leases",
        f"pid-file={directory}/dnsmasq.pid",
    ]
    return {
        CONF: HEADER + "\n".join(conf) + "\n",
        "dhcp_hosts": HEADER + "".join(_lease(x.mac, x.ip, x.hostname) for x in svc.leases),
        "dhcp_opts": HEADER + "".join(f"{line}\n" for line in options(svc)),
        "addn_hosts": HEADER + "".join(_host(r.ip, r.name, svc.domain) for r in svc.hosts),
        "servers": HEADER + "".join(f"server={ip}\n" for ip in svc.upstreams),
    }


def _lease(mac: str, ip: str, hostname: str | None) -> str:
    return f"{mac},{ip},{hostname}\n" if hostname else f"{mac},{ip}\n"


def _host(ip: str, fqdn: str, domain: str) -> str:
    short = fqdn[: -len(domain) - 1] if fqdn.endswith("." + domain) else ""
    return f"{ip} {fqdn} {short}\n" if short else f"{ip} {fqdn}\n"


def options(svc: DhcpDnsState) -> list[str]:
    """DHCP options: router (none when unrouted: dnsmasq would offer itself), DNS server,
    domain, MTU (26) and classless static routes (121; a client that takes them ignores
    the router option, RFC 3442, so the default route is repeated there)."""
    opts = [
        f"option:router,{svc.router}" if svc.router else "option:router",
        f"option:dns-server,{svc.address}",
        f"option:domain-name,{svc.domain}",
        f"option:mtu,{svc.mtu}",
    ]
    routes = [("0.0.0.0/0", svc.router)] if svc.router else []
    routes += [(str(ipaddress.ip_network(r.destination)), r.nexthop) for r in svc.host_routes]
    if routes:
        opts.append("option:classless-static-route," + ",".join(f"{d},{n}" for d, n in routes))
    return opts


RESOLV_HEADER = "# vpcd: the VPC resolver of this namespace\n"


def resolv_conf(nameserver: str, domain: str) -> str:
    """/etc/netns/<netns>/resolv.conf of a workload namespace (`ip netns exec` binds it)."""
    return f"{RESOLV_HEADER}search {domain}\nnameserver {nameserver}\noptions timeout:1\n"
