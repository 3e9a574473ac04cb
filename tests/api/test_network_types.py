"""Network types through the API (issue 12): subnets' immutable network_type; flat subnets
on admin-made physical networks (shared or granted), VLAN only where every host carrying
it reports 8021q; routed subnets from address scopes, never overlapping across tenants;
kernel capabilities from heartbeats on GET /v1/hosts."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api import helpers as h
from tests.conftest import ADMIN, Tenant
from workers.controller import tasks

CAPS = ["vxlan", "macvlan", "br_netfilter", "ipset"]  # this machine's kernel: no 8021q


@pytest.fixture
def beat(monkeypatch: pytest.MonkeyPatch, db_url: str) -> Any:
    """Heartbeats through the controller's real task (its pushes are dropped)."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setattr(tasks.app, "send_task", lambda *a, **k: None)

    def send(host: str, vtep: str, caps: list[str] | None, physnets: list[str] | None) -> None:
        tasks.heartbeat(
            host, vtep, ["compute"], protocol_version=2, sections=["subnets", "ports"],
            capabilities=caps, physical_networks=physnets,
        )  # fmt: skip

    return send


def _hosts(c: TestClient) -> dict[str, dict[str, Any]]:
    return {x["name"]: x for x in c.get("/v1/hosts", headers=ADMIN).json()["items"]}


def physnet(c: TestClient, name: str = "provider", **kw: Any) -> dict[str, Any]:
    return h.create(c, "/v1/physical-networks", ADMIN, name=name, **kw)


def scope(c: TestClient, cidr: str = "100.64.0.0/16") -> dict[str, Any]:
    return h.create(c, "/v1/address-scopes", ADMIN, cidr=cidr, name="routed")


def flat(c: TestClient, t: Tenant, vpc_id: str, cidr: str, **kw: Any) -> Any:
    body = {"vpc_id": vpc_id, "cidr": cidr, "network_type": "flat", **kw}
    return c.post("/v1/subnets", json=body, headers=t.headers)


def test_heartbeat_capabilities_show_on_hosts(client: TestClient, beat: Any) -> None:
    beat("h1", "198.18.0.11", CAPS, ["provider"])
    beat("h2", "198.18.0.12", [*CAPS, "8021q"], [])
    hosts = _hosts(client)
    assert hosts["h1"]["capabilities"] == sorted(CAPS)
    assert hosts["h1"]["physical_networks"] == ["provider"]
    assert "8021q" in hosts["h2"]["capabilities"] and hosts["h2"]["physical_networks"] == []
    revision = hosts["h1"]["revision"]
    beat("h1", "198.18.0.11", None, None)  # an older agent: what was recorded stays
    assert _hosts(client)["h1"]["capabilities"] == sorted(CAPS)
    assert _hosts(client)["h1"]["revision"] == revision
    beat("h1", "198.18.0.11", ["vxlan"], ["provider"])  # a change bumps the revision
    assert _hosts(client)["h1"]["revision"] == revision + 1
    made = h.host(client, "h3", "198.18.0.13")  # registered by hand: nothing detected yet
    assert (made["capabilities"], made["physical_networks"]) == ([], [])


