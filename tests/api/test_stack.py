"""`vpcctl plan / apply / destroy` against the real app, in process.

The HTTP client vpcctl builds is a TestClient on the app (as in test_vpcctl.py) whose
hooks can cut the connection after N writes (a crash mid-apply) or lose one answer after
the app handled the request (a retry must not duplicate).
"""

from __future__ import annotations

import textwrap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from cli import client as vpcctl_client
from cli import vpcctl
from cli.stack import execute
from tests.api import helpers as h
from tests.conftest import ADMIN, Tenant
from workers.controller import tasks
from workers.protocol import HostState, Report, ResourceResult

URL = "http://vpcd.test:8080"
WRITES = ("POST", "PATCH", "DELETE")

STACK = """\
stack: shop
vpcs:
  main:
    cidr: 10.20.0.0/16
    description: the shop
security_groups:
  web:
    vpc: main
    rules:
      - {direction: ingress, protocol: tcp, port_min: 80, port_max: 80, remote_cidr: 0.0.0.0/0}
      - {direction: ingress, protocol: icmp, remote_group: db}
  db:
    vpc: main
    rules:
      - {direction: ingress, protocol: any, remote_group: web}
      - {direction: egress, protocol: any, remote_cidr: 0.0.0.0/0}
subnets:
  web: {vpc: main, cidr: 10.20.1.0/24}
  db: {vpc: main, cidr: 10.20.2.0/24}
routers:
  edge:
    vpc: main
    external_network: public
    interfaces: [web, db]
ports:
  web1: {subnet: web, host: h1, netns: web1, security_groups: [web]}
  db1: {subnet: db, host: h2, netns: db1, ip_address: 10.20.2.10, security_groups: [db]}
floating_ips:
  web1: {external_network: public, port: web1}
"""


@dataclass
class Net:
    """The wire between vpcctl and the app, with faults on demand."""

    writes: int = 0
    cut_after: int | None = None  # writes after this many find no connection
    lose: set[int] = field(default_factory=set)  # these writes (1-based) lose their answer
    sent: list[tuple[str, str]] = field(default_factory=list)

    def on_request(self, request: httpx.Request) -> None:
        if request.method in WRITES:
            self.writes += 1
            if self.cut_after is not None and self.writes > self.cut_after:
                raise httpx.ConnectError("connection refused", request=request)
        self.sent.append((request.method, request.url.path))

    def on_response(self, response: httpx.Response) -> None:
        if response.request.method in WRITES and self.writes in self.lose:
            self.lose.discard(self.writes)
            raise httpx.ReadError("connection reset", request=response.request)


@dataclass
class Stack:
    runner: CliRunner
    net: Net
    path: Path
    token: str

    def write(self, text: str) -> None:
        self.path.write_text(text)

    def __call__(self, *args: str, code: int = 0) -> Result:
        argv = ["--url", URL, "--token", self.token, *args, "-f", str(self.path)]
        result = self.runner.invoke(vpcctl.app, argv)
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
        return result


