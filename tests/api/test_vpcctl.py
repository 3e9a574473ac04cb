"""`vpcctl` end to end: the real CLI (typer's CliRunner) against the real app, in process.

vpcctl builds its HTTP client through `cli.client.make_client`; the fixture swaps that for a
TestClient on the app (an httpx.Client), so every command goes through routing, validation
and the database exactly as it would over the network.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import typer
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from cli import client as vpcctl_client
from cli import options, output, resources, vpcctl
from tests.api import helpers as h
from tests.conftest import ADMIN_TOKEN, Tenant

URL = "http://vpcd.test:8080"


@dataclass
class Cli:
    """Runs vpcctl and records what it sent."""

    runner: CliRunner
    urls: list[str] = field(default_factory=list)
    sent: list[httpx.Request] = field(default_factory=list)

    def __call__(
        self, *args: str, token: str | None = None, code: int = 0, env: dict[str, str] | None = None
    ) -> Result:
        argv = ["--url", URL, *(["--token", token] if token else []), *args]
        result = self.runner.invoke(vpcctl.app, argv, env=env)
        assert result.exit_code == code, (
            result.exit_code,
            result.stdout,
            result.stderr,
            result.exception,
        )
        return result

    def json(self, *args: str, token: str | None = None) -> Any:
        return json.loads(self(*args, "-o", "json", token=token).stdout)

    def gets(self) -> list[httpx.Request]:
        return [r for r in self.sent if r.method == "GET"]


@pytest.fixture
def cli(app: FastAPI, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """`client` is requested for its cleanup: the database is wiped after the test."""
    runner = Cli(CliRunner())

    def make_client(url: str, timeout: float) -> httpx.Client:
        runner.urls.append(url)
        tc = TestClient(app, base_url=url)
        tc.event_hooks = {"request": [runner.sent.append]}
        return tc

    monkeypatch.setattr(vpcctl_client, "make_client", make_client)
    return runner


def flat(text: str) -> str:
    """Text out of a rich panel: borders dropped, wrapped lines joined."""
    return " ".join(text.replace("│", " ").split())


def row_of(table: str, ident: str) -> list[str]:
    """The cells of the table row that holds `ident`."""
    for line in table.splitlines():
        if ident in line:
            return [c.strip() for c in line.strip("│┃| ").split("│")]
    raise AssertionError(f"{ident} not in\n{table}")


# --------------------------------------------------------------------------- CRUD


def test_vpc_lifecycle(cli: Cli, client: TestClient, tenant: Tenant) -> None:
    t = tenant.token
    made = cli.json(
        "vpcs",
        "create",
        "--cidr",
        "10.0.0.0/16",
        "--name",
        "x",
        "--tag",
        "a",
        "--tag",
        "b",
        "--description",
        "d",
        token=t,
    )
    assert (made["cidr"], made["name"], made["tags"], made["description"]) == (
        "10.0.0.0/16",
        "x",
        ["a", "b"],
        "d",
    )
    assert made["tenant_id"] == tenant.id
    vid = made["id"]
    stored = client.get(f"/v1/vpcs/{vid}", headers=tenant.headers).json()
    assert stored == made

    shown = cli("vpcs", "show", vid, token=t).stdout  # table: one field per row
    assert row_of(shown, "cidr") == ["cidr", "10.0.0.0/16"]
    assert row_of(shown, "tags") == ["tags", "a, b"]
    assert row_of(shown, "default_security_group_id")[1] == made["default_security_group_id"]
    assert cli.json("vpcs", "show", vid, token=t) == stored

    changed = cli.json(
        "vpcs",
        "update",
        vid,
        "--set",
        "name=renamed",
        "--set",
        'tags=["z"]',
        "--set",
        "description=null text",
        token=t,
    )
    assert (changed["name"], changed["tags"], changed["description"]) == (
        "renamed",
        ["z"],
        "null text",
    )
    assert changed["revision"] == made["revision"] + 1
    assert client.get(f"/v1/vpcs/{vid}", headers=tenant.headers).json()["name"] == "renamed"

    stale = cli(
        "vpcs",
        "update",
        vid,
        "--set",
        "name=y",
        "--if-match",
        str(made["revision"]),
        token=t,
        code=1,
    )
    assert stale.stderr.startswith("Precondition failed: ")
    assert client.get(f"/v1/vpcs/{vid}", headers=tenant.headers).json()["name"] == "renamed"
    fresh = cli.json(
        "vpcs", "update", vid, "--set", "name=y", "--if-match", str(changed["revision"]), token=t
    )
    assert fresh["name"] == "y"
    assert cli.sent[-1].headers["if-match"] == f'"{changed["revision"]}"'

    listed = cli("vpcs", "list", token=t).stdout
    assert row_of(listed, vid)[:3] == [vid, "y", "10.0.0.0/16"]
    assert [v["id"] for v in cli.json("vpcs", "list", token=t)] == [vid]

    cli("vpcs", "delete", vid, "--if-match", str(made["revision"]), token=t, code=1)
    out = cli("vpcs", "delete", vid, token=t).stdout
    assert vid in out
    assert client.get(f"/v1/vpcs/{vid}", headers=tenant.headers).status_code == 404
    assert cli.json("vpcs", "list", token=t) == []


def test_subnet_lifecycle(cli: Cli, client: TestClient, tenant: Tenant) -> None:
    t = tenant.token
    vpc = h.vpc(client, tenant)
    pools = [{"start": "10.0.1.10", "end": "10.0.1.20"}]
    made = cli.json(
        "subnets",
        "create",
        "--vpc-id",
        vpc["id"],
        "--cidr",
        "10.0.1.0/24",
        "--name",
        "web",
        "--dns-nameserver",
        "192.0.2.53",
        "--set",
        f"allocation_pools={json.dumps(pools)}",
        "--set",
        'host_routes=[{"destination":"192.168.0.0/16","nexthop":"10.0.1.254"}]',
        token=t,
    )
    sid = made["id"]
    assert made["allocation_pools"] == pools
    assert made["dns_nameservers"] == ["192.0.2.53"]
    assert made["host_routes"] == [{"destination": "192.168.0.0/16", "nexthop": "10.0.1.254"}]
    assert made["gateway_ip"] == "10.0.1.1"
    assert isinstance(made["vni"], int)
    assert client.get(f"/v1/subnets/{sid}", headers=tenant.headers).json() == made

    other = h.vpc(client, tenant, "10.1.0.0/16")
    h.subnet(client, tenant, other["id"], "10.1.1.0/24")
    by_vpc = cli.json("subnets", "list", "--filter", f"vpc_id={vpc['id']}", token=t)
    assert [s["id"] for s in by_vpc] == [sid]
    assert cli.gets()[-1].url.params["vpc_id"] == vpc["id"]
    assert len(cli.json("subnets", "list", token=t)) == 2

    table = cli("subnets", "list", "-f", "name=web", token=t).stdout
    header = table.splitlines()[1]
    for column in ("id", "name", "vpc_id", "cidr", "gateway_ip", "vni", "status"):
        assert column in header
    assert row_of(table, sid) == [
        sid,
        "web",
        vpc["id"],
        "10.0.1.0/24",
        "10.0.1.1",
        str(made["vni"]),
        "pending",
    ]

    changed = cli.json("subnets", "update", sid, "--set", 'dns_nameservers=["192.0.2.54"]', token=t)
    assert changed["dns_nameservers"] == ["192.0.2.54"]
    cli("subnets", "delete", sid, token=t)
    assert client.get(f"/v1/subnets/{sid}", headers=tenant.headers).status_code == 404


def test_pagination_follows_next_page_token(cli: Cli, client: TestClient, tenant: Tenant) -> None:
    ids = {h.vpc(client, tenant, f"10.{i}.0.0/16", name=f"v{i}")["id"] for i in range(5)}

    got = cli.json("vpcs", "list", "--page-size", "2", token=tenant.token)
    assert len(got) == 5 and {v["id"] for v in got} == ids
    pages = cli.gets()
    assert len(pages) == 3
    assert "page_token" not in pages[0].url.params
    assert all(p.url.params["page_token"] for p in pages[1:])

    cli.sent.clear()
    first3 = cli.json("vpcs", "list", "--page-size", "2", "--limit", "3", token=tenant.token)
    assert [v["id"] for v in first3] == [v["id"] for v in got[:3]]
    assert [p.url.params["limit"] for p in cli.gets()] == ["2", "1"]

    cli.sent.clear()
    table = cli("vpcs", "list", token=tenant.token).stdout
    assert len(cli.gets()) == 1
    for ident in ids:
        assert row_of(table, ident)[0] == ident


def test_unknown_filter_is_a_usage_error(cli: Cli, tenant: Tenant) -> None:
    r = cli("vpcs", "list", "--filter", "vpc_id=x", token=tenant.token, code=2)
    assert "cannot filter VPCs by vpc_id; filters: name, tag, cidr" in flat(r.stderr)
    r = cli("vpcs", "list", "--filter", "novalue", token=tenant.token, code=2)
    assert "expected key=value, got 'novalue'" in flat(r.stderr)
    assert cli.sent == []


def test_idempotency_key_replays(cli: Cli, client: TestClient, tenant: Tenant) -> None:
    args = ("vpcs", "create", "--cidr", "10.0.0.0/16", "--idempotency-key", "k-1")
    first = cli.json(*args, token=tenant.token)
    again = cli.json(*args, token=tenant.token)
    assert again == first
    assert cli.sent[-1].headers["idempotency-key"] == "k-1"
    assert len(client.get("/v1/vpcs", headers=tenant.headers).json()["items"]) == 1


# --------------------------------------------------------------------------- errors


def test_delete_in_use_shows_blockers(cli: Cli, client: TestClient, tenant: Tenant) -> None:
    vpc = h.vpc(client, tenant)
    s = h.subnet(client, tenant, vpc["id"])
    r = h.router(client, tenant, vpc["id"])
    r_ = cli("vpcs", "delete", vpc["id"], token=tenant.token, code=1)
    assert r_.stdout == ""
    lines = r_.stderr.splitlines()
    assert lines[0].startswith("Resource in use: ")
    assert f"subnet {s['id']}" in r_.stderr
    assert f"router {r['id']}" in r_.stderr
    assert vpc["default_security_group_id"] not in r_.stderr  # service-made: never blocks
    assert client.get(f"/v1/vpcs/{vpc['id']}", headers=tenant.headers).status_code == 200


def test_validation_error_names_the_field(cli: Cli, client: TestClient, tenant: Tenant) -> None:
    vpc = h.vpc(client, tenant)
    r = cli(
        "subnets",
        "create",
        "--vpc-id",
        vpc["id"],
        "--cidr",
        "10.0.1.1/24",
        token=tenant.token,
        code=1,
    )
    assert r.stdout == ""
    # once, on one line, named by the flag the user typed (not the API's body.cidr)
    assert r.stderr.startswith("Invalid request: --cidr: ")
    assert r.stderr.count("\n") == 1 and "body." not in r.stderr
    assert r.stderr.count("host bits") == 1

    r = cli("vpcs", "create", "--name", "no-cidr", token=tenant.token, code=1)
    assert r.stderr.startswith("Invalid request: --cidr: ") and "body." not in r.stderr
    r = cli("vpcs", "update", vpc["id"], "--set", "cidr=10.9.0.0/16", token=tenant.token, code=1)
    assert r.stderr.startswith("Invalid request: --set cidr: ")
    r = cli(
        "subnets",
        "create",
        "--vpc-id",
        vpc["id"],
        "--cidr",
        "10.0.2.0/24",
        "--set",
        'allocation_pools=[{"start":"x","end":"10.0.2.9"}]',
        token=tenant.token,
        code=1,
    )
    assert "--set allocation_pools.0.start: " in r.stderr and "body." not in r.stderr
    # several errors: a title line, then one line per field, each once
    r = cli("security-group-rules", "create", token=tenant.token, code=1)
    lines = r.stderr.splitlines()
    assert lines[0] == "Invalid request:"
    assert "  --security-group-id: " in r.stderr and "  --direction: " in r.stderr
    assert len(lines) == len(set(lines))
    assert client.get("/v1/subnets", headers=tenant.headers).json()["items"] == []
    r = cli("vpcs", "show", "0" * 8, token=tenant.token, code=1)
    assert r.stderr.startswith("Not found: ")


def test_missing_token_and_unreachable_api(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    r = cli("vpcs", "list", code=1)
    assert r.stderr.startswith("Authentication required")
    assert "VPCD_TOKEN" in r.stderr

    monkeypatch.setattr(
        vpcctl_client, "make_client", lambda url, timeout: httpx.Client(base_url=url)
    )
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = CliRunner().invoke(
        vpcctl.app, ["--url", f"http://127.0.0.1:{port}", "--token", "x", "vpcs", "list"]
    )
    assert result.exit_code == 2, result.output
    assert f"cannot reach vpcd at http://127.0.0.1:{port}" in result.stderr
    assert result.stdout == ""


def test_configuration_from_environment(cli: Cli, tenant: Tenant) -> None:
    env = {"VPCD_URL": "http://from-env:1", "VPCD_TOKEN": tenant.token}
    result = cli.runner.invoke(vpcctl.app, ["-o", "json", "vpcs", "list"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []
    assert cli.urls == ["http://from-env:1"]
    assert cli.sent[-1].headers["authorization"] == f"Bearer {tenant.token}"
    # options win over the environment
    cli(
        "vpcs",
        "list",
        env={"VPCD_URL": "http://from-env:1", "VPCD_TOKEN": "wrong"},
        token=tenant.token,
    )
    assert cli.urls[-1] == URL


@pytest.mark.parametrize("suffix", ["/v1", "/v1/", ""])
def test_url_with_or_without_v1_is_accepted(cli: Cli, tenant: Tenant, suffix: str) -> None:
    env = {"VPCD_URL": "http://from-env:1" + suffix, "VPCD_TOKEN": tenant.token}
    result = cli.runner.invoke(vpcctl.app, ["-o", "json", "vpcs", "list"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []
    assert cli.urls == ["http://from-env:1"]
    assert cli.sent[-1].url.path == "/v1/vpcs"


# --------------------------------------------------------------------------- admin and actions


def test_tenant_create_token_and_quotas(cli: Cli, client: TestClient) -> None:
    tenant = cli.json(
        "tenants", "create", "--name", "acme", "--description", "d", token=ADMIN_TOKEN
    )
    assert (tenant["name"], tenant["description"]) == ("acme", "d")
    assert row_of(cli("tenants", "list", token=ADMIN_TOKEN).stdout, tenant["id"])[1] == "acme"

    minted = cli.json("tenants", "token", tenant["id"], token=ADMIN_TOKEN)
    assert minted["tenant_id"] == tenant["id"]
    token = minted["token"]
    vpc = cli.json("vpcs", "create", "--cidr", "10.0.0.0/16", token=token)
    assert vpc["tenant_id"] == tenant["id"]

    denied = cli("tenants", "list", token=token, code=1)
    assert denied.stderr.startswith("Forbidden: ")

    quotas = cli("tenants", "quotas", tenant["id"], "--set", "vpcs=1", token=ADMIN_TOKEN).stdout
    assert row_of(quotas, "vpcs") == ["vpcs", "1"]
    assert cli.json("tenants", "quotas", tenant["id"], token=ADMIN_TOKEN)["vpcs"] == 1
    over = cli("vpcs", "create", "--cidr", "10.1.0.0/16", token=token, code=1)
    assert over.stderr.startswith("Quota exceeded: ")
    assert (
        len(client.get("/v1/vpcs", headers={"Authorization": f"Bearer {token}"}).json()["items"])
        == 1
    )


def test_hosts_and_rules_typed_options(cli: Cli, client: TestClient, tenant: Tenant) -> None:
    host = cli.json(
        "hosts",
        "create",
        "--name",
        "h1",
        "--vtep-ip",
        "192.0.2.11",
        "--role",
        "compute",
        "--role",
        "network",
        token=ADMIN_TOKEN,
    )
    assert (host["name"], host["vtep_ip"], sorted(host["roles"])) == (
        "h1",
        "192.0.2.11",
        ["compute", "network"],
    )

    vpc = h.vpc(client, tenant)
    group = h.group(client, tenant, vpc["id"])
    rule = cli.json(
        "security-group-rules",
        "create",
        "--security-group-id",
        group["id"],
        "--direction",
        "ingress",
        "--protocol",
        "tcp",
        "--port-min",
        "22",
        "--port-max",
        "22",
        "--remote-cidr",
        "0.0.0.0/0",
        token=tenant.token,
    )
    assert (rule["direction"], rule["protocol"], rule["port_min"], rule["port_max"]) == (
        "ingress",
        "tcp",
        22,
        22,
    )
    bad = cli(
        "security-group-rules",
        "create",
        "--security-group-id",
        group["id"],
        "--direction",
        "ingress",
        "--protocol",
        "icmp",
        "--port-min",
        "1",
        token=tenant.token,
        code=1,
    )
    assert "--port-min: " in bad.stderr and "body." not in bad.stderr
    cli("security-group-rules", "create", "--direction", "sideways", token=tenant.token, code=2)


def test_router_interfaces_and_floating_ips(cli: Cli, client: TestClient, tenant: Tenant) -> None:
    t = tenant.token
    ext = cli.json(
        "external-networks",
        "create",
        "--name",
        "public",
        "--cidr",
        "203.0.113.0/24",
        "--gateway-ip",
        "203.0.113.1",
        "--set",
        'allocation_pools=[{"start":"203.0.113.10","end":"203.0.113.50"}]',
        token=ADMIN_TOKEN,
    )
    vpc = h.vpc(client, tenant)
    sub = h.subnet(client, tenant, vpc["id"])
    router = cli.json(
        "routers",
        "create",
        "--vpc-id",
        vpc["id"],
        "--name",
        "r",
        "--external-network-id",
        ext["id"],
        "--no-snat",
        token=t,
    )
    assert router["enable_snat"] is False and router["external_ip"]

    iface = cli.json("routers", "add-interface", router["id"], sub["id"], token=t)
    assert (iface["subnet_id"], iface["ip_address"]) == (sub["id"], sub["gateway_ip"])
    table = cli("routers", "interfaces", router["id"], token=t).stdout
    assert row_of(table, sub["id"]) == [sub["id"], sub["gateway_ip"], iface["port_id"]]

    port = cli.json(
        "ports",
        "create",
        "--subnet-id",
        sub["id"],
        "--name",
        "p",
        "--ip-address",
        "10.0.1.5",
        token=t,
    )
    assert port["ip_address"] == "10.0.1.5"
    assert port["security_group_ids"] == [vpc["default_security_group_id"]]

    fip = cli.json("floating-ips", "create", "--external-network-id", ext["id"], token=t)
    assert fip["port_id"] is None
    linked = cli.json("floating-ips", "associate", fip["id"], port["id"], token=t)
    assert (linked["port_id"], linked["router_id"]) == (port["id"], router["id"])
    assert (
        client.get(f"/v1/floating-ips/{fip['id']}", headers=tenant.headers).json()["port_id"]
        == port["id"]
    )
    by_port = cli.json("floating-ips", "list", "--filter", f"port_id={port['id']}", token=t)
    assert [f["id"] for f in by_port] == [fip["id"]]

    blocked = cli("routers", "remove-interface", router["id"], sub["id"], token=t, code=1)
    assert fip["id"] in blocked.stderr

    unlinked = cli.json("floating-ips", "disassociate", fip["id"], token=t)
    assert unlinked["port_id"] is None
    cli("routers", "remove-interface", router["id"], sub["id"], token=t)
    assert cli.json("routers", "interfaces", router["id"], token=t) == []


# --------------------------------------------------------------------------- list output


def test_tables_never_cut_ids_even_on_a_narrow_terminal(
    cli: Cli, client: TestClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    vpc = h.vpc(client, tenant, name="a-rather-long-vpc-name-that-takes-room")
    sub = h.subnet(client, tenant, vpc["id"])
    monkeypatch.setattr(output, "terminal_width", lambda: 60)  # a narrow terminal
    shown = {
        ("subnets", "list"): (vpc["id"], sub["id"]),
        ("subnets", "list", "-o", "wide"): (vpc["id"], sub["id"]),
        ("vpcs", "list"): (vpc["id"], vpc["default_security_group_id"]),
    }
    for args, idents in shown.items():
        out = cli(*args, token=tenant.token).stdout
        for ident in idents:
            assert ident in out, (args, out)  # whole, on one line
        assert "…" not in out


def test_wide_output_shows_every_field(cli: Cli, client: TestClient, tenant: Tenant) -> None:
    vpc = h.vpc(client, tenant, name="w")
    table = cli("vpcs", "list", token=tenant.token).stdout
    wide = cli("vpcs", "list", "-o", "wide", token=tenant.token).stdout
    header, wide_header = table.splitlines()[1], wide.splitlines()[1]
    assert "created_at" not in header and "revision" not in header
    for column in vpc:  # every field the API returns is a column
        assert column in wide_header, column
    assert wide_header.index("id") < wide_header.index("created_at")  # the usual ones first
    assert row_of(wide, vpc["id"])[0] == vpc["id"]
    # the global option works too
    assert "created_at" in cli("-o", "wide", "vpcs", "list", token=tenant.token).stdout


def test_quiet_prints_ids_only(cli: Cli, client: TestClient, tenant: Tenant) -> None:
    ids = [h.vpc(client, tenant, f"10.{i}.0.0/16")["id"] for i in range(3)]
    out = cli("vpcs", "list", "-q", token=tenant.token).stdout
    assert sorted(out.split()) == sorted(ids) and out.count("\n") == 3
    made = cli("vpcs", "create", "--cidr", "10.9.0.0/16", "-q", token=tenant.token).stdout
    assert made.strip() in {v["id"] for v in cli.json("vpcs", "list", token=tenant.token)}
    assert made == made.strip() + "\n"


def test_tenant_token_quiet_prints_the_token(cli: Cli, client: TestClient) -> None:
    tenant = cli("tenants", "create", "--name", "q", "-q", token=ADMIN_TOKEN).stdout.strip()
    token = cli("tenants", "token", tenant, "-q", token=ADMIN_TOKEN).stdout.strip()
    assert cli.json("vpcs", "list", token=token) == []


def test_create_wait_gives_up_on_pending_and_names_the_resource(
    cli: Cli, client: TestClient, tenant: Tenant
) -> None:
    vpc = h.vpc(client, tenant)
    sub = h.subnet(client, tenant, vpc["id"])
    r = cli(
        "ports",
        "create",
        "--subnet-id",
        sub["id"],
        "--wait",
        "--wait-timeout",
        "0.3",
        token=tenant.token,
        code=1,
    )
    (port,) = client.get("/v1/ports", headers=tenant.headers).json()["items"]
    assert r.stderr == f"error: /v1/ports/{port['id']} still pending after 0.3s\n"
    assert "--wait" not in cli.runner.invoke(vpcctl.app, ["vpcs", "create", "--help"]).stdout


class FakeApi:
    def __init__(self, *states: dict[str, Any]) -> None:
        self.states = list(states)

    def request(self, method: str, path: str) -> dict[str, Any]:
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]


def test_wait_returns_when_active_and_fails_on_error(capsys: pytest.CaptureFixture[str]) -> None:
    api: Any = FakeApi(
        {"status": "pending"}, {"status": "pending"}, {"status": "active", "id": "p"}
    )
    assert vpcctl_client.wait_realised(api, "/v1/ports/p", 5, interval=0)["id"] == "p"
    api = FakeApi({"status": "pending"}, {"status": "error", "status_detail": "eth0 is taken"})
    with pytest.raises(typer.Exit):
        vpcctl_client.wait_realised(api, "/v1/ports/p", 5, interval=0)
    assert capsys.readouterr().err == "error: /v1/ports/p failed: eth0 is taken\n"


def test_ip_address_help_does_not_promise_the_next_free_one(cli: Cli) -> None:
    text = cli.runner.invoke(
        vpcctl.app, ["ports", "create", "--help"], env={"COLUMNS": "200"}
    ).stdout
    assert "next free" not in text
    assert "random" in text


# --------------------------------------------------------------------------- the table itself


def test_resource_table_matches_the_api(app: FastAPI) -> None:
    """Paths, filters, typed create options and columns all exist in the app's OpenAPI."""
    spec = app.openapi()
    schemas = spec["components"]["schemas"]

    def schema(ref: dict[str, Any]) -> dict[str, Any]:
        return schemas[ref["$ref"].rsplit("/", 1)[1]]

    assert {r.name for r in resources.RESOURCES} == {
        p.split("/")[2] for p in spec["paths"] if p.startswith("/v1/") and p.count("/") == 2
    }
    for r in resources.RESOURCES:
        ops = spec["paths"][r.path]
        query = {p["name"] for p in ops["get"]["parameters"]} - {"limit", "page_token"}
        assert set(r.filters) == query, r.name
        body = schema(ops["post"]["requestBody"]["content"]["application/json"]["schema"])
        assert {o.field for o in r.create} <= set(body["properties"]), r.name
        assert set(body.get("required", [])) <= {o.field for o in r.create}, r.name
        out = schema(ops["post"]["responses"]["201"]["content"]["application/json"]["schema"])
        assert set(r.columns) <= set(out["properties"]), r.name


