"""The commands the sandbox and its agents run, and the Debian packages that provide them.

`vpcd sandbox up` checks them first, so a fresh machine gets one line naming what to
install instead of a traceback from deep inside the fabric build.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Prerequisite:
    command: str
    package: str  # Debian/Ubuntu package
    why: str


PREREQUISITES: tuple[Prerequisite, ...] = (
    Prerequisite("ip", "iproute2", "namespaces, veths, bridges and VXLAN"),
    Prerequisite("bridge", "iproute2", "VXLAN forwarding entries"),
    Prerequisite("iptables", "iptables", "security groups and NAT"),
    Prerequisite("iptables-restore", "iptables", "whole rulesets, applied atomically"),
    Prerequisite("ipset", "ipset", "remote-group rules"),
    Prerequisite("conntrack", "conntrack", "cutting connections a removed rule allowed"),
    Prerequisite("ebtables-restore", "iptables", "ARP anti-spoofing (ebtables-nft)"),
    Prerequisite("ping", "iputils-ping", "trying traffic between workloads"),
    Prerequisite("dnsmasq", "dnsmasq-base", "DHCP and DNS inside every VPC"),
    Prerequisite("busybox", "busybox", "udhcpc, a DHCP client for workloads"),
    Prerequisite("dig", "dnsutils", "querying a VPC's resolver"),
    Prerequisite("haproxy", "haproxy", "load balancers' TCP and HTTP listeners"),
)


def missing(which: Callable[[str], str | None] | None = None) -> list[Prerequisite]:
    """The prerequisites whose command is not on PATH."""
    find = which or shutil.which
    return [p for p in PREREQUISITES if find(p.command) is None]


def packages(items: list[Prerequisite]) -> list[str]:
    """The distinct packages that provide `items`, in table order."""
    return list(dict.fromkeys(p.package for p in items))


def install_command(items: list[Prerequisite]) -> str:
    return "apt-get install -y " + " ".join(packages(items))


def problem(items: list[Prerequisite]) -> str | None:
    """One message naming the missing commands and the command that installs them."""
    if not items:
        return None
    commands = ", ".join(f"{p.command} ({p.package})" for p in items)
    return f"missing commands: {commands}; install them with: {install_command(items)}"
