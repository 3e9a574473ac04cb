"""`vpcd sandbox`: many hosts on one machine, in namespaces never joined to its network.

The namespaces and links it builds (DESIGN §5) are `cli.sandbox_fabric`'s; workloads of
host H live in namespaces named H-<netns>. The API, the controller and one
agent per host run as processes in the root namespace (so they reach Postgres/Redis on
loopback); every PID and namespace is recorded in a state file (mode 0600: it holds the
admin token) that `down` uses, also after a crash. `fail`/`heal` cut and restore one
host's fabric links and agent, as a dead machine would. Everything the sandbox writes
lives under its run directory, never in the current directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from cli import netns_cleanup, prereqs, procs
from cli.sandbox_fabric import PHYS_IFACE, PHYSNET, build_fabric, existing_namespaces, ip

RUN_DIR = Path(os.environ.get("VPCD_SANDBOX_DIR", "/run/vpcd-sandbox"))


class SandboxError(RuntimeError):
    """A user's mistake or a missing prerequisite: the CLI prints it on one line."""


@dataclass
class Sandbox:
    name: str
    hosts: list[dict[str, str]] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)
    argv: dict[str, list[str]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    endpoint: str = ""
    admin_token: str = ""
    database_url: str = ""
    bus: str = ""
    failed: list[str] = field(default_factory=list)  # hosts cut off by `fail`

    @property
    def dir(self) -> Path:
        return RUN_DIR / self.name

    def save(self) -> None:
        """Write the state atomically, readable by root only (it holds the admin token)."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.dir / "state.json.tmp"
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(asdict(self), indent=2))
        tmp.replace(self.dir / "state.json")

    @classmethod
    def load(cls, name: str) -> Sandbox | None:
        path = RUN_DIR / name / "state.json"
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))

    def host(self, ref: str) -> dict[str, str]:
        for h in self.hosts:
            if ref in (h["name"], h["short"]):
                return h
        known = ", ".join(h["short"] for h in self.hosts) or "none"
        raise SandboxError(f"no host {ref!r} in sandbox {self.name}; hosts: {known}")

    def fabric_links(self, host: dict[str, str]) -> list[str]:
        """The fabric-side ends of the host's underlay and external veths."""
        short = host["short"]
        links = host.get("links")
        if links is None:  # a state file from before links were recorded
            links = f"{short}u,{short}x" if "network" in host["roles"] else f"{short}u"
        return [link for link in links.split(",") if link]


def load(name: str) -> Sandbox:
    sb = Sandbox.load(name)
    if sb is None:
        raise SandboxError(f"no sandbox named {name} is running (vpcd sandbox up --name {name})")
    return sb


def spawn(sb: Sandbox, label: str, argv: list[str], env: dict[str, str]) -> None:
    sb.argv[label] = argv
    if label.startswith("agent-"):
        # Agents hold no DB credentials: documents come and reports go on the bus.
        env = {k: v for k, v in env.items() if k != "DATABASE_URL"}
    proc = procs.spawn(argv, env, sb.dir / f"{label}.log")  # appends: respawns keep the past
    sb.pids[label] = proc.pid
    sb.save()


def respawn(name: str, label: str) -> int:
    """Start one of the sandbox's processes again (after it died or was killed)."""
    sb = load(name)
    old = sb.pids.get(label)
    if old is not None and alive(old) and ours(old):
        raise RuntimeError(f"{label} (pid {old}) is still running")
    spawn(sb, label, sb.argv[label], {**os.environ, **sb.env})
    return sb.pids[label]


def up(
    name: str,
    count: int,
    network_hosts: int = 1,
    resync: float = 30.0,
    overrides: dict[str, str] | None = None,
    replace: bool = False,
) -> Sandbox:
    """Build and start a sandbox; refuse to overwrite a running one unless `replace`."""
    problem = prereqs.problem(prereqs.missing())
    if problem:
        raise SandboxError(problem)
    if os.geteuid() != 0:
        raise SandboxError("vpcd sandbox needs root (network namespaces): run it as root")
    old = Sandbox.load(name)
    if old is not None and running(old) and not replace:
        raise SandboxError(
            f"sandbox {name} is already running at {old.endpoint}; `vpcd sandbox down"
            f" --name {name}` first, `up --replace` to rebuild it (its data is lost),"
            " or `up --name OTHER` for a second one beside it"
        )
    if old is not None:
        down(name)
    sb = Sandbox(name=name)
    shutil.rmtree(sb.dir, ignore_errors=True)
    sb.dir.mkdir(parents=True, mode=0o700)
    sb.dir.chmod(0o711)  # enterable, not listable: dnsmasq (not root) reads its files below
    env = {**os.environ, **(overrides or {})}
    # A fresh bus namespace per `up`: messages a previous run left in a shared Redis
    # (documents of another database's revisions) can never reach these agents.
    env["VPCD_BUS_NAMESPACE"] = f"vpcd-{name}-{secrets.token_hex(4)}"
    if not env.get("DATABASE_URL"):
        env["DATABASE_URL"] = f"sqlite:///{sb.dir}/vpcd.db"
    if not env.get("REDIS_URL"):
        env["VPCD_BUS_DIR"] = str(sb.dir / "bus")
    sb.database_url = env["DATABASE_URL"]
    sb.bus = env.get("REDIS_URL") or f"filesystem:{env['VPCD_BUS_DIR']}"
    sb.admin_token = env.get("VPCD_ADMIN_TOKEN") or "vpcd_admin_" + secrets.token_urlsafe(24)
    env["VPCD_ADMIN_TOKEN"] = sb.admin_token
    keys = ("DATABASE_URL", "REDIS_URL", "VPCD_BUS_DIR", "VPCD_BUS_NAMESPACE", "VPCD_ADMIN_TOKEN")
    sb.env = {k: env[k] for k in keys if k in env}
    port = procs.free_port()
    sb.endpoint = f"http://127.0.0.1:{port}"
    sb.save()
    try:
        build_fabric(sb, count, network_hosts)
        py = sys.executable
        subprocess.run([py, "-m", "cli.vpcd", "migrate"], env=env, check=True, capture_output=True)
        spawn(sb, "api", procs.uvicorn_argv("api.app:create_app", port), env)
        spawn(sb, "controller", [py, "-m", "cli.vpcd", "controller"], env)
        for h in sb.hosts:
            spawn(
                sb,
                f"agent-{h['short']}",
                [
                    py,
                    "-m",
                    "cli.vpcd",
                    "worker",
                    "--host",
                    h["name"],
                    "--netns",
                    h["netns"],
                    "--vtep-ip",
                    h["vtep_ip"],
                    "--roles",
                    h["roles"],
                    "--workload-prefix",
                    f"{h['name']}-",
                    "--resync-interval",
                    str(resync),
                    "--state-dir",
                    str(sb.dir / "agents" / h["short"]),
                    *(["--external-interface", "ext0"] if "network" in h["roles"] else []),
                    "--physical-interface",
                    f"{PHYSNET}={PHYS_IFACE}",
                ],
                env,
            )
        wait_ready(sb, len(sb.hosts))
    except BaseException:
        down(name)
        raise
    return sb


def wait_ready(sb: Sandbox, hosts: int, timeout: float = 60.0) -> None:
    """Until the API answers and every agent has registered with a heartbeat."""
    headers = {"Authorization": f"Bearer {sb.admin_token}"}
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        for label, pid in sb.pids.items():
            if not alive(pid):
                raise RuntimeError(f"sandbox {label} exited; see {sb.dir / (label + '.log')}")
        try:
            r = httpx.get(f"{sb.endpoint}/v1/hosts", headers=headers, timeout=2)
            if r.status_code == 200:
                up_hosts = [h for h in r.json()["items"] if h["status"] == "up"]
                if len(up_hosts) >= hosts:
                    return
                last = f"{len(up_hosts)}/{hosts} hosts up"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise RuntimeError(f"sandbox not ready after {timeout}s: {last}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def ours(pid: int) -> bool:
    """Guard against a recycled PID: only end processes running our own Python code."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return b"cli.vpcd" in cmd or b"api.app:create_app" in cmd


def running(sb: Sandbox) -> bool:
    """Whether anything the sandbox made is still there: a process or a namespace."""
    if any(alive(p) and ours(p) for p in sb.pids.values()):
        return True
    return bool(set(sb.namespaces) & existing_namespaces())


def down(name: str) -> bool:
    """Remove every process, namespace and file of the sandbox; False if there was none."""
    sb = Sandbox.load(name)
    found = sb is not None
    if sb is None:
        sb = Sandbox(name=name)
    for pid in sb.pids.values():
        if alive(pid) and ours(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(p) and ours(p) for p in sb.pids.values()):
        time.sleep(0.1)
    for pid in sb.pids.values():
        if alive(pid) and ours(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    procs.stop_daemons(sb.dir)
    host_names = {h["name"] for h in sb.hosts}
    for ns in sorted(existing_namespaces()):
        mine = ns in sb.namespaces or ns.startswith(f"{name}-")
        workload = any(ns.startswith(f"{h}-") for h in host_names)
        if mine or workload:
            found = True
            netns_cleanup.stop_processes_in(ns)
            netns_cleanup.remove_resolv_conf(ns)
            ip("netns", "delete", ns, check=False)
    purge_bus(sb.env)
    shutil.rmtree(sb.dir, ignore_errors=True)
    return found


def purge_bus(env: dict[str, str]) -> None:
    """Drop the sandbox's queues from a shared Redis (a filesystem bus goes with its dir)."""
    url, namespace = env.get("REDIS_URL"), env.get("VPCD_BUS_NAMESPACE")
    if not url or not namespace:
        return
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=5)
        keys = [*client.scan_iter(f"{namespace}.*"), *client.scan_iter(f"*{namespace}.*")]
        if keys:
            client.delete(*set(keys))
        client.close()
    except redis.RedisError:  # best effort: a stale namespace is never read again
        pass


def exec_argv(name: str, host: str, netns: str | None, cmd: list[str]) -> list[str]:
    """The argv that runs `cmd` in a workload (host + netns), in `outside` or in
    `physical` (the bare-metal stand-in on the provider segment)."""
    sb = load(name)
    if host in ("outside", "physical"):
        target = f"{name}-{host}"
    else:
        h = sb.host(host)
        target = f"{h['name']}-{netns}" if netns else h["netns"]
    if target not in existing_namespaces():
        what = f"workload {netns!r} on {host}" if netns else f"namespace {target}"
        raise SandboxError(f"no {what} in sandbox {name} (namespace {target} does not exist)")
    return ["ip", "netns", "exec", target, *cmd]


def stop(pid: int, timeout: float = 10.0) -> None:
    """SIGKILL the process group of one of our processes and wait until it is gone."""
    if not (alive(pid) and ours(pid)):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def fail(name: str, ref: str) -> dict[str, str]:
    """Make a host a dead machine: its fabric links go down and its agent is killed."""
    sb = load(name)
    host = sb.host(ref)
    if host["short"] in sb.failed:
        raise SandboxError(f"host {host['short']} is already failed; `heal` brings it back")
    sb.failed.append(host["short"])
    sb.save()
    for link in sb.fabric_links(host):
        ip("link", "set", link, "down", netns=f"{name}-fabric")
    pid = sb.pids.get(f"agent-{host['short']}")
    if pid is not None:
        stop(pid)
    return host


def heal(name: str, ref: str) -> dict[str, str]:
    """Undo `fail`: the host's links come back up and its agent starts again."""
    sb = load(name)
    host = sb.host(ref)
    label = f"agent-{host['short']}"
    pid = sb.pids.get(label)
    agent_up = pid is not None and alive(pid) and ours(pid)
    if host["short"] not in sb.failed and agent_up:
        raise SandboxError(f"host {host['short']} is not failed")
    for link in sb.fabric_links(host):
        ip("link", "set", link, "up", netns=f"{name}-fabric")
    if not agent_up:
        respawn(name, label)
    sb = load(name)  # respawn saved the new PID
    sb.failed = [h for h in sb.failed if h != host["short"]]
    sb.save()
    return host