@pytest.mark.parametrize(
    "value, parsed",
    [
        ("10", 10),
        ("true", True),
        ("null", None),
        ('["a"]', ["a"]),
        ("web", "web"),
        ("10.0.0.0/16", "10.0.0.0/16"),
        ('"10"', "10"),
        ("", ""),
    ],
)
def test_set_values_parse_as_json_when_they_can(value: str, parsed: Any) -> None:
    assert options.parse_pairs([f"k={value}"], "--set") == {"k": parsed}


def test_if_match_accepts_revision_or_etag() -> None:
    assert options.etag("3") == {"If-Match": '"3"'}
    assert options.etag('"3"') == {"If-Match": '"3"'}
    assert options.etag("*") == {"If-Match": "*"}
    assert options.etag(None) == {}


def test_help_is_generated_per_resource(cli: Cli) -> None:
    text = cli.runner.invoke(
        vpcctl.app, ["subnets", "create", "--help"], env={"COLUMNS": "200"}
    ).stdout
    for flag in (
        "--vpc-id",
        "--cidr",
        "--gateway-ip",
        "--dns-nameserver",
        "--tag",
        "--set",
        "--idempotency-key",
        "allocation_pools",
    ):
        assert flag in text
    text = cli.runner.invoke(vpcctl.app, ["vpcs", "delete", "--help"]).stdout
    assert "VPC_ID" in text and "--if-match" in text