@pytest.fixture
def stack(
    app: FastAPI,
    client: TestClient,
    tenant: Tenant,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Stack:
    net = Net()

    def make_client(url: str, timeout: float) -> httpx.Client:
        tc = TestClient(app, base_url=url)
        tc.event_hooks = {"request": [net.on_request], "response": [net.on_response]}
        return tc

    monkeypatch.setattr(vpcctl_client, "make_client", make_client)
    monkeypatch.setattr(execute, "pause", lambda seconds: None)
    h.external_network(client, name="public")
    for name, ip in (("h1", "198.18.0.11"), ("h2", "198.18.0.12")):  # ports bind to these
        h.host(client, name=name, vtep_ip=ip)
    s = Stack(CliRunner(), net, tmp_path / "stack.yaml", tenant.token)
    s.write(STACK)
    return s


def tagged(client: TestClient, tenant: Tenant, path: str) -> list[dict[str, Any]]:
    r = client.get(path, params={"tag": "stack:shop", "limit": 1000}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    return r.json()["items"]  # type: ignore[no-any-return]


def census(client: TestClient, tenant: Tenant) -> Counter[str]:
    """How many of each kind the tenant has (tagged or not): duplicates would show."""
    out: Counter[str] = Counter()
    for path in ("vpcs", "subnets", "routers", "ports", "floating-ips", "security-groups"):
        items = client.get(f"/v1/{path}?limit=1000", headers=tenant.headers).json()["items"]
        out[path] = len(items)
    rules = client.get("/v1/security-group-rules?limit=1000", headers=tenant.headers).json()
    out["rules"] = len(rules["items"])
    return out


FULL = Counter(
    {
        "vpcs": 1,
        "subnets": 2,
        "routers": 1,
        "ports": 4,  # two of the file's and the router's two legs
        "floating-ips": 1,
        "security-groups": 3,  # two of the file's and the VPC's default
        "rules": 7,  # four of the file's; the default group's three (egress IPv4 and IPv6)
    }
)


def test_plan_apply_second_apply_is_a_no_op(
    stack: Stack, client: TestClient, tenant: Tenant
) -> None:
    plan = stack("plan", code=2)
    assert plan.stdout.splitlines()[0] == (
        "stack shop: 9 to create, 0 to update, 0 to delete, 0 unchanged"
    )
    assert "+ subnets/web  (line 18)" in plan.stdout
    assert "    cidr: '10.20.1.0/24'" in plan.stdout
    assert "    vpc_id: (new vpcs/main)" in plan.stdout
    assert not [m for m, _ in stack.net.sent if m in WRITES]  # plan only reads

    stack("apply", "--no-wait")
    assert census(client, tenant) == FULL
    subnets = {s["name"]: s for s in tagged(client, tenant, "/v1/subnets")}
    vpc = tagged(client, tenant, "/v1/vpcs")[0]
    assert subnets["web"]["vpc_id"] == vpc["id"] and subnets["db"]["cidr"] == "10.20.2.0/24"
    assert "stack-key:web" in subnets["web"]["tags"]
    router = tagged(client, tenant, "/v1/routers")[0]
    assert sorted(router["subnet_ids"]) == sorted(s["id"] for s in subnets.values())
    groups = {g["name"]: g for g in tagged(client, tenant, "/v1/security-groups")}
    ports = {p["name"]: p for p in tagged(client, tenant, "/v1/ports")}
    assert ports["web1"]["security_group_ids"] == [groups["web"]["id"]]
    assert ports["db1"]["ip_address"] == "10.20.2.10"
    fip = tagged(client, tenant, "/v1/floating-ips")[0]
    assert fip["port_id"] == ports["web1"]["id"]
    web_rules = client.get(
        f"/v1/security-group-rules?security_group_id={groups['web']['id']}", headers=tenant.headers
    ).json()["items"]
    assert {(r["protocol"], r["remote_group_id"]) for r in web_rules} == {
        ("tcp", None),
        ("icmp", groups["db"]["id"]),
    }

    stack.net.sent.clear()
    again = stack("plan", code=0)
    assert "0 to create, 0 to update, 0 to delete, 9 unchanged" in again.stdout
    stack("apply", "--no-wait")
    assert not [m for m, _ in stack.net.sent if m in WRITES]
    assert census(client, tenant) == FULL


def test_drift_is_an_update_and_changes_apply_field_by_field(
    stack: Stack, client: TestClient, tenant: Tenant
) -> None:
    stack("apply", "--no-wait")
    vpc = tagged(client, tenant, "/v1/vpcs")[0]
    r = client.patch(
        f"/v1/vpcs/{vpc['id']}", json={"description": "edited"}, headers=tenant.headers
    )
    assert r.status_code == 200
    drift = stack("plan", code=2)
    assert "~ vpcs/main  (line 3)" in drift.stdout
    assert "    description: 'edited' -> 'the shop'" in drift.stdout

    # the file changes: a rule goes, a port moves group, the floating IP lets go, a subnet goes
    changed = (
        STACK.replace("      - {direction: ingress, protocol: icmp, remote_group: db}\n", "")
        .replace("security_groups: [db]}", "security_groups: [db, web]}")
        .replace(
            "  web1: {external_network: public, port: web1}", "  web1: {external_network: public}"
        )
    )
    stack.write(changed)
    plan = stack("plan", code=2).stdout
    assert "0 to create, 4 to update, 0 to delete" in plan, plan
    assert "    rules: - direction=ingress protocol=icmp remote_group_id=security_groups/db" in plan
    assert "    port_id: 'ports/web1' -> None" in plan
    stack("apply", "--no-wait")
    assert stack("plan", code=0)
    ports = {p["name"]: p for p in tagged(client, tenant, "/v1/ports")}
    groups = {g["name"]: g["id"] for g in tagged(client, tenant, "/v1/security-groups")}
    assert sorted(ports["db1"]["security_group_ids"]) == sorted([groups["db"], groups["web"]])
    assert tagged(client, tenant, "/v1/floating-ips")[0]["port_id"] is None
    assert tagged(client, tenant, "/v1/vpcs")[0]["description"] == "the shop"

    # dropped from the file: deleted, children before parents
    smaller = changed.split("routers:")[0].replace("  db: {vpc: main, cidr: 10.20.2.0/24}\n", "")
    smaller = smaller.replace("security_groups: [db, web]", "")
    stack.write(smaller)
    plan = stack("plan", code=2).stdout
    deletes = [line.split()[1] for line in plan.splitlines() if line.startswith("- ")]
    assert deletes == [
        "floating_ips/web1",
        "ports/db1",
        "ports/web1",
        "routers/edge",
        "subnets/db",
    ]
    stack("apply", "--no-wait")
    assert {s["name"] for s in tagged(client, tenant, "/v1/subnets")} == {"web"}
    stack("plan", code=0)


def test_destroy_deletes_everything_tagged_in_reverse_order(
    stack: Stack, client: TestClient, tenant: Tenant
) -> None:
    outside = h.vpc(client, tenant, "10.99.0.0/16", name="not-mine")
    stack("apply", "--no-wait")
    stack.net.sent.clear()
    out = stack("destroy").stdout
    assert "0 to create, 0 to update, 9 to delete" in out
    deletes = [p for m, p in stack.net.sent if m == "DELETE"]
    kinds = [p.split("/")[2] for p in deletes]
    order = [
        "floating-ips",
        "ports",
        "routers",
        "subnets",
        "security-group-rules",
        "security-groups",
        "vpcs",
    ]
    assert [k for k in order if k in kinds] == order
    assert sorted(kinds, key=order.index) == kinds, kinds
    assert census(client, tenant) == Counter({"vpcs": 1, "security-groups": 1, "rules": 3})
    assert client.get(f"/v1/vpcs/{outside['id']}", headers=tenant.headers).status_code == 200
    assert "nothing to destroy" in stack("destroy").stdout
    stack("plan", code=2)


def test_a_concurrent_change_is_a_412_not_an_overwrite(
    stack: Stack, client: TestClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack("apply", "--no-wait")
    stack.write(STACK.replace("description: the shop", "description: new"))
    vpc = tagged(client, tenant, "/v1/vpcs")[0]
    real = execute.Executor.run

    def meanwhile(self: execute.Executor) -> None:  # someone edits between plan and PATCH
        r = client.patch(f"/v1/vpcs/{vpc['id']}", json={"name": "theirs"}, headers=tenant.headers)
        assert r.status_code == 200
        real(self)

    monkeypatch.setattr(execute.Executor, "run", meanwhile)
    failed = stack("apply", "--no-wait", code=1)
    assert "vpcs/main: changed by someone else since this plan was made" in failed.stderr
    assert "412" in failed.stderr
    got = client.get(f"/v1/vpcs/{vpc['id']}", headers=tenant.headers).json()
    assert (got["name"], got["description"]) == ("theirs", "the shop")


def test_a_crash_mid_apply_then_a_retry_duplicates_nothing(
    stack: Stack, client: TestClient, tenant: Tenant
) -> None:
    stack.net.cut_after = 7
    failed = stack("apply", "--no-wait", code=1)
    assert "no answer from" in failed.stderr and "run apply again" in failed.stderr
    assert 0 < sum(census(client, tenant).values()) < sum(FULL.values())
    stack.net.cut_after = None
    stack("apply", "--no-wait")
    assert census(client, tenant) == FULL
    stack("plan", code=0)


def test_a_lost_answer_is_retried_with_the_same_key(
    stack: Stack, client: TestClient, tenant: Tenant
) -> None:
    stack.net.lose = {1, 7, 13}  # the VPC, a rule and a subnet: made, but the answer never came
    stack("apply", "--no-wait")
    assert census(client, tenant) == FULL
    keys = [m for m, _ in stack.net.sent if m == "POST"]
    assert len(keys) == 14 + 3  # every create once (the defaults kept are not), 3 sent twice
    stack("plan", code=0)


def test_apply_destroy_apply_again_is_not_answered_from_old_keys(
    stack: Stack, client: TestClient, tenant: Tenant
) -> None:
    stack("apply", "--no-wait")
    stack("destroy")
    stack("apply", "--no-wait")
    assert census(client, tenant) == FULL
    stack("plan", code=0)


def _realise(state: HostState, fail: str | None = None) -> dict[str, Any]:
    results = [
        ResourceResult(kind="subnet", id=s.id, revision=s.revision, ok=True) for s in state.subnets
    ] + [
        ResourceResult(
            kind="port", id=p.id, revision=p.revision, ok=p.id != fail, detail="EPERM: veth"
        )
        for p in state.ports
    ]
    return Report(
        host=state.host, revision=state.revision, ok=fail is None, results=results
    ).model_dump(mode="json")


def test_apply_waits_for_active_and_stops_on_error(
    stack: Stack, client: TestClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    """The hosts realise the stack while apply polls; a port in error stops it with its detail."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(
        tasks.app,
        "send_task",
        lambda name, args=None, **_: (
            sent.append(args[0]) if args and isinstance(args[0], dict) else None
        ),
    )
    for name, ip in (("h1", "198.18.0.11"), ("h2", "198.18.0.12")):
        tasks.heartbeat(name, ip, ["compute"], first=True, sections=["subnets", "ports"])
    stack.write(
        STACK.split("security_groups:")[0]
        + "subnets:"
        + STACK.split("subnets:")[1].split("routers:")[0]
        + "ports:\n  web1: {subnet: web, host: h1, netns: web1}\n  spare: {subnet: web}\n"
        "  db1: {subnet: db, host: h2, netns: db1}\n"
    )
    failing: list[str] = []

    def hosts_work(seconds: float) -> None:
        for host in ("h1", "h2"):
            sent.clear()
            tasks.sync_host(host)
            for doc in sent:
                state = HostState.model_validate(doc)
                bad = next((p.id for p in state.ports if p.netns in failing), None)
                tasks.report(_realise(state, bad))

    monkeypatch.setattr(execute, "pause", hosts_work)
    done = stack("apply", "--wait-timeout", "30")
    assert "stack shop: applied" in done.stdout
    ports = {p["name"]: p["status"] for p in tagged(client, tenant, "/v1/ports")}
    # an unbound port stays pending by design: apply does not wait for it
    assert ports == {"web1": "active", "db1": "active", "spare": "pending"}

    failing.append("db1")
    stack.write(stack.path.read_text().replace("netns: db1}", "netns: db1, description: x}"))
    failed = stack("apply", "--wait-timeout", "30", code=1)
    assert "ports/db1 is in error: host h2: EPERM: veth" in failed.stderr


def test_a_bad_file_is_reported_with_lines_before_any_request(stack: Stack) -> None:
    stack.write(
        textwrap.dedent(
            """\
            stack: shop
            vpcs:
              main: {cidr: 10.20.0.0/33}
            subnets:
              web: {vpc: mian, cidr: 10.20.1.0/24}
            """
        )
    )
    failed = stack("apply", code=1)
    path = str(stack.path)
    assert failed.stderr.splitlines() == [
        f"{path}:3: vpcs/main: cidr '10.20.0.0/33' is not an IPv4 CIDR in canonical form, "
        "such as 10.0.0.0/16",
        f"{path}:5: subnets/web: vpc 'mian' names no VPC of this file (this file has: main)",
    ]
    assert stack.net.sent == []


def test_an_unknown_external_network_names_its_line(stack: Stack, client: TestClient) -> None:
    stack.write(STACK.replace("external_network: public\n", "external_network: pubic\n"))
    failed = stack("plan", code=1)
    assert f"{stack.path}:23: routers/edge: no external network is named 'pubic'" in failed.stderr
    assert not [m for m, _ in stack.net.sent if m in WRITES]
    assert ADMIN  # the network itself is the admin's (made by the fixture)
