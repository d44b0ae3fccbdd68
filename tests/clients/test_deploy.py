"""Deployment files: Prometheus rules and config, the Grafana dashboard and provisioning,
and the Kubernetes manifests — validated offline and against a live `rollcast serve`.

Validators: PromQL parsed with `promql-parser` (the Rust parser of the Prometheus grammar,
from PyPI) in place of `promtool check rules`; Kubernetes built-in kinds with
`kubernetes-validate` (bundled upstream JSON schemas, strict: unknown fields fail); the KEDA
and Prometheus Operator CRDs with the minimal schemas of deploy_env.py plus cross-checks.
"""

from __future__ import annotations

import copy
import json
import os
import re
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import promql_parser
import pytest
import yaml
from deploy_env import (
    DEPLOY,
    REPO,
    SCALED_OBJECT_SCHEMA,
    SERVICE_MONITOR_SCHEMA,
    exposed_series_names,
    grafana_to_promql,
    load_yaml_docs,
    metric_names,
)
from serve_env import ServeProcess

from server.broker.keys import KeySpace
from server.settings import Settings

K8S = DEPLOY / "kubernetes"
K8S_VERSION = "1.30.0"


@pytest.fixture(scope="module")
def live_series(rollcast_server: ServeProcess) -> set[str]:
    response = httpx.get(f"{rollcast_server.url}/metrics", timeout=10)
    assert response.status_code == 200
    names = exposed_series_names(response.text)
    assert "rollcast_frames_generated_total" in names  # the page is the real one
    return names


# -- Prometheus -------------------------------------------------------------------------------
def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_rules_parse_and_query_live_metrics(live_series: set[str]) -> None:
    all_rules = rules()
    recorded = {r["record"] for r in all_rules if "record" in r}
    alerts = [r for r in all_rules if "alert" in r]
    assert len({a["alert"] for a in alerts}) == len(alerts)
    for rule in all_rules:
        assert ("record" in rule) != ("alert" in rule), rule
        used = metric_names(str(rule["expr"]))
        unknown = used - live_series - recorded - {"up"}
        assert not unknown, f"{rule.get('alert') or rule.get('record')}: no such metric {unknown}"
        if "for" in rule:
            promql_parser.parse_duration(rule["for"])
        if "alert" in rule:
            assert rule["labels"]["severity"] in ("critical", "warning", "info")
            assert rule["annotations"]["summary"]
        else:
            assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["record"])  # level:metric:ops


def test_required_alerts_exist() -> None:
    by_metric: dict[str, list[dict[str, Any]]] = {}
    recorded = {r["record"]: r for r in rules() if "record" in r}
    for alert in (r for r in rules() if "alert" in r):
        names = set(metric_names(alert["expr"]))
        for name in list(names):  # look through recording rules to the raw metrics
            if name in recorded:
                names |= metric_names(recorded[name]["expr"])
        for name in names:
            by_metric.setdefault(name, []).append(alert)
    no_worker = by_metric["rollcast_workers_ready"]
    assert any("== 0" in a["expr"] and a["for"] == "2m" for a in no_worker)
    assert by_metric["rollcast_queue_wait_seconds_bucket"]
    assert by_metric["rollcast_time_to_first_frame_seconds_bucket"]
    assert by_metric["rollcast_frames_dropped_total"]


def test_a_broken_expression_is_rejected() -> None:
    with pytest.raises(ValueError):
        metric_names("histogram_quantile(0.99, sum by (le) (rate(rollcast_queue_wait_seconds_bucket[5m]))")


def test_prometheus_config_matches_compose() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert {"api:8000", "worker:9100"} <= targets
    assert "api" in services and "worker" in services
    assert "--metrics-port" in services["worker"]["command"] and "9100" in services["worker"]["command"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in services["prometheus"]["volumes"])
    assert mounts["./deploy/prometheus/rules.yml"] in config["rule_files"]
    assert (REPO / "deploy/prometheus/prometheus.yml").is_file() and (
        REPO / "deploy/prometheus/rules.yml"
    ).is_file()
    assert mounts["./deploy/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"


# -- Grafana ----------------------------------------------------------------------------------
def dashboard_panels() -> list[dict[str, Any]]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "rollcast.json").read_text())
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def test_dashboard_queries_exist_on_live_metrics(live_series: set[str]) -> None:
    queried: set[str] = set()
    exprs: list[str] = []
    for panel in dashboard_panels():
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = grafana_to_promql(target["expr"])
            exprs.append(expr)
            queried |= metric_names(expr)
    missing = queried - live_series
    assert not missing, f"the dashboard queries metrics the server does not expose: {missing}"
    joined = "\n".join(exprs)
    for needed in (
        "rollcast_time_to_first_frame_seconds_bucket",
        "rollcast_frames_generated_total",
        "rollcast_chunk_generation_seconds_bucket",
        "rollcast_sessions_active",
        "rollcast_sessions_queued",
        "rollcast_queue_wait_seconds_bucket",
        "rollcast_frames_dropped_total",
        "rollcast_gpu_memory_bytes",
        "rollcast_viewers",
    ):
        assert needed in queried, needed
    assert "histogram_quantile(0.99, sum by (le) (rate(rollcast_time_to_first_frame" in joined
    assert "histogram_quantile(0.5, sum by (le) (rate(rollcast_queue_wait" in joined
    assert "sum by (instance) (rate(rollcast_frames_generated_total" in joined
    assert "sum by (le, stage)" in joined and "sum by (reason)" in joined


