"""The topology page (/ui) in headless Chromium against a real uvicorn.

A small topology is built through the API (two subnets, ports on two hosts, a router with
legs on both subnets, a floating IP, security groups), one port is made `error` through
the controller's report path, and the page is opened with the token and the VPC in the
URL fragment. The drawn DOM is checked element by element (kind, id, status) against the
API, user strings are checked to arrive as text only, a rejected token must bring the token
form back, and a screenshot is saved under the artifacts folder (printed at the end).

Chromium is the Debian package. In CI (CI set) a missing browser fails the test; elsewhere
it skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli import procs
from tests.conftest import ADMIN, ADMIN_TOKEN, wipe

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("VPCD_TEST_ARTIFACTS", Path(__file__).with_name("artifacts")))
BROWSER_TIMEOUT = 90.0
HOSTILE = "<img src=x onerror=\"document.title='pwned'\">&amp;"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    message = "Chromium is not installed (apt-get install chromium)"
    if in_ci():
        pytest.fail(message + "; CI must run the page test")
    pytest.skip(message)


# -- the server -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    wipe(db_url)
    tmp = tmp_path_factory.mktemp("ui-uvicorn")
    log = tmp / "uvicorn.log"
    port = procs.free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR",)}
    env.update(
        DATABASE_URL=db_url,
        VPCD_ADMIN_TOKEN=ADMIN_TOKEN,
        REDIS_URL="",  # no controller here: poke nobody on the machine's Redis
        VPCD_BUS_DIR="",
    )
    proc = procs.spawn(procs.uvicorn_argv("api.app:create_app", port), env, log, cwd=ROOT)
    try:
        base = f"http://127.0.0.1:{port}"
        procs.wait_http_ok(f"{base}/readyz", proc, log)
        yield base
    finally:
        procs.stop_group(proc)
        wipe(db_url)


# -- the topology ------------------------------------------------------------------------


@dataclass
class Topology:
    token: str
    vpc: dict[str, Any]
    subnets: list[dict[str, Any]]
    ports: list[dict[str, Any]]
    router: dict[str, Any]
    fip: dict[str, Any]
    groups: dict[str, dict[str, Any]]
    failed_port: str
    failure: str
    extra: dict[str, Any] = field(default_factory=dict)


def _post(c: httpx.Client, path: str, who: dict[str, str], **body: Any) -> dict[str, Any]:
    r = c.post(path, json=body, headers=who)
    assert r.status_code == 201, r.text
    return r.json()


def _heartbeat(db_url: str, monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    """Host `host`'s agent says it is alive (the path a real agent's heartbeat takes)."""
    from workers.controller import tasks
    from workers.protocol import SECTIONS_L2

    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setattr(tasks.app, "send_task", lambda *a, **kw: None)  # no bus in this test
    monkeypatch.setattr(tasks, "push", lambda *a, **kw: None)  # documents go nowhere here
    tasks.heartbeat(host, "198.18.0.12", ["compute", "network"], sections=list(SECTIONS_L2))


def _report(db_url: str, monkeypatch: pytest.MonkeyPatch, host: str, fail: str = "") -> str:
    """Host `host` reports its document realised, but for port `fail` (the agent's path)."""
    from workers.controller import compile as compiler
    from workers.controller import tasks
    from workers.protocol import Report, ResourceResult

    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setattr(tasks.app, "send_task", lambda *a, **kw: None)  # no bus in this test
    with tasks.transaction() as session:
        compiled = compiler.compile_host(session, host)
    assert compiled is not None
    state = compiled.state
    assert state is not None and (not fail or fail in {p.id for p in state.ports})
    detail = f"EPERM: veth for port {fail[:8]} <b>not</b> created"
    results = [
        ResourceResult(kind="subnet", id=s.id, revision=s.revision, ok=True) for s in state.subnets
    ]
    results += [
        ResourceResult(
            kind="port",
            id=p.id,
            revision=p.revision,
            ok=p.id != fail,
            detail=detail if p.id == fail else None,
        )
        for p in state.ports
    ]
    tasks.report(
        Report(host=host, revision=state.revision, ok=not fail, results=results).model_dump(
            mode="json"
        )
    )
    return detail


@pytest.fixture
def topology(server: str, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Topology]:
    with httpx.Client(base_url=server, timeout=30) as c:
        tenant = _post(c, "/v1/tenants", ADMIN, name=f"ui-{uuid.uuid4().hex[:8]}")
        token = _post(c, f"/v1/tenants/{tenant['id']}/tokens", ADMIN)["token"]
        who = {"Authorization": f"Bearer {token}"}
        _post(c, "/v1/hosts", ADMIN, name="h1", vtep_ip="198.18.0.11", roles=["compute"])
        _post(c, "/v1/hosts", ADMIN, name="h2", vtep_ip="198.18.0.12", roles=["compute", "network"])
        _heartbeat(db_url, monkeypatch, "h2")  # routers go only to network hosts that are up
        ext = _post(
            c,
            "/v1/external-networks",
            ADMIN,
            name="internet",
            cidr="203.0.113.0/24",
            gateway_ip="203.0.113.1",
        )
        vpc = _post(c, "/v1/vpcs", who, name="prod", cidr="10.0.0.0/16")
        _post(c, "/v1/vpcs", who, name=HOSTILE, cidr="10.9.0.0/16")
        front = _post(
            c,
            "/v1/subnets",
            who,
            vpc_id=vpc["id"],
            name="frontend",
            cidr="10.0.1.0/24",
            tags=[HOSTILE],
        )
        back = _post(c, "/v1/subnets", who, vpc_id=vpc["id"], name="backend", cidr="10.0.2.0/24")
        web = _post(c, "/v1/security-groups", who, vpc_id=vpc["id"], name="web")
        _post(c, "/v1/security-groups", who, vpc_id=vpc["id"], name="unused")
        rtr = _post(
            c, "/v1/routers", who, vpc_id=vpc["id"], name="edge", external_network_id=ext["id"]
        )
        assert rtr["host"] == "h2"  # the only network host
        for s in (front, back):
            _post(c, f"/v1/routers/{rtr['id']}/interfaces", who, subnet_id=s["id"])
        ports = [
            _post(
                c,
                "/v1/ports",
                who,
                subnet_id=front["id"],
                name="web-1",
                host="h1",
                netns="web1",
                security_group_ids=[web["id"]],
            ),
            _post(
                c,
                "/v1/ports",
                who,
                subnet_id=front["id"],
                name="web-2",
                host="h2",
                netns="web2",
                security_group_ids=[web["id"]],
            ),
            _post(c, "/v1/ports", who, subnet_id=back["id"], name="db-1", host="h1", netns="db1"),
            _post(c, "/v1/ports", who, subnet_id=back["id"], name="db-2", host="h2", netns="db2"),
            _post(c, "/v1/ports", who, subnet_id=back["id"], name=HOSTILE),
        ]
        fip = _post(
            c, "/v1/floating-ips", who, external_network_id=ext["id"], port_id=ports[0]["id"]
        )
        _report(db_url, monkeypatch, "h2")
        failure = _report(db_url, monkeypatch, "h1", fail=ports[2]["id"])
        groups = {g["name"]: g for g in _list(c, who, "/v1/security-groups")}
        yield Topology(
            token=token,
            vpc=vpc,
            subnets=[front, back],
            ports=ports,
            router=rtr,
            fip=fip,
            groups=groups,
            failed_port=ports[2]["id"],
            failure=failure,
        )
    wipe(db_url)


def _list(c: httpx.Client, who: dict[str, str], path: str, **params: str) -> list[dict[str, Any]]:
    r = c.get(path, params=params, headers=who)
    assert r.status_code == 200, r.text
    return r.json()["items"]


# -- the browser -------------------------------------------------------------------------


def run_chromium(url: str, tmp: Path, *args: str, budget_ms: int = 12000) -> str:
    """Load `url` in headless Chromium for `budget_ms` of virtual time; return its stdout.

    Chromium runs in a process group of its own, which is ended whatever happens.
    """
    exe = chromium_path()
    profile = tmp / f"profile-{uuid.uuid4().hex[:8]}"
    profile.mkdir(parents=True)
    argv = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--enable-logging=stderr",  # the page's console, to catch script errors
        "--log-level=0",
        f"--user-data-dir={profile}",
        f"--virtual-time-budget={budget_ms}",
        "--window-size=1400,900",
        *args,
        url,
    ]
    env = {**os.environ, "HOME": str(tmp), "XDG_CONFIG_HOME": str(tmp), "XDG_CACHE_HOME": str(tmp)}
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=BROWSER_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"chromium did not finish in {BROWSER_TIMEOUT}s: {url}")
    finally:
        procs.stop_group(proc, grace=5)
    log = err.decode(errors="replace")
    assert proc.returncode == 0, log[-3000:]
    console = [line for line in log.splitlines() if "CONSOLE" in line]
    bad = ("Uncaught", "Refused to", "Content Security Policy")  # script errors, CSP blocks
    assert not [line for line in console if any(b in line for b in bad)], console
    return out.decode()


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""