def test_physical_networks_are_admin_made_and_granted(
    client: TestClient, make_tenant: Any, beat: Any
) -> None:
    a, b = make_tenant("a"), make_tenant("b")
    beat("h1", "198.18.0.11", CAPS, ["provider"])
    net = physnet(client, tenant_ids=[a.id])
    assert (net["shared"], net["tenant_ids"]) == (False, [a.id])
    h.problem(client.post("/v1/physical-networks", json={"name": "provider"}, headers=ADMIN), 409)
    r = client.post(
        "/v1/physical-networks", json={"name": "x", "tenant_ids": ["nope"]}, headers=ADMIN
    )
    assert h.problem(r, 422)["errors"][0]["field"] == "body.tenant_ids.0"
    r = client.post("/v1/physical-networks", json={"name": "Bad Name"}, headers=ADMIN)
    h.problem(r, 422)
    h.problem(client.get("/v1/physical-networks", headers=a.headers), 403)

    va, vb = h.vpc(client, a, "192.168.0.0/16"), h.vpc(client, b, "192.168.0.0/16")
    s = flat(client, a, va["id"], "192.168.50.0/24", physical_network="provider")
    assert s.status_code == 201, s.text
    s = s.json()
    assert (s["network_type"], s["physical_network"], s["segmentation_id"]) == (
        "flat", "provider", None,
    )  # fmt: skip
    assert (s["enable_dhcp"], s["dhcp_host"], s["address_scope_id"]) == (False, None, None)
    # Not granted, and unknown: the same answer (no existence leak).
    for name in ("provider", "missing"):
        r = flat(client, b, vb["id"], "192.168.60.0/24", physical_network=name)
        body = h.problem(r, 422)
        assert body["errors"][0]["field"] == "body.physical_network", body
        assert "is available to this tenant" in body["detail"]
    # Shared: every tenant may; but one segment's addresses never overlap across tenants.
    r = client.patch(f"/v1/physical-networks/{net['id']}", json={"shared": True}, headers=ADMIN)
    assert r.json()["revision"] == 2
    body = h.problem(
        flat(client, b, vb["id"], "192.168.50.128/25", physical_network="provider"), 409
    )
    assert "another tenant's subnet" in body["detail"] and s["id"] not in body["detail"]
    assert (
        flat(client, b, vb["id"], "192.168.51.0/24", physical_network="provider").status_code == 201
    )
    r = client.patch(f"/v1/physical-networks/{net['id']}", json={"name": "x"}, headers=ADMIN)
    assert h.problem(r, 422)["errors"][0]["field"] == "body.name"
    r = client.delete(f"/v1/physical-networks/{net['id']}", headers=ADMIN)
    assert {"type": "subnet", "id": s["id"]} in h.problem(r, 409)["blocking_resources"]


def test_flat_subnet_rules(client: TestClient, tenant: Tenant, beat: Any) -> None:
    beat("h1", "198.18.0.11", CAPS, ["provider"])
    beat("h2", "198.18.0.12", CAPS, [])
    physnet(client, shared=True)
    v = h.vpc(client, tenant, "192.168.0.0/16")
    r = flat(client, tenant, v["id"], "192.168.50.0/24")
    assert h.problem(r, 422)["errors"][0]["field"] == "body.physical_network"
    r = flat(
        client, tenant, v["id"], "192.168.50.0/24", physical_network="provider", enable_dhcp=True
    )
    assert h.problem(r, 422)["errors"][0]["field"] == "body.enable_dhcp"
    s = flat(client, tenant, v["id"], "192.168.50.0/24", physical_network="provider").json()
    for change in (
        {"network_type": "vxlan"},
        {"physical_network": "other"},
        {"segmentation_id": 5},
    ):
        r = client.patch(f"/v1/subnets/{s['id']}", json=change, headers=tenant.headers)
        assert h.problem(r, 422)["errors"][0]["field"] == f"body.{next(iter(change))}"
    r = client.patch(f"/v1/subnets/{s['id']}", json={"enable_dhcp": True}, headers=tenant.headers)
    h.problem(r, 422)
    # Ports: no security groups (none could be enforced), only on hosts mapping the network.
    p = h.port(client, tenant, s["id"], host="h1", netns="bm")
    assert p["security_group_ids"] == []
    r = client.post(
        "/v1/ports",
        json={"subnet_id": s["id"], "security_group_ids": [v["default_security_group_id"]]},
        headers=tenant.headers,
    )
    assert "never crosses the host's netfilter" in h.problem(r, 409)["detail"]
    r = client.patch(
        f"/v1/ports/{p['id']}",
        json={"security_group_ids": [v["default_security_group_id"]]},
        headers=tenant.headers,
    )
    h.problem(r, 409)
    r = client.post("/v1/ports", json={"subnet_id": s["id"], "host": "h2"}, headers=tenant.headers)
    assert "does not map physical network 'provider'" in h.problem(r, 409)["detail"]
    r = client.patch(f"/v1/ports/{p['id']}", json={"host": "h2"}, headers=tenant.headers)
    h.problem(r, 409)
    rt = h.router(client, tenant, v["id"])
    r = client.post(
        f"/v1/routers/{rt['id']}/interfaces", json={"subnet_id": s["id"]}, headers=tenant.headers
    )
    assert "physical network" in h.problem(r, 409)["detail"]