def test_dashboard_layout_and_provisioning() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "rollcast.json").read_text())
    panels = dashboard_panels()
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for p in panels:
        pos = p["gridPos"]
        assert pos["x"] >= 0 and pos["w"] >= 1 and pos["x"] + pos["w"] <= 24, p["title"]
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = datasource["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    variable = next(v for v in dashboard["templating"]["list"] if v["type"] == "datasource")
    assert variable["current"]["value"] == source["uid"]
    for p in panels:
        if p["type"] != "row":
            assert p["datasource"]["uid"] in (source["uid"], f"${{{variable['name']}}}")
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/rollcast.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in compose["services"]["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == "/var/lib/grafana/dashboards"
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


# -- Kubernetes -------------------------------------------------------------------------------
def manifests() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    on_disk = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk, "kustomization.yaml must list every manifest"
    return [doc for name in listed for doc in load_yaml_docs(K8S / name)]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def test_builtin_kinds_validate_against_kubernetes_schemas() -> None:
    docs = manifests()
    builtin = [d for d in docs if d["kind"] not in ("ScaledObject", "ServiceMonitor")]
    assert {d["kind"] for d in builtin} >= {
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
        "PodDisruptionBudget",
    }
    for doc in builtin:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    broken = copy.deepcopy(find(docs, "Deployment", "rollcast-worker")[0])
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):  # the validator is really strict
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_crds_validate_and_point_at_the_right_things() -> None:
    docs = manifests()
    config = find(docs, "ConfigMap", "rollcast-config")[0]["data"]
    keys = KeySpace(config.get("ROLLCAST_KEY_PREFIX", "rollcast"))
    namespace = yaml.safe_load((K8S / "kustomization.yaml").read_text())["namespace"]
    (scaled,) = find(docs, "ScaledObject")
    jsonschema.validate(scaled, SCALED_OBJECT_SCHEMA)
    assert scaled["spec"]["scaleTargetRef"]["name"] == "rollcast-worker" and find(
        docs, "Deployment", "rollcast-worker"
    )
    (trigger,) = scaled["spec"]["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "redis-streams"
    assert meta["stream"] == keys.jobs == "rollcast:jobs" and meta["consumerGroup"] == keys.group
    host, port = meta["address"].rsplit(":", 1)
    redis_service = find(docs, "Service", host.split(".")[0])[0]
    assert host == f"{redis_service['metadata']['name']}.{namespace}.svc.cluster.local"
    assert int(port) == redis_service["spec"]["ports"][0]["port"]
    assert int(meta["streamLength"]) == int(config["ROLLCAST_MAX_SESSIONS"])
    bad = copy.deepcopy(scaled)
    bad["spec"]["triggers"][0]["metadata"]["streamLength"] = 2
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCALED_OBJECT_SCHEMA)

    services = find(docs, "Service")
    monitors = find(docs, "ServiceMonitor")
    assert {m["metadata"]["name"] for m in monitors} == {"rollcast-api", "rollcast-worker"}
    for monitor in monitors:
        jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
        wanted = monitor["spec"]["selector"]["matchLabels"]
        matched = [s for s in services if wanted.items() <= s["metadata"].get("labels", {}).items()]
        assert matched, monitor["metadata"]["name"]
        for endpoint in monitor["spec"]["endpoints"]:
            for service in matched:
                assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def pod_spec(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return find(docs, "Deployment", name)[0]["spec"]["template"]["spec"]


def test_services_pdbs_and_probes_wire_up() -> None:
    docs = manifests()
    deployments = find(docs, "Deployment")
    for deployment in deployments:
        assert deployment["spec"]["selector"]["matchLabels"].items() <= (
            deployment["spec"]["template"]["metadata"]["labels"].items()
        )
    for kind in ("Service", "PodDisruptionBudget"):
        for doc in find(docs, kind):
            selector = doc["spec"]["selector"]
            selector = selector.get("matchLabels", selector)
            targets = [
                d
                for d in deployments
                if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
            ]
            assert len(targets) == 1, doc["metadata"]["name"]
            if kind == "Service":
                ports = {
                    p["name"]
                    for c in targets[0]["spec"]["template"]["spec"]["containers"]
                    for p in c["ports"]
                }
                assert all(p["targetPort"] in ports for p in doc["spec"]["ports"])
    api = pod_spec(docs, "rollcast-api")["containers"][0]
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert str(api["ports"][0]["containerPort"]) in api["command"]

    worker = pod_spec(docs, "rollcast-worker")
    container = worker["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert "kill -TERM 1" in " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
    drain = float(find(docs, "ConfigMap", "rollcast-config")[0]["data"]["ROLLCAST_DRAIN_TIMEOUT_S"])
    assert worker["terminationGracePeriodSeconds"] >= drain + 30
    assert "--metrics-port" in container["command"]


def test_config_and_secret_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = manifests()
    config = find(docs, "ConfigMap", "rollcast-config")[0]["data"]
    secret = find(docs, "Secret", "rollcast-secrets")[0]["stringData"]
    fields = {f"ROLLCAST_{name.upper()}" for name in Settings.model_fields}
    for key in [*config, *secret]:
        assert key in fields, f"{key} is not a setting"
    for name in list(os.environ):
        if name.startswith("ROLLCAST_"):
            monkeypatch.delenv(name)
    for key, value in {**config, **secret}.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.redis_url == config["ROLLCAST_REDIS_URL"] and settings.auth_enabled
    refs = {
        ref.get("configMapRef", ref.get("secretRef"))["name"]
        for d in find(docs, "Deployment")
        for c in d["spec"]["template"]["spec"]["containers"]
        for ref in c.get("envFrom", [])
    }
    assert refs <= {"rollcast-config", "rollcast-secrets"}
