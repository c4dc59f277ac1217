"""deploy/alertmanager and deploy/runbooks: the real amtool checks the config and its
routes; every alert links a runbook that exists; inhibition names real alerts; Prometheus
and compose point at the Alertmanager."""

from __future__ import annotations

import re

import pytest
from deploy_testkit import (
    ALERTMANAGER_DIR,
    PROMETHEUS_DIR,
    REPO,
    RUNBOOKS_DIR,
    alert_rules,
    compose_raw,
    container_ports,
    load_yaml,
    run_amtool,
    split_volume,
)

CONFIG = ALERTMANAGER_DIR / "alertmanager.yml"
RUNBOOK_SECTIONS = ("## What it means", "## How to check", "## What to do")


def alert_names() -> set[str]:
    return {r["alert"] for r in alert_rules()}


def test_amtool_check_config() -> None:
    result = run_amtool("check-config", CONFIG.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout, "scantrace.tmpl is loaded"


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["severity=critical", "alertname=ScantraceComponentDown"], "on-call"),
        (["severity=warning", "alertname=ScantraceRollupStale"], "operators-email"),
        (["alertname=SomethingUnlabelled"], "operators-email"),
    ],
)
def test_routes_by_severity(labels: list[str], receivers: str) -> None:
    result = run_amtool("config", "routes", "test", f"--config.file={CONFIG.name}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == [receivers]


def test_critical_goes_to_the_webhook_and_to_email_warning_to_email_only() -> None:
    receivers = {r["name"]: r for r in load_yaml(CONFIG)["receivers"]}
    assert receivers["on-call"]["webhook_configs"] and receivers["on-call"]["email_configs"]
    assert "webhook_configs" not in receivers["operators-email"]
    assert receivers["operators-email"]["email_configs"]
    # Secrets come from files, never inline.
    text = CONFIG.read_text(encoding="utf-8")
    assert "smtp_auth_password:" not in text and "credentials:" not in text


def test_the_email_template_renders() -> None:
    result = run_amtool(
        "template",
        "render",
        "--template.glob=scantrace.tmpl",
        '--template.text={{ template "scantrace.email.subject" . }}|'
        '{{ template "scantrace.email.text" . }}',
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Runbook: https://" in result.stdout


def test_inhibition_rules_name_existing_alerts_and_severities() -> None:
    known = alert_names()
    for rule in load_yaml(CONFIG)["inhibit_rules"]:
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            m = re.fullmatch(r'(\w+)(=~|=)"([^"]*)"', matcher)
            assert m, matcher
            name, op, value = m.groups()
            if name == "alertname":
                names = set(value.split("|")) if op == "=~" else {value}
                assert names <= known, names - known
            elif name == "severity":
                assert value in ("critical", "warning")
            else:
                assert name == "job", matcher
    down = [r for r in load_yaml(CONFIG)["inhibit_rules"] if "equal" in r]
    assert any(
        "ScantraceComponentDown" in " ".join(r["source_matchers"]) and r["equal"] == ["job"]
        for r in down
    ), "a component down inhibits its own warnings"


def test_every_alert_links_its_runbook() -> None:
    for rule in alert_rules():
        url = rule["annotations"]["runbook_url"]
        assert url == f"deploy/runbooks/{rule['alert']}.md", rule["alert"]
        text = (REPO / url).read_text(encoding="utf-8")
        assert text.startswith(f"# {rule['alert']} ({rule['labels']['severity']})"), url
        for section in RUNBOOK_SECTIONS:
            assert section in text, (url, section)


def test_every_runbook_belongs_to_an_alert_and_the_index_lists_them() -> None:
    pages = {p.stem for p in RUNBOOKS_DIR.glob("*.md")} - {"README"}
    assert pages == alert_names()
    index = (RUNBOOKS_DIR / "README.md").read_text(encoding="utf-8")
    for rule in alert_rules():
        name, severity = rule["alert"], rule["labels"]["severity"]
        assert f"| {name} | {severity} | [{name}.md]({name}.md) |" in index, name


def test_prometheus_sends_alerts_to_the_compose_alertmanager() -> None:
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    (am,) = config["alerting"]["alertmanagers"]
    (target,) = [t for sc in am["static_configs"] for t in sc["targets"]]
    host, port = target.rsplit(":", 1)
    service = compose_raw()["services"][host]
    assert int(port) in container_ports(service)
    flags = " ".join(service["command"])
    assert f"--web.listen-address=:{port}" in flags
    mounts = {split_volume(v)[2]: split_volume(v)[1] for v in service["volumes"]}
    config_flag = next(a for a in service["command"] if a.startswith("--config.file="))
    mounted = (REPO / mounts["/etc/alertmanager"]).resolve()
    assert mounted / config_flag.rsplit("/", 1)[1] == CONFIG
    declared = set(compose_raw()["secrets"])
    assert set(service["secrets"]) <= declared
    for name in service["secrets"]:
        assert f"/run/secrets/{name}" in CONFIG.read_text(encoding="utf-8"), name
