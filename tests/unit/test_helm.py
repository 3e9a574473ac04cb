"""The Helm chart in helm/vpcd, checked by the real Helm binary (issue 11 §2).

`helm lint --strict` and `helm template` run on the default values and on other value
sets; the rendered manifests are parsed and checked: the agent's host access, the
migration hook, credentials only through a Secret, one image everywhere, and every
command and flag the chart runs existing in the `vpcd` CLI.

Helm comes from `python helm/get_helm.py` (which .ci/run calls). Without it these tests
fail under CI (CI set) and are skipped elsewhere.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer.core
import typer.main
import yaml
from typer.testing import CliRunner

from cli.vpcd import app as vpcd_app

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "vpcd"
RELEASE = "demo"
NAMESPACE = "vpcd-system"

Manifest = dict[str, Any]

# Value sets rendered by the tests: the defaults, then the other shapes an operator uses.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "existing-secret-monitoring": {
        "existingSecret": "vpcd-credentials",
        "secretKeys": {"databaseUrl": "db-url", "redisUrl": "redis-url", "adminToken": "admin"},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "api": {
            "replicas": 3,
            "workers": 4,
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
        },
        "controller": {"concurrency": 8, "resources": {"limits": {"memory": "512Mi"}}},
        "agent": {"resources": {"requests": {"cpu": "50m"}}},
        "migrate": {"resources": {"limits": {"memory": "256Mi"}}},
    },
    "network-nodes-custom-image": {
        "image": {"repository": "registry.example.test/net/vpcd", "tag": "2.3.4"},
        "database": {"url": "postgresql+psycopg://vpcd:s3cret-db@db.example.test:5432/vpcd"},
        "redis": {"url": "redis://:s3cret-redis@redis.example.test:6379/2"},
        "adminToken": "admin-token-from-values-0123456789",
        "api": {"workers": 1, "port": 9000},
        "controller": {"metrics": {"enabled": False}},
        "agent": {
            "networkNodeSelector": {"vpcd.io/network": "true"},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"operator": "Exists"}],
            "resyncInterval": 60,
            "externalInterface": "eth1",
        },
    },
}

SECRET_ENV = ("DATABASE_URL", "REDIS_URL", "VPCD_ADMIN_TOKEN")
WORKLOAD_KINDS = ("Deployment", "DaemonSet", "Job", "StatefulSet", "CronJob")


# --- the binary ------------------------------------------------------------------------


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _find_helm() -> str | None:
    candidates = [
        os.environ.get("HELM", ""),
        str(Path(sys.executable).parent / "helm"),
        str(ROOT / ".venv" / "bin" / "helm"),
        shutil.which("helm") or "",
    ]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


@pytest.fixture(scope="module")
def helm() -> str:
    path = _find_helm()
    if path is None:
        why = "no helm binary: run `.venv/bin/python helm/get_helm.py` (puts it in .venv/bin)"
        if _in_ci():
            pytest.fail(why)
        pytest.skip(why)
    return path


def _run(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)


@cache
def _render(helm: str, name: str) -> tuple[Manifest, ...]:
    out = subprocess.run(
        [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", "-"],
        input=json.dumps(VALUE_SETS[name]),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert docs, "helm template rendered nothing"
    return tuple(docs)


@pytest.fixture(params=list(VALUE_SETS))
def rendered(request: pytest.FixtureRequest, helm: str) -> tuple[str, list[Manifest]]:
    return request.param, list(_render(helm, request.param))


# --- helpers over manifests -------------------------------------------------------------


def _values(name: str, *path: str, default: Any = None) -> Any:
    """A value of a set, falling back to the chart's values.yaml."""
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    for source in (VALUE_SETS[name], chart_values):
        node: Any = source
        for key in path:
            if not isinstance(node, dict) or key not in node:
                break
            node = node[key]
        else:
            return node
    return default


def _of_kind(docs: list[Manifest], kind: str) -> list[Manifest]:
    return [d for d in docs if d["kind"] == kind]


