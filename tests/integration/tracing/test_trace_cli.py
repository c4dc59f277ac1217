"""`scantrace trace`, `trace-premises` and `audit` against the real ClickHouse: formats,
exit codes, and the audit row with the OS user (from the user id, whatever USER and
LOGNAME say), for answered and refused questions and for reading the log."""

from __future__ import annotations

import csv
import io
import json
import os
import pwd
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from tracegen import insert_scans

from scantrace.cli import main
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
from tracing.audit import read_audit
from tracing.models import iso_utc
from tracing.runner import ClickHouseRunner
from tracing.trace import parse_time

MIN = 60_000


@pytest.fixture
def env(clickhouse_settings: ClickHouseSettings, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    now = int(datetime.now(tz=UTC).timestamp() * 1000)
    t0 = now - 2 * 86_400_000
    rows = [
        ("e1", "CASE", "NT-7", t0),
        ("e2", "-2+3", "NT-7", t0 + 15 * MIN),
        ("e3", "FAR", "NT-7", t0 + 3 * 60 * MIN),
    ]
    place = ("@Quán cơm", "restaurant", "Ninh Hải", "w", "a", 60)
    insert_scans(
        clickhouse_settings,
        [(e, p, prem, t, "checkin") for e, p, prem, t in rows],
        {"NT-7": place},
    )
    host, port, db, _, _ = clickhouse_settings.parts()
    monkeypatch.setenv("SCANTRACE_CLICKHOUSE__URL", f"clickhouse://{host}:{port}/{db}")
    return {"from": iso_utc(t0 - 60 * MIN), "to": iso_utc(t0 + 6 * 60 * MIN)}


def _audit(settings: ClickHouseSettings) -> list[dict[str, object]]:
    runner = ClickHouseRunner(settings)
    try:
        return read_audit(runner, 0)
    finally:
        runner.close()


def test_trace_formats_and_audit(
    env: dict[str, str],
    clickhouse_settings: ClickHouseSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("USER", "LOGNAME", "LNAME", "USERNAME"):
        monkeypatch.setenv(name, "mallory")
    cli = CliRunner()
    period = ["--from", env["from"], "--to", env["to"]]
    r = cli.invoke(main, ["trace", "CASE", *period, "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert [c["person_id"] for c in doc["contacts"]] == ["-2+3"]
    assert doc["rule"] == {
        "name": "scan-window",
        "window_min": 60,
        "buffer_min": 0,
        "min_overlap_min": 0,
        "merge_gap_min": 30,
        "max_visit_min": 1440,
        "depth": 1,
        "cap_at_next_scan": False,
    }
    r = cli.invoke(main, ["trace", "CASE", *period])
    assert r.exit_code == 0 and "Asia/Ho_Chi_Minh" in r.output
    out = tmp_path / "contacts.csv"
    r = cli.invoke(
        main,
        ["trace", "CASE", *period, "--rule", "overlap", "--min-overlap-min", "15", "--depth",
         "2", "--format", "csv", "--out", str(out)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [(x["person_id"], x["premises_name"]) for x in rows] == [("'-2+3", "'@Quán cơm")]
    r = cli.invoke(main, ["trace-premises", "NT-7", *period, "--format", "json"])
    assert r.exit_code == 0
    assert {v["person_id"] for v in json.loads(r.output)["visitors"]} == {"CASE", "-2+3", "FAR"}
    # refused: from > to, a period longer than the retention
    r = cli.invoke(main, ["trace", "CASE", "--from", env["to"], "--to", env["from"]])
    assert r.exit_code == 2 and "after" in r.output
    r = cli.invoke(
        main, ["trace", "CASE", "--from", "2026-01-01T00:00:00Z", "--to", "2026-03-01T00:00:00Z"]
    )
    assert r.exit_code == 2 and "retention" in r.output
    rows_ = _audit(clickhouse_settings)
    assert [(a["action"], a["ok"]) for a in rows_] == [
        ("trace", True),
        ("trace", True),
        ("trace", True),
        ("trace_premises", True),
        ("trace", False),
        ("trace", False),
    ]
    me = f"{pwd.getpwuid(os.getuid()).pw_name} (uid {os.getuid()})"
    assert {a["actor"] for a in rows_} == {me}
    assert {a["channel"] for a in rows_} == {"cli"}
    assert [a["rows"] for a in rows_[:4]] == [1, 1, 1, 3]
    r = cli.invoke(main, ["audit", "--since", "2020-01-01T00:00:00Z", "--json"])
    assert r.exit_code == 0
    assert len(r.output.splitlines()) == 6
    read = _audit(clickhouse_settings)[-1]  # reading the log left a row of its own
    assert (read["action"], read["actor"], read["role"], read["rows"]) == (
        "read_audit",
        me,
        "auditor",
        6,
    )


def test_cap_at_next_scan_flag(
    env: dict[str, str], clickhouse_settings: ClickHouseSettings
) -> None:
    """Under overlap the case's visit at NT-7 ends where it scans next at NT-8, 10 minutes
    in, before "-2+3" arrives (15 minutes in); `--no-cap-at-next-scan` keeps the dwell
    time's hour, and "-2+3" is a contact. Each answer echoes the setting."""
    t0 = parse_time(env["from"], "from") + 60 * MIN
    insert_scans(clickhouse_settings, [("e9", "CASE", "NT-8", t0 + 10 * MIN, "checkin")])
    cli = CliRunner()
    period = ["--from", env["from"], "--to", env["to"], "--rule", "overlap", "--format", "json"]
    capped = json.loads(cli.invoke(main, ["trace", "CASE", *period]).output)
    assert capped["rule"]["cap_at_next_scan"] is True
    assert capped["contacts"] == []
    first = capped["visits"][0]
    assert (first["premises_id"], first["time_to"]) == ("NT-7", iso_utc(t0 + 10 * MIN))
    r = cli.invoke(main, ["trace", "CASE", *period, "--no-cap-at-next-scan"])
    assert r.exit_code == 0, r.output
    uncapped = json.loads(r.output)
    assert uncapped["rule"]["cap_at_next_scan"] is False
    assert [c["person_id"] for c in uncapped["contacts"]] == ["-2+3"]


def test_bad_input_exits_2(env: dict[str, str]) -> None:
    cli = CliRunner()
    r = cli.invoke(main, ["trace", "CASE", "--from", "tomorrow", "--to", env["to"]])
    assert r.exit_code == 2 and "from" in r.output
    r = cli.invoke(
        main, ["trace", "CASE", "--from", env["from"], "--to", env["to"], "--window-min", "-1"]
    )
    assert r.exit_code == 2 and "window_min" in r.output


def test_a_query_stopped_at_its_limit_is_one_error_line(
    env: dict[str, str], clickhouse_settings: ClickHouseSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300,000 visitors at one premises, the CLI's queries limited to 8 MiB: reading them
    needs more even with the grouping spilled to disk (at 64 MiB a spilled grouping
    sometimes finished under the limit); one `error:` line naming the limit, exit 1,
    audited."""
    at = (int(datetime.now(tz=UTC).timestamp()) - 86_400) * 1000
    client = connect(clickhouse_settings)
    try:
        client.execute(
            "INSERT INTO scans (event_id, person_id, premises_id, scanned_at, kind, gateway_id,"
            " processed_at, premises_name, category, district, ward, agency, dwell_minutes)"
            " SELECT concat('b', toString(number)), concat('P', toString(number)), 'BIG',"
            f" toDateTime64({at // 1000} + number % 3600, 3, 'UTC'), 'checkin', 'gw', now64(3),"
            " 'Chợ lớn', 'market', 'd', 'w', 'a', 45 FROM numbers(300000)"
        )
    finally:
        client.disconnect()
    monkeypatch.setenv("SCANTRACE_CLI__MAX_MEMORY_BYTES", str(8 * 2**20))
    period = ["--from", iso_utc(at - 3_600_000), "--to", iso_utc(at + 7_200_000)]
    r = CliRunner().invoke(main, ["trace-premises", "BIG", *period, "--format", "csv"])
    assert r.exit_code == 1
    (line,) = r.output.splitlines()
    assert line.startswith("error: the query was stopped at its memory limit of 8 MiB")
    (row,) = _audit(clickhouse_settings)
    assert not row["ok"] and "memory limit of 8 MiB" in str(row["error"])


def test_times_in_every_form(env: dict[str, str]) -> None:
    """`--from`/`--to`/`--since` as ISO 8601 with an offset, as local dates and date-times
    without one (Asia/Ho_Chi_Minh), and relative to now: the same answers. The scans are
    two days old (the `env` fixture)."""
    zone = ZoneInfo("Asia/Ho_Chi_Minh")
    t0 = parse_time(env["from"], "from") + 60 * MIN
    local = datetime.fromtimestamp(t0 / 1000, tz=zone)
    periods = {
        "iso": [env["from"], env["to"]],
        "dates": [f"{local:%Y-%m-%d}", f"{local:%Y-%m-%d}"],
        "local times": [f"{local - timedelta(hours=1):%Y-%m-%dT%H:%M}",
                        f"{local + timedelta(hours=6):%Y-%m-%d %H:%M:%S}"],
        "relative": ["-3d", "now"],
        "days": ["-3d", "today"],
    }  # fmt: skip
    cli = CliRunner()
    for form, (frm, to) in periods.items():
        period = ["--from", frm, "--to", to, "--format", "json"]
        r = cli.invoke(main, ["trace", "CASE", *period])
        assert r.exit_code == 0, (form, r.output)
        assert [c["person_id"] for c in json.loads(r.stdout)["contacts"]] == ["-2+3"], form
        r = cli.invoke(main, ["trace-premises", "NT-7", *period])
        assert r.exit_code == 0, (form, r.output)
        visitors = {v["person_id"] for v in json.loads(r.stdout)["visitors"]}
        assert visitors == {"CASE", "-2+3", "FAR"}, form
    for since in ("2020-01-02T00:00:00+07:00", "2020-01-02", "2020-01-02 07:00", "-1d"):
        r = cli.invoke(main, ["audit", "--since", since, "--json"])
        assert r.exit_code == 0, (since, r.output)
        assert len(r.stdout.splitlines()) >= 2 * len(periods), since


def test_no_scans_in_the_period_is_said_and_exit_0(env: dict[str, str]) -> None:
    r = CliRunner().invoke(main, ["trace", "NOBODY", "--from", "-3d", "--to", "now"])
    assert r.exit_code == 0, r.output
    assert "NOBODY has no scans from" in r.stderr and "nobody to trace" in r.stderr
    r = CliRunner().invoke(
        main, ["trace-premises", "NT-NONE", "--from", "-3d", "--to", "now", "--out", "-"]
    )
    assert r.exit_code == 0 and "nobody scanned at NT-NONE" in r.stderr
