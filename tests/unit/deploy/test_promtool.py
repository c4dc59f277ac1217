"""deploy/prometheus through the real promtool: config, rules, and the rules' unit tests.

Skipped (with the reason) only where promtool is missing and CI is not set; in CI a
missing promtool fails (`.ci/run` installs Debian's `prometheus` package).
"""

from __future__ import annotations

from deploy_testkit import PROMETHEUS_DIR, load_yaml, run_promtool


def test_promtool_check_config() -> None:
    result = run_promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rules() -> None:
    result = run_promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules() -> None:
    result = run_promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_test_case() -> None:
    rules = load_yaml(PROMETHEUS_DIR / "alerts.yml")
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert alerts, "no alert rules"
    cases = load_yaml(PROMETHEUS_DIR / "alerts_test.yml")
    fires: set[str] = set()
    quiet: set[str] = set()
    for test in cases["tests"]:
        for check in test.get("alert_rule_test") or []:
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert alerts - fires == set(), "alerts without a test case that fires them"
    assert alerts - quiet == set(), "alerts without a test case where they stay quiet"
    assert (fires | quiet) - alerts == set(), "test cases for alerts that do not exist"


def test_every_alert_has_a_severity_and_a_summary() -> None:
    rules = load_yaml(PROMETHEUS_DIR / "alerts.yml")
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
            assert rule["alert"].startswith("Scantrace"), rule["alert"]
