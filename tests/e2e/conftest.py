"""e2e fixtures: a real sandbox (API, controller, Celery agents, kernel), torn down always.

Runs on Postgres + Redis when VPCD_TEST_DATABASE_URL and REDIS_URL name them (CI), else on
the embedded default (SQLite + filesystem bus). Every namespace and process it made is
gone afterwards, also when a test fails; the fixture checks that.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import httpx
import pytest

if os.geteuid() != 0 or shutil.which("ip") is None:
    pytest.skip("e2e tests need root and iproute2", allow_module_level=True)

from cli import sandbox as sbx
from models.db import scratch_database
from tests.logs import keep_logs

ECHO = str(Path(__file__).with_name("echo.py"))
RESYNC = 3.0
LOGS = Path(os.environ.get("VPCD_E2E_LOGS", "/tmp/vpcd-e2e-logs"))
REPO = Path(__file__).resolve().parents[2]


def git_status() -> set[str]:
    """The repository's changed and untracked (not ignored) files, as `git status` lists them."""
    out = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.splitlines())


class Box:
    """A running sandbox plus the calls tests make against it."""

    def __init__(self, sb: sbx.Sandbox) -> None:
        self.sb = sb
        self.name = sb.name
        self.http = httpx.Client(base_url=sb.endpoint, timeout=10)
        self.admin = {"Authorization": f"Bearer {sb.admin_token}"}
        self.servers: list[subprocess.Popen[str]] = []

    def host(self, short: str) -> str:
        return self.sb.host(short)["name"]

    def tenant(self) -> dict[str, str]:
        r = self.http.post(
            "/v1/tenants", json={"name": f"t-{uuid.uuid4().hex[:8]}"}, headers=self.admin
        )
        assert r.status_code == 201, r.text
        tid = r.json()["id"]
        r = self.http.post(f"/v1/tenants/{tid}/tokens", headers=self.admin)
        self.http.patch(f"/v1/tenants/{tid}/quotas", json={"ports": 2000}, headers=self.admin)
        return {"Authorization": f"Bearer {r.json()['token']}"}

    def post(self, path: str, who: dict[str, str], **body: Any) -> dict[str, Any]:
        r = self.http.post(path, json=body, headers=who)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def network(
        self,
        who: dict[str, str],
        cidr: str = "10.0.0.0/16",
        subnets: tuple[str, ...] = ("10.0.1.0/24",),
    ) -> list[dict[str, Any]]:
        vpc = self.post("/v1/vpcs", who, cidr=cidr)
        return [self.post("/v1/subnets", who, vpc_id=vpc["id"], cidr=c) for c in subnets]

    def port(
        self, who: dict[str, str], subnet: dict[str, Any], host: str, netns: str, **kw: Any
    ) -> dict[str, Any]:
        return self.post(
            "/v1/ports", who, subnet_id=subnet["id"], host=self.host(host), netns=netns, **kw
        )

    def connected_pair(
        self, first: tuple[str, str], second: tuple[str, str]
    ) -> tuple[dict[str, str], dict[str, Any], dict[str, Any], dict[str, Any]]:
        """A tenant, one subnet and two ports (host, netns) that already ping each other."""
        t = self.tenant()
        (s,) = self.network(t)
        a = self.port(t, s, *first)
        b = self.port(t, s, *second)
        self.wait_status(t, a)
        self.wait_status(t, b)
        self.wait_ping(self.workload(*first), b["ip_address"])
        return t, s, a, b

    def wait_status(
        self, who: dict[str, str], port: dict[str, Any], want: str = "active", timeout: float = 30
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            r = self.http.get(f"/v1/ports/{port['id']}", headers=who)
            if r.status_code == 200:
                body = r.json()
                if body["status"] == want:
                    return body
            time.sleep(0.1)
        raise AssertionError(f"port {port['id']} not {want} in {timeout}s: {body}")

    def workload(self, host: str, netns: str) -> str:
        return f"{self.host(host)}-{netns}"

    def run(self, ns: str, *cmd: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=timeout
        )

    def ping(self, ns: str, address: str, count: int = 1, wait: float = 1) -> bool:
        r = self.run(ns, "ping", "-n", "-c", str(count), "-W", str(wait), address)
        return r.returncode == 0

    def wait_ping(self, ns: str, address: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ping(ns, address, wait=0.5):
                return
        raise AssertionError(f"{ns} cannot reach {address} within {timeout}s")

    def serve(self, ns: str, proto: str, port: int, name: str) -> None:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, ECHO, "serve", proto, str(port), name],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.servers.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def ask(self, ns: str, proto: str, address: str, port: int) -> str | None:
        r = self.run(ns, sys.executable, ECHO, "ask", proto, address, str(port))
        return r.stdout.strip() if r.returncode == 0 else None

    def links(self, host: str) -> list[str]:
        out = subprocess.run(
            ["ip", "-n", self.sb.host(host)["netns"], "-o", "link"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]

    def stop_servers(self) -> None:
        for proc in self.servers:
            proc.kill()
            proc.wait(timeout=5)
        self.servers.clear()


@pytest.fixture(scope="session")
def box(request: pytest.FixtureRequest) -> Iterator[Box]:
    name = f"e2e{os.getpid() % 100000}"
    base = os.environ.get("VPCD_TEST_DATABASE_URL", "sqlite://")
    database: AbstractContextManager[str] = (
        nullcontext("") if base.startswith("sqlite") else scratch_database(base, "vpcd_e2e")
    )
    tree = git_status()
    with database as db_url:
        overrides = {"DATABASE_URL": db_url} if db_url else {"DATABASE_URL": ""}
        if not os.environ.get("REDIS_URL"):
            overrides["REDIS_URL"] = ""
        sb = None
        try:
            sb = sbx.up(name, 3, network_hosts=2, resync=RESYNC, overrides=overrides)
            b = Box(sb)
            try:
                yield b
            finally:
                b.stop_servers()
                b.http.close()
        finally:
            if sb is not None:  # keep the processes' logs: the sandbox dir goes with `down`
                passed = request.session.testsfailed == 0
                keep_logs(sb.dir, LOGS / name, passed=passed)
            sbx.down(name)
            left = [n for n in sbx.existing_namespaces() if n.startswith(f"{name}-")]
            assert not left, f"sandbox left namespaces behind: {left}"
            written = git_status() - tree  # the sandbox writes only under its run dir
            assert not written, f"the sandbox run wrote into the working tree: {written}"