def test_vlan_needs_8021q_on_every_host_carrying_it(
    client: TestClient, tenant: Tenant, beat: Any
) -> None:
    physnet(client, shared=True)
    v = h.vpc(client, tenant, "192.168.0.0/16")
    r = flat(
        client, tenant, v["id"], "192.168.50.0/24", physical_network="provider", segmentation_id=100
    )
    assert "no host maps physical network 'provider'" in h.problem(r, 409)["detail"]
    beat("h1", "198.18.0.11", [*CAPS, "8021q"], ["provider"])
    beat("h2", "198.18.0.12", CAPS, ["provider"])
    beat("h3", "198.18.0.13", CAPS, [])  # does not carry the network: not asked
    r = flat(
        client, tenant, v["id"], "192.168.50.0/24", physical_network="provider", segmentation_id=100
    )
    body = h.problem(r, 409)
    assert "hosts h2 carry physical network 'provider'" in body["detail"], body
    assert "lack 802.1Q (8021q)" in body["detail"]
    assert body["errors"][0]["field"] == "body.segmentation_id"
    for bad in (0, 4095):
        r = flat(
            client,
            tenant,
            v["id"],
            "192.168.50.0/24",
            physical_network="provider",
            segmentation_id=bad,
        )
        assert h.problem(r, 422)["errors"][0]["field"] == "body.segmentation_id"
    beat("h2", "198.18.0.12", [*CAPS, "8021q"], ["provider"])
    s = flat(
        client, tenant, v["id"], "192.168.50.0/24", physical_network="provider", segmentation_id=100
    )
    assert s.status_code == 201 and s.json()["segmentation_id"] == 100
    # Another VLAN is another segment: the same CIDR is no overlap there.
    other = flat(
        client, tenant, v["id"], "192.168.51.0/24", physical_network="provider", segmentation_id=200
    )
    assert other.status_code == 201, other.text


def test_routed_subnets_never_overlap_across_tenants(client: TestClient, make_tenant: Any) -> None:
    a, b = make_tenant("a"), make_tenant("b")
    va, vb = h.vpc(client, a, "100.64.0.0/10"), h.vpc(client, b, "100.64.0.0/10")
    r = client.post(
        "/v1/subnets", json={"vpc_id": va["id"], "cidr": "100.64.1.0/24", "network_type": "routed"},
        headers=a.headers,
    )  # fmt: skip
    assert "not inside any routed address scope" in h.problem(r, 422)["detail"]
    sc = scope(client)
    h.problem(
        client.post("/v1/address-scopes", json={"cidr": "100.64.128.0/17"}, headers=ADMIN), 409
    )
    h.problem(
        client.post("/v1/address-scopes", json={"cidr": "100.0.0.0/8"}, headers=a.headers), 403
    )
    s = h.subnet(client, a, va["id"], "100.64.1.0/24", network_type="routed")
    assert (s["network_type"], s["address_scope_id"], s["enable_dhcp"]) == (
        "routed",
        sc["id"],
        False,
    )
    body = h.problem(
        client.post(
            "/v1/subnets",
            json={"vpc_id": vb["id"], "cidr": "100.64.1.0/25", "network_type": "routed"},
            headers=b.headers,
        ),
        409,
    )
    assert "overlaps another tenant's subnet" in body["detail"] and s["id"] not in body["detail"]
    assert "without encapsulation" in body["detail"]
    # One's own overlap (in another VPC) is named; vxlan subnets may reuse the addresses.
    va2 = h.vpc(client, a, "100.64.0.0/16")
    body = {"vpc_id": va2["id"], "cidr": "100.64.1.0/24", "network_type": "routed"}
    r = client.post("/v1/subnets", json=body, headers=a.headers)
    assert s["id"] in h.problem(r, 409)["detail"]
    assert h.subnet(client, b, vb["id"], "100.64.1.0/24")["network_type"] == "vxlan"
    h.subnet(client, b, vb["id"], "100.64.2.0/24", network_type="routed")
    # Security groups apply on routed ports: the VPC's default group as anywhere.
    p = h.port(client, a, s["id"])
    assert p["security_group_ids"] == [va["default_security_group_id"]]
    for field, value in (("physical_network", "provider"), ("segmentation_id", 10)):
        r = client.post(
            "/v1/subnets",
            json={
                "vpc_id": va["id"],
                "cidr": "100.64.9.0/24",
                "network_type": "routed",
                field: value,
            },
            headers=a.headers,
        )
        assert h.problem(r, 422)["errors"][0]["field"] == f"body.{field}"
    r = client.delete(f"/v1/address-scopes/{sc['id']}", headers=ADMIN)
    assert {"type": "subnet", "id": s["id"]} in h.problem(r, 409)["blocking_resources"]
    rt = h.router(client, a, va["id"])
    r = client.post(
        f"/v1/routers/{rt['id']}/interfaces", json={"subnet_id": s["id"]}, headers=a.headers
    )
    assert "169.254.1.1" in h.problem(r, 409)["detail"]