class DomIndex(HTMLParser):
    """Elements with a data-kind or an id (and their text), the body, every tag seen."""

    VOID = frozenset({"meta", "link", "input", "br", "img", "hr", "circle", "rect", "path"})

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.body: dict[str, str] = {}
        self.tags: set[str] = set()
        self.title = ""
        self._open: list[tuple[str, Element | None]] = []
        self._in_title = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.add(tag)
        if tag == "body":
            self.body = a
        if tag == "title" and not self._open_in_svg():
            self._in_title = True
        if tag in self.VOID:
            return
        el = Element(tag, a) if "data-kind" in a or "id" in a else None
        if el is not None:
            self.elements.append(el)
        self._open.append((tag, el))

    def _open_in_svg(self) -> bool:
        return any(t == "svg" for t, _ in self._open)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i][0] == tag:
                del self._open[i:]
                return

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        for _, el in self._open:
            if el is not None:
                el.text += data

    def find(self, kind: str, ident: str) -> Element:
        found = [
            e
            for e in self.elements
            if e.attrs.get("data-kind") == kind and e.attrs.get("data-id") == ident and e.tag == "g"
        ]
        assert len(found) == 1, f"{kind} {ident}: {len(found)} drawn elements"
        return found[0]

    def by_id(self, ident: str) -> Element:
        (found,) = [e for e in self.elements if e.attrs.get("id") == ident]
        return found

    def kinds(self, kind: str) -> list[Element]:
        return [e for e in self.elements if e.attrs.get("data-kind") == kind and e.tag == "g"]


