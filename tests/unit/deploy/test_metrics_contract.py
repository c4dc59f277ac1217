"""The metric names the dashboards and alerts depend on are listed in deploy/metrics.txt.

deploy/metrics.txt is the contract with the components: one name per line, exactly the
series names PromQL reads (`_total` counters, `_bucket` histograms). A test of each
component can check it exports them; this one checks the list is complete and exact.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from deploy_testkit import (
    DEPLOY,
    METRIC_NAME,
    PROMETHEUS_DIR,
    load_yaml,
    metrics_listed,
    run_promtool,
)

DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
COMPONENT_PREFIX = re.compile(r"scantrace_(gateway|worker|sink|api|run)_[a-z0-9_]+")
# Principle 7: never a person or premises id as a label.
FORBIDDEN_LABELS = ("person_id", "premises_id", "event_id", "gateway_id")


def walk_panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for p in panels:
        out.append(p)
        out.extend(walk_panels(p.get("panels") or []))
    return out


def dashboard_exprs(path: Path) -> list[str]:
    dash = json.loads(path.read_text(encoding="utf-8"))
    return [
        t["expr"]
        for p in walk_panels(dash["panels"])
        for t in p.get("targets") or []
        if "expr" in t
    ]


def alert_exprs() -> list[str]:
    rules = load_yaml(PROMETHEUS_DIR / "alerts.yml")
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def all_exprs() -> list[str]:
    return [e for d in DASHBOARDS for e in dashboard_exprs(d)] + alert_exprs()


def test_there_is_a_dashboard() -> None:
    assert [d.name for d in DASHBOARDS] == ["scantrace.json"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_valid_json_with_unique_panel_ids(path: Path) -> None:
    dash = json.loads(path.read_text(encoding="utf-8"))
    assert dash["uid"] and dash["title"]
    panels = walk_panels(dash["panels"])
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in panels:
        for t in p.get("targets") or []:
            assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            assert t["expr"].strip(), p["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_picks_its_datasource_from_a_variable(path: Path) -> None:
    """Any Prometheus the viewer picks (a cluster's own, not only compose's); by default
    the provisioned one."""
    dash = json.loads(path.read_text(encoding="utf-8"))
    (var,) = [v for v in dash["templating"]["list"] if v["name"] == "datasource"]
    assert (var["type"], var["query"]) == ("datasource", "prometheus")
    provisioned = load_yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")
    assert var["current"]["value"] == provisioned["datasources"][0]["uid"]
    for p in walk_panels(dash["panels"]):
        if "datasource" in p:
            assert p["datasource"]["uid"] == "${datasource}", p["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_has_one_unit(path: Path) -> None:
    """One unit per axis: a panel's series share the unit of its defaults; no override
    puts a second one on the same axis."""
    dash = json.loads(path.read_text(encoding="utf-8"))
    for p in walk_panels(dash["panels"]):
        if not p.get("targets"):
            continue
        unit = p["fieldConfig"]["defaults"].get("unit")
        assert unit, p["title"]
        for override in p["fieldConfig"].get("overrides") or []:
            ids = {prop["id"] for prop in override.get("properties") or []}
            assert "unit" not in ids, p["title"]
        # A panel of durations shows durations only, in seconds.
        seconds = ["_seconds" in t["expr"] for t in p["targets"]]
        if any(seconds):
            assert all(seconds) and unit == "s", p["title"]


def test_dashboard_covers_the_pipeline() -> None:
    text = " ".join(e for d in DASHBOARDS for e in dashboard_exprs(d))
    for needle in ("consumer_lag", "dead_letters_total", "district", "_seconds_bucket"):
        assert needle in text, needle
    titles = " ".join(
        p["title"].lower()
        for d in DASHBOARDS
        for p in walk_panels(json.loads(d.read_text(encoding="utf-8"))["panels"])
    )
    for needle in ("throughput per stage", "lag", "latency", "dead letters by reason", "district"):
        assert needle in titles, needle


def test_every_metric_in_dashboards_and_alerts_is_listed() -> None:
    used = {m for e in all_exprs() for m in METRIC_NAME.findall(e)}
    missing = used - set(metrics_listed())
    assert not missing, f"add to deploy/metrics.txt: {sorted(missing)}"


def test_metrics_list_is_exact_sorted_and_well_named() -> None:
    names = metrics_listed()
    assert names == sorted(set(names)), "one name per line, sorted, no duplicates"
    used = {m for e in all_exprs() for m in METRIC_NAME.findall(e)}
    assert set(names) - used == set(), "listed but used by no dashboard or alert"
    for name in names:
        assert COMPONENT_PREFIX.fullmatch(name), name
        if name.endswith("_bucket"):
            assert re.search(r"_(seconds|bytes|scans)_bucket$", name), f"{name}: unit in name"


def test_no_id_is_used_as_a_label() -> None:
    for expr in all_exprs():
        for label in FORBIDDEN_LABELS:
            assert label not in expr, (label, expr)


def test_dashboard_queries_parse_as_promql(tmp_path: Path) -> None:
    """Each expression, with Grafana's variables filled in, as a recording rule: promtool
    parses it with Prometheus' own PromQL parser."""
    exprs = [
        e.replace("$__rate_interval", "1m").replace("$__range", "1h").replace("$__interval", "1m")
        for d in DASHBOARDS
        for e in dashboard_exprs(d)
    ]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:expr_{i}", "expr": e} for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(json.dumps(rules), encoding="utf-8")
    result = run_promtool("check", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
