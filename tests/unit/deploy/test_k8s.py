"""deploy/k8s: plain manifests that parse, name themselves, and refer to each other right."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from deploy_testkit import (
    DEPLOY,
    cli_params,
    compose_raw,
    flag_value,
    init_commands,
    load_yaml_all,
)

K8S = DEPLOY / "k8s"
FILES = sorted(K8S.glob("*.yaml"))
WORKLOADS = ("Deployment", "StatefulSet", "Job")


def documents() -> list[dict[str, Any]]:
    return [doc for f in FILES for doc in load_yaml_all(f)]


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents() if d["kind"] == kind}


def workloads() -> list[dict[str, Any]]:
    return [d for d in documents() if d["kind"] in WORKLOADS]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    return list(workload["spec"]["template"]["spec"]["containers"])


def named_ports(workload: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for c in containers(workload) for p in c.get("ports", [])}


def test_the_expected_manifests_exist() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in documents()}
    assert {
        ("Deployment", "scantrace-gateway"),
        ("Service", "scantrace-gateway"),
        ("HorizontalPodAutoscaler", "scantrace-gateway"),
        ("StatefulSet", "scantrace-worker"),
        ("Deployment", "scantrace-sink"),
        ("Deployment", "scantrace-api"),
        ("Service", "scantrace-api"),
        ("ConfigMap", "scantrace-env"),
        ("Secret", "scantrace-secrets"),
    } <= kinds


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_document_has_kind_api_version_and_name(path: Path) -> None:
    docs = load_yaml_all(path)
    assert docs, f"{path.name} is empty"
    for doc in docs:
        assert isinstance(doc, dict)
        assert doc.get("apiVersion") and doc.get("kind"), path.name
        assert doc.get("metadata", {}).get("name"), path.name
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "scantrace", doc["metadata"]["name"]


def test_selectors_match_pod_labels() -> None:
    for w in workloads():
        labels = w["spec"]["template"]["metadata"]["labels"]
        if w["kind"] != "Job":
            selector = w["spec"]["selector"]["matchLabels"]
            assert selector.items() <= labels.items(), w["metadata"]["name"]
    pods = {w["metadata"]["name"]: w for w in workloads()}
    for name, svc in by_kind("Service").items():
        matches = [
            w
            for w in pods.values()
            if svc["spec"]["selector"].items()
            <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matches) == 1, f"Service {name} selects {len(matches)} workloads"
        ports = named_ports(matches[0])
        for port in svc["spec"]["ports"]:
            target = port["targetPort"]
            assert target in ports or target in ports.values(), (name, target)


def test_references_exist() -> None:
    configmaps, secrets = by_kind("ConfigMap"), by_kind("Secret")
    deployments = by_kind("Deployment")
    for w in workloads():
        for c in containers(w):
            for ref in c.get("envFrom", []):
                if "configMapRef" in ref:
                    assert ref["configMapRef"]["name"] in configmaps
                if "secretRef" in ref:
                    assert ref["secretRef"]["name"] in secrets
            for probe in ("readinessProbe", "livenessProbe"):
                if probe in c:
                    port = c[probe]["httpGet"]["port"]
                    assert port in named_ports(w) or port in named_ports(w).values()
    for hpa in by_kind("HorizontalPodAutoscaler").values():
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment" and ref["name"] in deployments
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_every_component_runs_the_one_image_as_non_root() -> None:
    images = {c["image"] for w in workloads() for c in containers(w)}
    assert len(images) == 1, images
    for w in workloads():
        pod = w["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, w["metadata"]["name"]
        for c in containers(w):
            assert c["securityContext"]["allowPrivilegeEscalation"] is False


def test_worker_replicas_do_not_exceed_partitions() -> None:
    env = by_kind("ConfigMap")["scantrace-env"]["data"]
    partitions = int(env["SCANTRACE_KAFKA__PARTITIONS"])
    worker = by_kind("StatefulSet")["scantrace-worker"]
    assert worker["spec"]["replicas"] <= partitions
    assert by_kind("Deployment")["scantrace-sink"]["spec"]["replicas"] <= partitions
    text = (K8S / "worker.yaml").read_text(encoding="utf-8")
    assert "REPLICAS <= PARTITIONS" in text, "the note on replicas and partitions"


def test_ports_and_commands_agree_with_compose() -> None:
    compose = compose_raw()["services"]
    configmap = by_kind("ConfigMap")["scantrace-env"]["data"]
    expected_ports = {"gateway": 8080, "api": 8090}
    expected_ports["worker"] = int(flag_value(compose["worker"]["command"], "--metrics-port") or 0)
    expected_ports["sink"] = int(flag_value(compose["sink"]["command"], "--metrics-port") or 0)
    assert int(configmap["SCANTRACE_GATEWAY__PORT"]) == expected_ports["gateway"]
    assert int(configmap["SCANTRACE_API__PORT"]) == expected_ports["api"]
    for name, port in expected_ports.items():
        (w,) = [x for x in workloads() if x["metadata"]["name"] == f"scantrace-{name}"]
        (c,) = containers(w)
        assert c["args"][0] == name
        assert port in named_ports(w).values(), name
        annotations = w["spec"]["template"]["metadata"]["annotations"]
        assert int(annotations["prometheus.io/port"]) == port, name
        if name in ("worker", "sink"):
            assert c["args"] == compose[name]["command"], name


def test_the_init_job_runs_the_cli_as_compose_does(monkeypatch: pytest.MonkeyPatch) -> None:
    (job,) = by_kind("Job").values()
    (c,) = containers(job)
    assert c["command"] == ["sh", "-ec"]
    (script,) = c["args"]
    (compose_script,) = compose_raw()["services"]["init"]["command"]
    assert init_commands(script) == init_commands(compose_script)
    assert init_commands(script) == [["topics", "create"], ["db", "migrate"]]
    # `topics create` takes the ConfigMap's partitions and replication factor.
    env = by_kind("ConfigMap")["scantrace-env"]["data"]
    params = cli_params(["topics", "create"], env, monkeypatch)
    assert params["partitions"] == int(env["SCANTRACE_KAFKA__PARTITIONS"]) == 12
    assert params["replication_factor"] == int(env["SCANTRACE_KAFKA__REPLICATION_FACTOR"]) == 3
    refs = {r["configMapRef"]["name"] for r in c["envFrom"] if "configMapRef" in r}
    assert refs == {"scantrace-env"}


def test_the_report_runs_every_monday_at_seven_vietnam_time() -> None:
    (cron,) = by_kind("CronJob").values()
    assert cron["spec"]["schedule"] == "0 7 * * 1"
    assert cron["spec"]["timeZone"] == "Asia/Ho_Chi_Minh"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    (c,) = pod["containers"]
    assert c["args"][:4] == ["report", "send", "--week", "last"]
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    configmaps, secrets = by_kind("ConfigMap"), by_kind("Secret")
    for ref in c["envFrom"]:
        if "configMapRef" in ref:
            assert ref["configMapRef"]["name"] in configmaps
        else:
            assert ref["secretRef"]["name"] in secrets
    lists = next(v for v in pod["volumes"] if v["name"] == "lists")["configMap"]
    data = configmaps[lists["name"]]["data"]
    for item in lists["items"]:
        assert item["key"] in data
        mount = next(m for m in c["volumeMounts"] if m["name"] == "lists")["mountPath"]
        assert f"{mount}/{item['path']}" in c["args"]
    assert data["recipients.csv"].startswith("email,edition\n")
    assert data["headcount.csv"].startswith("agency,headcount\n")
