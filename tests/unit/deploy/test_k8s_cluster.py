"""deploy/k8s for a real cluster: every manifest valid against the Kubernetes OpenAPI
schemas (kubernetes-validate, strict: an unknown field is an error), and the references
between them right: Services, Ingresses, NetworkPolicies and the ServiceMonitor select
what exists, Secrets and ConfigMaps referenced exist, pods are hardened, and the worker's
and sink's liveness reflects their loop.

The ServiceMonitor is a CRD (Prometheus Operator), not in the core schemas: it is left
out of the schema check by kind, and its shape checked here instead.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
from deploy_testkit import PROMETHEUS_DIR, load_yaml_all
from test_k8s import FILES, by_kind, containers, named_ports, workloads

# The oldest Kubernetes minor the manifests target, and the newest the validator knows.
K8S_VERSIONS = ("1.30", kubernetes_validate.latest_version())
CRD_KINDS = {"ServiceMonitor": "monitoring.coreos.com/v1"}
# Which outside services each component talks to (networkpolicy.yaml's header).
NEEDS = {
    "gateway": {"kafka"},
    "worker": {"kafka"},
    "sink": {"kafka", "clickhouse"},
    "api": {"clickhouse"},
    "init": {"kafka", "clickhouse"},
}


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"]["labels"])


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against a set of labels."""
    if not (selector.get("matchLabels") or {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def component(workload: dict[str, Any]) -> str:
    return pod_labels(workload)["app.kubernetes.io/component"]


def selected(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [w for w in workloads() if selects(policy["spec"]["podSelector"], pod_labels(w))]


def outside(env: dict[str, str]) -> dict[str, tuple[str, int]]:
    """namespace and port of Kafka and ClickHouse, from the ConfigMap's addresses
    (`name.namespace.svc:port`)."""
    kafka_host, kafka_port = env["SCANTRACE_KAFKA__BOOTSTRAP"].split(",")[0].rsplit(":", 1)
    ch = urlsplit(env["SCANTRACE_CLICKHOUSE__URL"])
    assert ch.hostname is not None and ch.port is not None
    return {
        "kafka": (kafka_host.split(".")[1], int(kafka_port)),
        "clickhouse": (ch.hostname.split(".")[1], ch.port),
    }


def allowed_egress(workload: dict[str, Any]) -> set[tuple[str, int]]:
    """(namespace, port) the NetworkPolicies let this workload's pods reach."""
    out: set[tuple[str, int]] = set()
    for policy in by_kind("NetworkPolicy").values():
        if workload not in selected(policy):
            continue
        for rule in policy["spec"].get("egress") or []:
            for peer in rule["to"]:
                ns = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                out.update((ns, p["port"]) for p in rule["ports"])
    return out


def allowed_ingress(workload: dict[str, Any]) -> set[tuple[str, int]]:
    """(namespace, port) that may reach this workload's pods on a port they listen on."""
    listening = set(named_ports(workload).values())
    out: set[tuple[str, int]] = set()
    for policy in by_kind("NetworkPolicy").values():
        if workload not in selected(policy):
            continue
        for rule in policy["spec"].get("ingress") or []:
            for peer in rule["from"]:
                ns = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                out.update((ns, p["port"]) for p in rule["ports"] if p["port"] in listening)
    return out


# -- schemas --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_manifests_are_valid_against_the_kubernetes_schemas(path: Any, version: str) -> None:
    for doc in load_yaml_all(path):
        if doc["kind"] in CRD_KINDS:
            assert doc["apiVersion"] == CRD_KINDS[doc["kind"]]
            continue  # not in the core schemas: test_service_monitor_* below
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name} {doc['kind']}/{doc['metadata']['name']}: {exc.message}")


def test_the_schema_check_rejects_an_unknown_field() -> None:
    (gateway,) = [w for w in workloads() if w["metadata"]["name"] == "scantrace-gateway"]
    broken = {**gateway, "spec": {**gateway["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)


# -- references -----------------------------------------------------------------------------


def test_every_secret_and_configmap_referenced_exists() -> None:
    configmaps, secrets = set(by_kind("ConfigMap")), set(by_kind("Secret"))
    for w in workloads():
        pod = w["spec"]["template"]["spec"]
        for c in containers(w):
            for ref in c.get("envFrom", []):
                if "configMapRef" in ref:
                    assert ref["configMapRef"]["name"] in configmaps
                if "secretRef" in ref:
                    assert ref["secretRef"]["name"] in secrets
            for env in c.get("env", []):
                source = env.get("valueFrom") or {}
                if "configMapKeyRef" in source:
                    ref = source["configMapKeyRef"]
                    assert ref["key"] in by_kind("ConfigMap")[ref["name"]]["data"], ref
                if "secretKeyRef" in source:
                    ref = source["secretKeyRef"]
                    assert ref["key"] in by_kind("Secret")[ref["name"]]["stringData"], ref
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets


def test_every_service_selects_one_workload_with_its_ports() -> None:
    for name, svc in by_kind("Service").items():
        matches = [
            w
            for w in workloads()
            if selects({"matchLabels": svc["spec"]["selector"]}, pod_labels(w))
        ]
        assert len(matches) == 1, f"Service {name} selects {len(matches)} workloads"
        ports = named_ports(matches[0])
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in ports or port["targetPort"] in ports.values(), name


def test_ingress_backends_are_services_and_ports_that_exist() -> None:
    services = by_kind("Service")
    ingresses = by_kind("Ingress")
    assert {"scantrace-gateway", "scantrace-api"} <= {
        p["backend"]["service"]["name"]
        for ing in ingresses.values()
        for rule in ing["spec"]["rules"]
        for p in rule["http"]["paths"]
    }, "the gateway and the tracer API are reachable from outside"
    for name, ing in ingresses.items():
        hosts = {rule["host"] for rule in ing["spec"]["rules"]}
        tls_hosts = {h for t in ing["spec"]["tls"] for h in t["hosts"]}
        assert hosts <= tls_hosts, f"{name}: every host served over TLS"
        for tls in ing["spec"]["tls"]:
            # cert-manager creates the Secret from the annotation; otherwise it must exist.
            made = "cert-manager.io/cluster-issuer" in ing["metadata"].get("annotations", {})
            assert made or tls["secretName"] in by_kind("Secret"), (name, tls["secretName"])
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                svc = services[backend["name"]]
                port = backend["port"]
                names = {p["name"] for p in svc["spec"]["ports"]}
                numbers = {p["port"] for p in svc["spec"]["ports"]}
                assert port.get("name") in names or port.get("number") in numbers, (name, port)


def test_network_policies_deny_by_default_and_select_existing_pods() -> None:
    policies = by_kind("NetworkPolicy")
    deny = [
        p
        for p in policies.values()
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny, "a default-deny policy for the whole namespace"
    for name, policy in policies.items():
        if policy["spec"]["podSelector"] != {}:
            assert selected(policy), f"NetworkPolicy {name} selects no pod"


def test_each_component_reaches_exactly_what_it_needs() -> None:
    env = by_kind("ConfigMap")["scantrace-env"]["data"]
    where = outside(env)
    for w in workloads():
        expected = {where[service] for service in NEEDS[component(w)]}
        reach = allowed_egress(w) - {("kube-system", 53)}
        assert reach == expected, (component(w), reach)
        assert ("kube-system", 53) in allowed_egress(w), f"{component(w)}: DNS"


def test_only_the_ingress_controller_and_prometheus_reach_the_pods() -> None:
    for w in workloads():
        annotations = w["spec"]["template"]["metadata"].get("annotations") or {}
        expected = set()
        if "prometheus.io/port" in annotations:
            expected.add(("monitoring", int(annotations["prometheus.io/port"])))
        if component(w) in ("gateway", "api"):
            (http,) = named_ports(w).values()
            expected.add(("ingress-nginx", http))
        assert allowed_ingress(w) == expected, (component(w), allowed_ingress(w))


def test_ingress_controller_namespace_is_the_one_the_ingresses_use() -> None:
    classes = {ing["spec"]["ingressClassName"] for ing in by_kind("Ingress").values()}
    assert classes == {"nginx"}, "networkpolicy.yaml admits ingress-nginx's namespace"


# -- the ServiceMonitor ---------------------------------------------------------------------


def test_service_monitor_scrapes_every_component_under_its_job_name() -> None:
    (monitor,) = by_kind("ServiceMonitor").values()
    spec = monitor["spec"]
    assert set(spec) <= {"jobLabel", "selector", "endpoints", "namespaceSelector"}
    services = [
        s for s in by_kind("Service").values() if selects(spec["selector"], s["metadata"]["labels"])
    ]
    ports = {e["port"] for e in spec["endpoints"]}
    for e in spec["endpoints"]:
        assert set(e) <= {"port", "path", "interval", "scrapeTimeout"}, e
        assert e["path"] == "/metrics"
        assert re.fullmatch(r"\d+s", e["interval"]), e
    jobs = set()
    for svc in services:
        scraped = ports & {p["name"] for p in svc["spec"]["ports"]}
        assert len(scraped) == 1, (svc["metadata"]["name"], scraped)
        jobs.add(svc["metadata"]["labels"][spec["jobLabel"]])
    # The job names the alerts and the dashboard use (ScantraceComponentAbsent names each).
    alerts = (PROMETHEUS_DIR / "alerts.yml").read_text(encoding="utf-8")
    expected = set(re.findall(r'absent\(up\{job="(\w+)"\}\)', alerts))
    assert jobs == expected == {"gateway", "worker", "sink", "api"}
    # And the port scraped is the one each workload announces for its metrics.
    for svc in services:
        (w,) = [
            w
            for w in workloads()
            if selects({"matchLabels": svc["spec"]["selector"]}, pod_labels(w))
        ]
        (port,) = [p for p in svc["spec"]["ports"] if p["name"] in ports]
        announced = int(w["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"])
        assert named_ports(w)[port["targetPort"]] == announced


# -- pods -----------------------------------------------------------------------------------


def test_pods_are_hardened() -> None:
    for w in workloads():
        name = w["metadata"]["name"]
        pod = w["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for c in containers(w):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name


@pytest.mark.parametrize("name", ["scantrace-worker", "scantrace-sink"])
def test_worker_and_sink_liveness_is_their_loop_heartbeat(name: str) -> None:
    (w,) = [w for w in workloads() if w["metadata"]["name"] == name]
    (c,) = containers(w)
    for probe in ("startupProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, probe
    # A stall is noticed within the stall time plus the probe's failures, not at once.
    live = c["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] >= 30
    assert c["readinessProbe"]["httpGet"]["path"] == "/metrics"
