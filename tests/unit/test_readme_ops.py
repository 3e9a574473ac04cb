"""The README's plan/apply example and alert rules are real: the stack parses, and every
metric and label the alerts use is one vpcd exports."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

from api import metrics as api_metrics
from cli.stack.kinds import ORDER
from cli.stack.parse import parse
from workers.controller import metrics as controller_metrics

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
YAML_BLOCKS = re.findall(r"```yaml\n(.*?)```", README, flags=re.S)
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exported() -> dict[str, set[str]]:
    """Every series name vpcd exports (API and controller) -> its label names."""
    assert api_metrics.REQUESTS and controller_metrics.COMPILE  # both registered
    out: dict[str, set[str]] = {}
    collector = controller_metrics.StateCollector(lambda: [("h1", 2, 1, True)])
    families = list(REGISTRY.collect()) + list(collector.collect())
    labels_of = {
        m._name: set(m._labelnames)
        for m in [*vars(api_metrics).values(), *vars(controller_metrics).values()]
        if hasattr(m, "_labelnames") and hasattr(m, "_name")
    }
    for family in families:
        if not family.name.startswith("vpcd_"):
            continue
        labels = labels_of.get(family.name, set())
        labels |= {k for s in family.samples for k in s.labels if k != "le"}
        for suffix in SUFFIXES.get(family.type, ("",)):
            out[family.name + suffix] = labels
    return out


def test_the_alert_rules_use_only_metrics_and_labels_that_exist() -> None:
    (block,) = [b for b in YAML_BLOCKS if b.startswith("groups:")]
    rules: list[dict[str, Any]] = yaml.safe_load(block)["groups"][0]["rules"]
    assert len(rules) >= 3
    series = exported()
    used: set[str] = set()
    for rule in rules:
        assert rule["alert"] and rule["for"] and rule["annotations"]["summary"], rule
        expr = rule["expr"]
        names = set(re.findall(r"\b(vpcd_[a-z_]+)", expr))
        assert names, expr
        for name in names:
            assert name in series, f"{rule['alert']}: {name} is not exported"
            used.add(name)
        grouped = {x.strip() for g in re.findall(r"by \(([^)]*)\)", expr) for x in g.split(",")}
        matched = set(re.findall(r"[{,]\s*([a-z_]+)\s*=~?", expr))
        for label in grouped | matched:
            assert any(label in series[n] for n in names), f"{rule['alert']}: label {label}"
    assert {
        "vpcd_host_realisation_lag_revisions",
        "vpcd_agent_last_heartbeat_timestamp_seconds",
        "vpcd_http_requests_total",
    } <= used


def test_the_readme_stack_is_a_valid_stack_file() -> None:
    (block,) = [b for b in YAML_BLOCKS if b.startswith("stack:")]
    stack = parse(block)
    assert stack.name == "shop"
    assert {kind for kind, _ in stack.wants} == set(ORDER)
    assert ".venv/bin/vpcctl plan -f stack.yaml" in README
    assert ".venv/bin/vpcctl destroy -f stack.yaml" in README