def page_url(server: str, token: str, vpc_id: str, **extra: str) -> str:
    fragment = "&".join(f"{k}={v}" for k, v in {"token": token, "vpc": vpc_id, **extra}.items())
    return f"{server}/ui/#{fragment}"


# -- tests -------------------------------------------------------------------------------


def test_ui_is_served_and_not_in_the_schema(server: str) -> None:
    with httpx.Client(base_url=server, timeout=10) as c:
        r = c.get("/ui", follow_redirects=False)
        assert r.status_code in (301, 302, 307, 308) and r.headers["location"].endswith("ui/")
        r = c.get("/ui/")
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        for asset in ("topology.js", "topology.css"):
            assert c.get(f"/ui/{asset}").status_code == 200
        paths = c.get("/openapi.json").json()["paths"]
        assert not [p for p in paths if p.startswith("/ui")]
    js = (ROOT / "api" / "ui" / "topology.js").read_text()
    assert "innerHTML" not in js and "outerHTML" not in js and "insertAdjacentHTML" not in js


def test_topology_page_draws_the_vpc(
    server: str, topology: Topology, tmp_path: Path, db_url: str
) -> None:
    t = topology
    who = {"Authorization": f"Bearer {t.token}"}
    with httpx.Client(base_url=server, timeout=30) as c:
        # the truth, as the API tells it now
        subnets = _list(c, who, "/v1/subnets", vpc_id=t.vpc["id"])
        ports = [p for s in subnets for p in _list(c, who, "/v1/ports", subnet_id=s["id"])]
        routers = _list(c, who, "/v1/routers", vpc_id=t.vpc["id"])
        groups = _list(c, who, "/v1/security-groups", vpc_id=t.vpc["id"])
        fips = _list(c, who, "/v1/floating-ips")
        ifaces = c.get(f"/v1/routers/{t.router['id']}/interfaces", headers=who).json()

    # pages of two items: every list needs its next_page_token followed; one port pinned
    selected = f"port:{t.failed_port}"
    url = page_url(server, t.token, t.vpc["id"], page_size="2", select=selected)
    dom = DomIndex(run_chromium(url, tmp_path, "--dump-dom"))
    assert dom.body.get("data-state") == "ready", dom.body
    assert int(dom.body["data-renders"]) >= 2  # it refreshes by itself

    statuses: set[str] = set()
    for s in subnets:
        el = dom.find("subnet", s["id"])
        assert el.attrs["data-status"] == s["status"]
        assert s["cidr"] in el.text
        statuses.add(s["status"])
    user_ports = [p for p in ports if p["device_owner"] == ""]
    legs = {p["id"]: p for p in ports if p["device_owner"] == "router_interface"}
    assert len(user_ports) == 5 and len(legs) == 2
    for p in user_ports:
        el = dom.find("port", p["id"])
        assert el.attrs["data-status"] == p["status"], p
        assert p["ip_address"] in el.text
        statuses.add(p["status"])
    for leg_port in legs.values():  # a router leg is drawn as a leg, not as a port
        assert not [e for e in dom.kinds("port") if e.attrs["data-id"] == leg_port["id"]]
    assert len(dom.kinds("port")) == len(user_ports)  # nor is a DHCP/DNS service port
    (r,) = routers
    assert dom.find("router", r["id"]).attrs["data-status"] == r["status"]
    assert len(ifaces) == 2
    subnet_names = {s["id"]: s["name"] for s in subnets}
    for iface in ifaces:
        el = dom.find("leg", f"{r['id']}:{iface['subnet_id']}")
        assert el.attrs["data-status"] == legs[iface["port_id"]]["status"]
        assert iface["ip_address"] in el.text
        assert f"edge → {subnet_names[iface['subnet_id']]}" in el.text
    assert len(dom.kinds("leg")) == 2
    (fip,) = [f for f in fips if f["id"] == t.fip["id"]]
    el = dom.find("floating_ip", fip["id"])
    assert el.attrs["data-status"] == fip["status"] and el.attrs["data-port"] == t.ports[0]["id"]
    assert fip["address"] in el.text
    members = {g["id"]: sum(g["id"] in p["security_group_ids"] for p in user_ports) for g in groups}
    assert members[t.groups["web"]["id"]] == 2 and members[t.groups["unused"]["id"]] == 0
    for g in groups:
        el = dom.find("security_group", g["id"])
        assert el.attrs["data-status"] == g["status"]
        assert el.attrs["data-members"] == str(members[g["id"]])
    assert len(dom.kinds("security_group")) == 3  # default, web, unused

    # ports grouped by host inside each subnet
    hosts = {
        (e.attrs["data-subnet"], e.attrs["data-host"])
        for e in dom.elements
        if e.attrs.get("data-kind") == "host_group"
    }
    front, back = t.subnets
    assert hosts == {
        (front["id"], "h1"),
        (front["id"], "h2"),
        (back["id"], "h1"),
        (back["id"], "h2"),
        (back["id"], ""),
    }

    # the three colours are there, and the error's detail shows (tooltip and panel)
    assert {"active", "pending", "error"} <= statuses
    failed = dom.find("port", t.failed_port)
    assert failed.attrs["data-status"] == "error" and t.failure in failed.text
    problems = [e for e in dom.elements if e.tag == "li" and e.attrs.get("data-kind") == "port"]
    assert [e.attrs["data-id"] for e in problems] == [t.failed_port]
    assert t.failure in problems[0].text
    details = dom.by_id("details").text
    assert t.failure in details and t.failed_port in details and "db-1" in details

    # user strings are text, never markup
    assert "img" not in dom.tags and "b" not in dom.tags
    assert dom.title == "vpcd topology"
    assert HOSTILE in dom.find("port", t.ports[4]["id"]).text
    assert HOSTILE in dom.find("subnet", front["id"]).text  # its tag, in the tooltip
    assert f"{HOSTILE} — 10.9.0.0/16" in dom.by_id("vpc-select").text  # another VPC's name

    # a screenshot, for people
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "topology.png"
    shot.unlink(missing_ok=True)
    run_chromium(url, tmp_path, f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"\ntopology screenshot: {shot}")


def test_a_rejected_token_asks_for_another(server: str, tmp_path: Path) -> None:
    url = page_url(server, "not-a-token", "00000000-0000-0000-0000-000000000000")
    dom = DomIndex(run_chromium(url, tmp_path, "--dump-dom", budget_ms=5000))
    assert dom.body.get("data-state") == "need-token", dom.body
    assert "401" in dom.by_id("message").text
    assert "hidden" not in dom.by_id("token-form").attrs
    assert "hidden" in dom.by_id("vpc-bar").attrs
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    run_chromium(url, tmp_path, f"--screenshot={ARTIFACTS / 'token-rejected.png'}", budget_ms=5000)