def test_vxlan_stays_the_default(client: TestClient, tenant: Tenant) -> None:
    v = h.vpc(client, tenant)
    s = h.subnet(client, tenant, v["id"])
    assert (s["network_type"], s["physical_network"], s["segmentation_id"]) == ("vxlan", None, None)
    assert s["enable_dhcp"] is True
    r = client.post(
        "/v1/subnets", json={"vpc_id": v["id"], "cidr": "10.0.2.0/24", "network_type": "geneve"},
        headers=tenant.headers,
    )  # fmt: skip
    assert h.problem(r, 422)["errors"][0]["field"] == "body.network_type"
    r = client.patch(
        f"/v1/subnets/{s['id']}", json={"network_type": "vxlan"}, headers=tenant.headers
    )
    assert r.status_code == 200  # the current value may be sent back (declarative clients)


# -- the controller: flat and routed subnets travel only in the typed_networks section -------


@pytest.fixture
def pushed(monkeypatch: pytest.MonkeyPatch, db_url: str) -> list[tuple[str, Any]]:
    """Documents the controller pushes, captured (Celery is not involved)."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    calls: list[tuple[str, Any]] = []
    monkeypatch.setattr(
        tasks.app, "send_task", lambda name, args=None, **_: calls.append((name, args))
    )
    return calls


def _last_doc(pushed: list[tuple[str, Any]], host: str) -> dict[str, Any]:
    from workers.bus import APPLY

    docs = [a[0] for n, a in pushed if n == APPLY and a[0]["host"] == host]
    return docs[-1]  # type: ignore[no-any-return]


def test_routed_ports_travel_in_their_own_section(
    client: TestClient, tenant: Tenant, pushed: list[tuple[str, Any]]
) -> None:
    from workers.agent.service import SUPPORTED_SECTIONS

    typed = list(SUPPORTED_SECTIONS)
    assert "typed_networks" in typed  # today's agent; `old` is one from before issue 12
    older = [x for x in typed if x != "typed_networks"]
    tasks.heartbeat("h1", "198.18.0.11", ["compute"], protocol_version=1, sections=typed)
    tasks.heartbeat("h2", "198.18.0.12", ["compute"], protocol_version=1, sections=typed)
    tasks.heartbeat("old", "198.18.0.13", ["compute"], protocol_version=1, sections=older)
    scope(client)
    v = h.vpc(client, tenant, "100.64.0.0/16")
    s = h.subnet(client, tenant, v["id"], "100.64.1.0/24", network_type="routed")
    p1 = h.port(client, tenant, s["id"], host="h1", netns="a")
    p2 = h.port(client, tenant, s["id"], host="h2", netns="b")
    p3 = h.port(client, tenant, s["id"], host="old", netns="c")
    for host in ("h1", "h2", "old"):
        tasks.sync_host(host, full=True)
    doc = _last_doc(pushed, "h1")
    assert (doc["subnets"], doc["ports"]) == ([], [])  # never realised as VXLAN
    (net,) = doc["typed_networks"]
    assert (net["network_type"], net["mtu"], net["id"]) == ("routed", 1500, s["id"])
    assert [p["id"] for p in net["ports"]] == [p1["id"]]
    assert net["ports"][0]["security_group_ids"] == [v["default_security_group_id"]]
    assert {(r["ip"], r["vtep_ip"]) for r in net["remote_ports"]} == {
        (p2["ip_address"], "198.18.0.12"),
        (p3["ip_address"], "198.18.0.13"),
    }
    old = _last_doc(pushed, "old")
    assert "typed_networks" not in old and (old["subnets"], old["ports"]) == ([], [])
    got = client.get(f"/v1/ports/{p3['id']}", headers=tenant.headers).json()
    assert got["status"] == "error"
    assert "host old does not support section 'typed_networks'" in got["status_detail"]
    assert client.get(f"/v1/ports/{p1['id']}", headers=tenant.headers).json()["status"] == "pending"
    # Deleting a port takes its /32 off every other host carrying the subnet.
    pushed.clear()
    assert client.delete(f"/v1/ports/{p2['id']}", headers=tenant.headers).status_code == 204
    tasks.sync_host("h1", full=True)
    (net,) = _last_doc(pushed, "h1")["typed_networks"]
    assert [r["ip"] for r in net["remote_ports"]] == [p3["ip_address"]]
