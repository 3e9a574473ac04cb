"""One port change on a host with 60 filtered ports, in the real kernel: the incremental
sync plans that port alone, runs its tools straight in the host namespace (no nsenter),
converges with real packets, and a full sync after it finds nothing to do.

A port with no security group changes no rule and no set: its sync runs no tool at all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

if os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "ping", "iptables", "ipset")):
    pytest.skip("needs root, iproute2, iptables and ipset", allow_module_level=True)

from tests.e2e.agent_fabric import Fabric, build_fabric, netns_list, ping, port
from tests.e2e.test_agent_firewall_incremental import GROUP, document
from workers.agent import agent as agent_mod
from workers.agent.planners import ports as ports_planner
from workers.protocol import HostState

pytestmark = pytest.mark.e2e

COUNT = 60


@pytest.fixture
def fabric(tmp_path: Path) -> Iterator[Fabric]:
    with build_fabric(tmp_path) as fab:
        yield fab


@pytest.fixture
def watch(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """Ports the ports planner visits and the programs the agent's tools start."""
    seen: dict[str, list[Any]] = {"ports": [], "argv": []}
    plan_port = ports_planner._plan_port

    def counted_port(*args: Any) -> Any:
        seen["ports"].append(args[1].id)
        return plan_port(*args)

    class Counted(subprocess.Popen):  # type: ignore[type-arg]  # subprocess.run's too
        def __init__(self, argv: Any, *args: Any, **kwargs: Any) -> None:
            seen["argv"].append(list(argv))
            super().__init__(argv, *args, **kwargs)

    monkeypatch.setattr(ports_planner, "_plan_port", counted_port)
    monkeypatch.setattr(subprocess, "Popen", Counted)
    return seen


def _sync(agent: agent_mod.Agent, state: HostState, seen: dict[str, list[Any]]) -> None:
    for found in seen.values():
        found.clear()
    assert agent.sync(state).ok


def test_one_port_change_is_planned_alone_and_a_full_sync_then_plans_nothing(
    fabric: Fabric, watch: dict[str, list[Any]]
) -> None:
    sid = str(uuid.uuid4())
    ports = [port(sid, f"w{i}", 10 + i, security_group_ids=[GROUP]) for i in range(COUNT)]
    agent = fabric.agent("h1")
    assert agent.sync(document(sid, ports, 1)).ok

    extra = port(sid, "wx", 100, security_group_ids=[GROUP])
    grown = document(sid, [*ports, extra], 2)
    _sync(agent, grown, watch)
    assert not agent.stats.full and agent.stats.iptables_saves == 0
    assert set(watch["ports"]) == {extra.id}  # plan and verify: the new port alone
    tools = [argv[0] for argv in watch["argv"]]
    assert {"iptables-restore", "ebtables-restore", "ipset"} <= set(tools)
    assert "nsenter" not in tools  # forked inside the host namespace
    assert ping(fabric.workload("h1", "wx"), ports[0].ip)  # its rules and set work
    assert ping(fabric.workload("h1", "w3"), extra.ip)
    assert agent.pending(grown) == []  # a full observation agrees
    assert agent.sync(grown, full=True).ok and agent.stats.full and agent.stats.ops == 0

    shrunk = document(sid, [*ports[:-1], extra], 3)
    _sync(agent, shrunk, watch)
    assert not agent.stats.full
    assert watch["ports"] == []  # a removal visits no remaining port
    tools = [argv[0] for argv in watch["argv"]]
    assert "conntrack" in tools and "nsenter" not in tools  # the member's flows are cut
    assert fabric.workload("h1", ports[-1].netns) not in netns_list()
    assert ping(fabric.workload("h1", "wx"), ports[0].ip)
    assert agent.pending(shrunk) == []
    assert agent.sync(shrunk, full=True).ok and agent.stats.ops == 0


def test_a_change_with_no_firewall_effect_runs_no_tool(
    fabric: Fabric, watch: dict[str, list[Any]]
) -> None:
    sid = str(uuid.uuid4())
    ports = [port(sid, f"w{i}", 10 + i, security_group_ids=[GROUP]) for i in range(COUNT)]
    agent = fabric.agent("h1")
    assert agent.sync(document(sid, ports, 1)).ok
    open_port = port(sid, "wo", 100)  # no security group: no chain, no set member
    state = document(sid, ports, 2)
    state = state.model_copy(update={"ports": [*ports, open_port]})
    _sync(agent, state, watch)
    assert not agent.stats.full and agent.stats.ops > 0
    assert watch["argv"] == []  # no iptables, ebtables, ipset nor conntrack process
    assert set(watch["ports"]) == {open_port.id}
    assert ping(fabric.workload("h1", "wo"), ports[0].ip) is False  # w0 admits its group only
    assert agent.pending(state) == []
    assert agent.sync(state, full=True).ok and agent.stats.ops == 0