def _one(docs: list[Manifest], kind: str, suffix: str) -> Manifest:
    found = [d for d in _of_kind(docs, kind) if d["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"{kind} *{suffix}: {[d['metadata']['name'] for d in found]}"
    return found[0]


def _pod_spec(doc: Manifest) -> Manifest:
    spec: Manifest = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def _containers(doc: Manifest) -> list[Manifest]:
    pod = _pod_spec(doc)
    return [*pod.get("initContainers", []), *pod["containers"]]


def _workloads(docs: list[Manifest]) -> list[Manifest]:
    return [d for d in docs if d["kind"] in WORKLOAD_KINDS]


def _env(container: Manifest) -> dict[str, Manifest]:
    return {e["name"]: e for e in container.get("env", [])}


def _secret_name(name: str) -> str:
    return _values(name, "existingSecret") or f"{RELEASE}-vpcd"


def _secret_values(name: str, docs: list[Manifest]) -> list[str]:
    """The plain values the chart puts into its Secret (none when the Secret is external)."""
    out = []
    for secret in _of_kind(docs, "Secret"):
        out += [base64.b64decode(v).decode() for v in secret.get("data", {}).values()]
        out += list(secret.get("stringData", {}).values())
    return out


def _hooks(doc: Manifest) -> set[str]:
    annotations = doc["metadata"].get("annotations") or {}
    return {h.strip() for h in annotations.get("helm.sh/hook", "").split(",") if h.strip()}


def _walk_strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _walk_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_strings(item)
    elif node is not None:
        yield str(node)


# --- lint ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_helm_lint_strict(helm: str, name: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(VALUE_SETS[name]))
    out = _run(helm, "lint", "--strict", str(CHART), "-f", str(values))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout
    assert "[WARNING]" not in out.stdout and "[ERROR]" not in out.stdout, out.stdout


def test_helm_is_the_real_binary(helm: str) -> None:
    out = _run(helm, "version", "--short")
    assert out.returncode == 0, out.stderr
    assert re.match(r"v[34]\.\d+\.\d+", out.stdout.strip()), out.stdout


def test_schema_rejects_bad_values(helm: str) -> None:
    bad_role = _run(helm, "template", RELEASE, str(CHART), "--set", "agent.roles=router")
    assert bad_role.returncode != 0 and "agent/roles" in bad_role.stderr, bad_role.stderr
    typo = _run(helm, "template", RELEASE, str(CHART), "--set", "api.replica=3")
    assert typo.returncode != 0 and "replica" in typo.stderr, typo.stderr


def test_empty_database_url_without_existing_secret_fails(helm: str) -> None:
    out = _run(helm, "template", RELEASE, str(CHART), "--set", "database.url=")
    assert out.returncode != 0
    assert "database.url is empty" in out.stderr, out.stderr


# --- rendered manifests -----------------------------------------------------------------


def test_every_component_is_rendered(rendered: tuple[str, list[Manifest]]) -> None:
    name, docs = rendered
    api = _one(docs, "Deployment", "-api")
    _one(docs, "Deployment", "-controller")
    _one(docs, "Job", "-migrate")
    service = _one(docs, "Service", "-api")
    assert api["spec"]["replicas"] == _values(name, "api", "replicas")
    assert service["spec"]["selector"].items() <= _pod_labels(api).items()
    agents = _of_kind(docs, "DaemonSet")
    assert len(agents) == (2 if _values(name, "agent", "networkNodeSelector") else 1)
    assert bool(_of_kind(docs, "ServiceMonitor")) == _values(name, "serviceMonitor", "enabled")
    assert bool(_of_kind(docs, "Secret")) == (not _values(name, "existingSecret"))
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert doc["metadata"]["namespace"] == NAMESPACE


def _pod_labels(doc: Manifest) -> dict[str, str]:
    return doc["spec"]["template"]["metadata"]["labels"]


def test_api_serves_on_all_addresses_with_probes(rendered: tuple[str, list[Manifest]]) -> None:
    name, docs = rendered
    api = _one(docs, "Deployment", "-api")
    (container,) = _pod_spec(api)["containers"]
    port = _values(name, "api", "port")
    args = container["args"]
    assert container["command"] == ["vpcd"] and args[0] == "serve"
    assert _flag(args, "--bind") == "0.0.0.0"
    assert _flag(args, "--port") == str(port)
    assert _flag(args, "--workers") == str(_values(name, "api", "workers"))
    (http,) = container["ports"]
    assert http == {"name": "http", "containerPort": port, "protocol": "TCP"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert _pod_spec(api)["securityContext"]["runAsNonRoot"] is True
    want_resources = _values(name, "api", "resources") or None
    assert container.get("resources") == want_resources
    multiproc = "PROMETHEUS_MULTIPROC_DIR" in _env(container)
    assert multiproc == (_values(name, "api", "workers") > 1)


def _flag(args: list[str], flag: str) -> str:
    assert args.count(flag) == 1, f"{flag} in {args}"
    return args[args.index(flag) + 1]


def test_agent_has_the_host_network_and_capabilities(
    rendered: tuple[str, list[Manifest]],
) -> None:
    _, docs = rendered
    for agent in _of_kind(docs, "DaemonSet"):
        pod = _pod_spec(agent)
        assert pod["hostNetwork"] is True
        assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
        (container,) = pod["containers"]
        security = container["securityContext"]
        assert {"NET_ADMIN", "SYS_ADMIN", "NET_RAW"} <= set(security["capabilities"]["add"])
        # Bidirectional mount propagation is allowed only in privileged containers.
        assert security["privileged"] is True

        mounts = {m["name"]: m for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        by_path = {m["mountPath"]: m for m in mounts.values()}
        netns = by_path["/run/netns"]
        assert netns["mountPropagation"] == "Bidirectional"
        assert volumes[netns["name"]]["hostPath"]["path"] == "/run/netns"
        xtables = by_path["/run/xtables.lock"]
        assert volumes[xtables["name"]]["hostPath"] == {
            "path": "/run/xtables.lock",
            "type": "FileOrCreate",
        }
        modules = by_path["/lib/modules"]
        assert modules["readOnly"] is True
        assert volumes[modules["name"]]["hostPath"]["path"] == "/lib/modules"


def test_agent_is_named_after_its_node(rendered: tuple[str, list[Manifest]]) -> None:
    _, docs = rendered
    for agent in _of_kind(docs, "DaemonSet"):
        (container,) = _pod_spec(agent)["containers"]
        args = container["args"]
        assert container["command"] == ["vpcd"] and args[0] == "worker"
        assert _flag(args, "--host") == "$(NODE_NAME)"
        assert _flag(args, "--vtep-ip") == "$(NODE_IP)"
        env = _env(container)
        assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
        assert env["NODE_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.hostIP"}}
        # Kubernetes expands $(VAR) in args only for variables the container's env defines.
        assert "REDIS_URL" in env
        # Hosts hold no database credentials (DESIGN §2) and no admin token.
        assert "DATABASE_URL" not in env and "VPCD_ADMIN_TOKEN" not in env


def test_network_nodes_get_their_own_agents(rendered: tuple[str, list[Manifest]]) -> None:
    name, docs = rendered
    selector = _values(name, "agent", "networkNodeSelector")
    base_selector = _values(name, "agent", "nodeSelector") or {}
    compute = _one(docs, "DaemonSet", "-agent")
    compute_args = _pod_spec(compute)["containers"][0]["args"]
    assert _flag(compute_args, "--roles") == _values(name, "agent", "roles")
    if not selector:
        assert "affinity" not in _pod_spec(compute)
        return
    network = _one(docs, "DaemonSet", "-agent-network")
    pod = _pod_spec(network)
    assert pod["nodeSelector"] == {**base_selector, **selector}
    assert _flag(pod["containers"][0]["args"], "--roles") == "compute,network"
    # only network agents get the external interface (routers' gateways, floating IPs)
    external = _values(name, "agent", "externalInterface")
    assert _flag(pod["containers"][0]["args"], "--external-interface") == external
    assert "--external-interface" not in compute_args
    assert _pod_labels(network) != _pod_labels(compute)  # selectors do not overlap
    # The compute agents stay off the network nodes: every term excludes one label value.
    terms = _pod_spec(compute)["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    excluded = {
        (e["key"], tuple(e["values"]))
        for t in terms
        for e in t["matchExpressions"]
        if e["operator"] == "NotIn"
    }
    assert excluded == {(k, (v,)) for k, v in selector.items()}
    assert _pod_spec(compute).get("nodeSelector", {}) == base_selector


def test_migrations_run_in_a_pre_install_pre_upgrade_hook(
    rendered: tuple[str, list[Manifest]],
) -> None:
    _, docs = rendered
    job = _one(docs, "Job", "-migrate")
    assert {"pre-install", "pre-upgrade"} <= _hooks(job)
    annotations = job["metadata"]["annotations"]
    policies = set(annotations["helm.sh/hook-delete-policy"].split(","))
    assert {"before-hook-creation", "hook-succeeded"} <= policies
    (container,) = _pod_spec(job)["containers"]
    assert container["command"] == ["vpcd"] and container["args"] == ["migrate"]
    assert _pod_spec(job)["restartPolicy"] == "Never"
    # The chart's own Secret must exist before the Job: a hook of lower weight.
    for secret in _of_kind(docs, "Secret"):
        assert {"pre-install", "pre-upgrade"} <= _hooks(secret)
        secret_weight = int(secret["metadata"]["annotations"]["helm.sh/hook-weight"])
        assert secret_weight < int(annotations.get("helm.sh/hook-weight", "0"))


def test_credentials_come_only_from_the_secret(rendered: tuple[str, list[Manifest]]) -> None:
    name, docs = rendered
    secret = _secret_name(name)
    keys = _values(name, "secretKeys")
    key_of = {
        "DATABASE_URL": keys["databaseUrl"],
        "REDIS_URL": keys["redisUrl"],
        "VPCD_ADMIN_TOKEN": keys["adminToken"],
    }
    seen: set[str] = set()
    for doc in _workloads(docs):
        for container in _containers(doc):
            for var, entry in _env(container).items():
                if var in SECRET_ENV:
                    seen.add(var)
                    assert "value" not in entry, f"{doc['metadata']['name']}: {var} in plain"
                    assert entry["valueFrom"] == {
                        "secretKeyRef": {"name": secret, "key": key_of[var]}
                    }
            for source in container.get("envFrom", []):
                assert "configMapRef" not in source
    assert seen == set(SECRET_ENV)
    # Every workload that needs the database gets it.
    for suffix in ("-api", "-controller"):
        (container,) = _pod_spec(_one(docs, "Deployment", suffix))["containers"]
        assert {"DATABASE_URL", "REDIS_URL"} <= set(_env(container))
    (migrate,) = _pod_spec(_one(docs, "Job", "-migrate"))["containers"]
    assert "DATABASE_URL" in _env(migrate)


def test_no_configmap_or_other_manifest_holds_a_secret(
    rendered: tuple[str, list[Manifest]],
) -> None:
    name, docs = rendered
    secrets = [s for s in _secret_values(name, docs) if s]
    for value in ("database", "redis"):
        url = _values(name, value, "url")
        if "{{" not in url and not _values(name, "existingSecret"):
            secrets.append(url)
    if _values(name, "adminToken"):
        secrets.append(_values(name, "adminToken"))
    if not _values(name, "existingSecret"):
        assert len(secrets) >= 3
    for config_map in _of_kind(docs, "ConfigMap"):
        data = {**config_map.get("data", {}), **config_map.get("binaryData", {})}
        assert not set(data) & {*SECRET_ENV, *_values(name, "secretKeys").values()}
    for doc in docs:
        if doc["kind"] == "Secret":
            continue
        text = "\n".join(_walk_strings(doc))
        for value in secrets:
            assert value not in text, f"a secret value is in {doc['kind']} {doc['metadata']}"


def test_generated_admin_token(rendered: tuple[str, list[Manifest]]) -> None:
    name, docs = rendered
    if _values(name, "existingSecret"):
        return
    secret = _one(docs, "Secret", "-vpcd")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    token = data["VPCD_ADMIN_TOKEN"]
    if _values(name, "adminToken"):
        assert token == _values(name, "adminToken")
    else:
        assert re.fullmatch(r"[A-Za-z0-9]{40}", token), token
    assert data["DATABASE_URL"].startswith("postgresql+psycopg://")
    assert data["REDIS_URL"].startswith("redis://")
    assert "{{" not in data["DATABASE_URL"] + data["REDIS_URL"]


def test_every_workload_runs_the_values_image(rendered: tuple[str, list[Manifest]]) -> None:
    name, docs = rendered
    repository = _values(name, "image", "repository")
    tag = (
        _values(name, "image", "tag")
        or yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    )
    workloads = _workloads(docs)
    assert len(workloads) >= 4
    for doc in workloads:
        for container in _containers(doc):
            assert container["image"] == f"{repository}:{tag}", doc["metadata"]["name"]
            assert container["imagePullPolicy"] == _values(name, "image", "pullPolicy")


def test_service_monitor_scrapes_metrics(rendered: tuple[str, list[Manifest]]) -> None:
    name, docs = rendered
    monitors = _of_kind(docs, "ServiceMonitor")
    if not _values(name, "serviceMonitor", "enabled"):
        assert not monitors
        return
    scraped = {"-api": "-api"}
    if _values(name, "controller", "metrics", "enabled"):
        scraped["-controller"] = "-controller-metrics"
    assert len(monitors) == len(scraped)
    for suffix, service_suffix in scraped.items():
        monitor = _one(monitors, "ServiceMonitor", suffix)
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        service = _one(docs, "Service", service_suffix)
        assert monitor["spec"]["selector"]["matchLabels"].items() <= (
            service["metadata"]["labels"].items()
        )
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics"
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        for key, value in _values(name, "serviceMonitor", "labels").items():
            assert monitor["metadata"]["labels"][key] == value


def test_the_controller_serves_metrics_to_the_pod_network(
    rendered: tuple[str, list[Manifest]],
) -> None:
    """`vpcd controller --metrics-port` binds 127.0.0.1 by default: in a pod it must listen
    on the pod's address, on the port its Service targets."""
    name, docs = rendered
    (container,) = _containers(_one(docs, "Deployment", "-controller"))
    args = container["args"]
    if not _values(name, "controller", "metrics", "enabled"):
        assert "--metrics-port" not in args and not container.get("ports")
        assert not [d for d in docs if d["metadata"]["name"].endswith("-controller-metrics")]
        return
    port = _values(name, "controller", "metrics", "port")
    assert args[args.index("--metrics-port") + 1] == str(port)
    assert args[args.index("--metrics-address") + 1] == "0.0.0.0"
    assert container["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    service = _one(docs, "Service", "-controller-metrics")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert (
        service["spec"]["selector"].items()
        <= _pod_labels(_one(docs, "Deployment", "-controller")).items()
    )


# --- the commands the chart runs exist in the CLI ------------------------------------------


def _commands_run(docs: list[Manifest]) -> list[tuple[str, list[str]]]:
    """(workload, argv after `vpcd`) of every container, with the entrypoint checked."""
    runs = []
    for doc in _workloads(docs):
        for container in _containers(doc):
            assert container["command"] == ["vpcd"], container
            runs.append((doc["metadata"]["name"], list(container["args"])))
    return runs


def _help(subcommand: str) -> str:
    result = CliRunner().invoke(vpcd_app, [subcommand, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_and_flag_the_chart_runs_exists_in_the_cli(helm: str) -> None:
    group = typer.main.get_command(vpcd_app)
    assert isinstance(group, typer.core.TyperGroup)
    seen: set[str] = set()
    for name in VALUE_SETS:
        for workload, argv in _commands_run(list(_render(helm, name))):
            subcommand, args = argv[0], argv[1:]
            seen.add(subcommand)
            assert subcommand in group.commands, f"{workload}: vpcd {subcommand}"
            help_text = _help(subcommand)
            for flag in (a for a in args if a.startswith("--")):
                pattern = rf"(?<![\w-]){re.escape(flag)}(?![\w-])"
                assert re.search(pattern, help_text), f"{workload}: vpcd {subcommand} {flag}"
            # The whole argv parses: required options given, values of the right type.
            concrete = [
                a.replace("$(NODE_NAME)", "node-1").replace("$(NODE_IP)", "10.0.0.1") for a in args
            ]
            command = group.commands[subcommand]
            with command.make_context(subcommand, concrete) as ctx:
                assert ctx.params is not None
    assert seen == {"serve", "controller", "worker", "migrate"}


def test_the_image_has_the_cli_as_entrypoint() -> None:
    text = (ROOT / "Containerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim-bookworm\b", text, re.M)
    for package in ("iproute2", "iptables", "ipset", "conntrack", "iputils-ping"):
        assert re.search(rf"\b{re.escape(package)}\b", text), package
    assert re.search(r"pip install [^\n]*\.\s*(\\|&&|$)", text, re.M)
    assert re.search(r'^ENTRYPOINT \["vpcd"\]', text, re.M)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'vpcd = "cli.vpcd:main"' in pyproject
    # Every package the image needs is copied into it.
    for package in ("api", "models", "workers", "cli", "migrations"):
        assert re.search(rf"^COPY {package} ", text, re.M), package
