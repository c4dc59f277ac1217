"""Least privilege on the real ClickHouse: a local server started the way `services up`
starts it (users.xml with one user per role, random passwords, migrations applied as the
migrator), each component's user doing its job and refused everything else."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import store_queries as queries
from click.testing import CliRunner
from clickhouse_driver import errors
from pydantic import SecretStr
from test_sink import Running, make_scans, produce, scan_records, sink_settings, wait_for

from ingest.contract import now_ms
from ingest.deadletter import DeadLetter, encode_dead_letter
from ingest.kafka_settings import KafkaSettings
from ingest.premises import Premises, encode_premises
from scantrace.services import manager
from scantrace.services.manager import Endpoints
from scantrace.settings import ServicesSettings
from sinks.batch import SCAN_COLUMNS
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
from sinks.grants import ROLES, render_users_sql, username
from sinks.rollup import DAY_MS, local_day
from sinks.writer import ClickHouseWriter
from tracing.api.server import serve
from tracing.audit import Actor, AuditWriter, read_audit
from tracing.models import iso_utc
from tracing.rules import Rule
from tracing.runner import ClickHouseRunner
from tracing.settings import ApiOptions, TracerSettings
from tracing.trace import Tracer

NOT_ENOUGH_PRIVILEGES = 497
AUTHENTICATION_FAILED = 516


class Secured:
    """The running server: its state, and a settings object per role (and the admin)."""

    def __init__(self, settings: ServicesSettings) -> None:
        self.settings = settings
        self.state = manager.load_state(settings)
        self.users = manager.clickhouse_users(self.state)
        self.admin = ClickHouseSettings(url=manager.status(settings)["clickhouse_url"])

    def role(self, role: str) -> ClickHouseSettings:
        # The sink's refresh computes the keyed person hashes: only it needs the key.
        key = SecretStr(SINK_PERSON_HASH_KEY if role == "sink" else "")
        return ClickHouseSettings(
            url=manager.clickhouse_url_for(self.state, role), person_hash_key=key
        )


SINK_PERSON_HASH_KEY = "least-privilege-test-key"


@pytest.fixture(scope="module")
def secured(services: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    if os.environ.get("SCANTRACE_CLICKHOUSE__URL"):
        pytest.skip("needs the local ClickHouse server (its users.xml), not an external one")
    settings = ServicesSettings(
        state_dir=tmp_path_factory.mktemp("secured"), database=f"t_{uuid.uuid4().hex[:12]}"
    )
    env = pytest.MonkeyPatch()
    env.setenv("SCANTRACE_KAFKA__BOOTSTRAP", services.kafka_bootstrap)  # the session's broker
    try:
        result = manager.up(settings, "external", "local")
        assert result["migrations_applied"], result  # by the migrator, on an empty database
        yield Secured(settings)
    finally:
        manager.down(settings)
        env.undo()


def refused(settings: ClickHouseSettings, sql: str) -> errors.ServerException:
    client = connect(settings)
    try:
        with pytest.raises(errors.ServerException) as info:
            client.execute(sql)
    finally:
        client.disconnect()
    return info.value


def one(settings: ClickHouseSettings, sql: str) -> Any:
    client = connect(settings)
    try:
        return client.execute(sql)[0][0]
    finally:
        client.disconnect()


def test_status_names_a_user_per_role_and_the_state_is_private(secured: Secured) -> None:
    assert set(secured.users) == set(ROLES)
    for role, user in secured.users.items():
        assert user["username"] == username(role)
        assert len(user["password"]) >= 24
        assert one(secured.role(role), "SELECT currentUser()") == user["username"]
    assert manager.state_path(secured.settings).stat().st_mode & 0o777 == 0o600
    users_xml = secured.settings.state_dir / "clickhouse" / "users.xml"
    assert users_xml.stat().st_mode & 0o777 == 0o600
    assert secured.users["sink"]["password"] not in users_xml.read_text()  # hashes only


def test_each_command_connects_as_its_role(secured: Secured) -> None:
    for component, variables in manager.COMPONENT_ROLES.items():
        env = manager.clickhouse_environment(secured.state, component)
        assert set(env) == set(variables), component
        for var, role in variables.items():
            who = one(ClickHouseSettings(url=env[var]), "SELECT currentUser()")
            assert who == username(role), (component, var)
    assert manager.clickhouse_environment(secured.state, "worker") == {}


def test_a_wrong_password_is_refused(secured: Secured) -> None:
    user = secured.users["tracer"]["username"]
    port = secured.state["clickhouse"]["native_port"]
    wrong = ClickHouseSettings(
        url=f"clickhouse://{user}:not-the-password@127.0.0.1:{port}/{secured.settings.database}"
    )
    assert refused(wrong, "SELECT 1").code == AUTHENTICATION_FAILED


def test_the_sink_stores_everything_and_refreshes_the_rollup(
    secured: Secured, kafka_settings: KafkaSettings
) -> None:
    now = now_ms()
    scans = make_scans(400, now)
    letter = DeadLetter(
        "worker", "bad_timestamp", b"\x01", "x", kafka_settings.raw, 0, 7, now, "d1"
    )
    registry = Premises("NT-01", "Cho", "market", "PR", version=1)
    produce(
        kafka_settings,
        [
            *scan_records(kafka_settings, scans),
            (kafka_settings.enriched, b"zz", b"\xc1 not msgpack"),  # the sink's own letter
            (kafka_settings.premises, b"NT-01", encode_premises(registry)),
            (kafka_settings.dlq, None, encode_dead_letter(letter)),
        ],
    )
    admin = connect(secured.admin)
    days = sorted({local_day(t) for _, _, _, t in scans})

    def stored() -> tuple[int, int, int, int]:
        rows = admin.execute(
            "SELECT (SELECT uniqExact(event_id) FROM scans WHERE premises_id LIKE 'NT-%'),"
            " (SELECT count() FROM dead_letters), (SELECT count() FROM premises),"
            " (SELECT uniqExact(event_id) FROM scans_by_person WHERE premises_id LIKE 'NT-%')"
        )
        return tuple(int(v) for v in rows[0])  # type: ignore[return-value]

    sink = Running(sink_settings(kafka_settings, secured.role("sink")))
    try:
        wait_for("every record stored", lambda: stored() == (400, 2, 1, 400), state=stored)
        wait_for(
            "the rollup refreshed",
            lambda: len(admin.execute(*queries.daily(days[0], days[-1]))) > 0,
        )
    finally:
        sink.stop()
        admin.disconnect()
    # the sink's refresh computed the keyed sets of the days it stored
    assert one(secured.admin, "SELECT count() FROM premises_daily_sets") > 0
    expected = {(local_day(t), p) for _, _, p, t in scans}
    admin = connect(secured.admin)
    try:
        daily = admin.execute(*queries.daily(days[0], days[-1]))
        got = {(r[0], r[1]) for r in daily if r[1].startswith("NT-")}
    finally:
        admin.disconnect()
    assert got == expected
    # and nothing beyond its job
    for sql in ("SELECT count() FROM audit_log", "ALTER TABLE scans DELETE WHERE 1"):
        assert refused(secured.role("sink"), sql).code == NOT_ENOUGH_PRIVILEGES, sql


def test_the_tracer_traces_but_cannot_read_or_delete_the_audit_log(secured: Secured) -> None:
    now = now_ms()
    person, other = f"C{uuid.uuid4().hex[:8]}", f"N{uuid.uuid4().hex[:8]}"
    place = {"premises_name": "Cho", "category": "market", "district": "d", "ward": "w"}
    rows = []
    for i, (p, t) in enumerate([(person, now - 3_600_000), (other, now - 3_000_000)]):
        row = {
            "event_id": f"tr-{p}-{i}",
            "person_id": p,
            "premises_id": "TR-1",
            "scanned_at": t,
            "kind": "checkin",
            "gateway_id": "gw",
            "received_at": t,
            "processed_at": t,
            "agency": "a",
            "dwell_minutes": 30,
            **place,
        }
        rows.append(row)
    writer = ClickHouseWriter(secured.role("sink"))  # stored by the sink's writer, as the sink
    try:
        writer.insert("scans", SCAN_COLUMNS, [[r[c] for r in rows] for c in SCAN_COLUMNS], "t1")
    finally:
        writer.close()

    runner = ClickHouseRunner(secured.role("tracer"))
    try:
        tracer = Tracer(runner, AuditWriter(runner))
        actor = Actor("Nguyen Van A", "tracer", "cli")
        result = tracer.trace(actor, person, now - DAY_MS, now, Rule())
    finally:
        runner.close()
    assert [c.person_id for c in result.contacts] == [other]

    tracer_ch = secured.role("tracer")
    for sql in (
        "SELECT count() FROM audit_log",
        "ALTER TABLE audit_log DELETE WHERE 1",
        "ALTER TABLE audit_log UPDATE error = 'x' WHERE 1",
        "TRUNCATE TABLE audit_log",
        "DROP TABLE audit_log",
        "DELETE FROM audit_log WHERE 1",
        "ALTER TABLE scans DELETE WHERE 1",
        "SELECT count() FROM premises_daily_sets",
    ):
        assert refused(tracer_ch, sql).code == NOT_ENOUGH_PRIVILEGES, sql
    # the audit row is there, for the auditor to read
    auditor = ClickHouseRunner(secured.role("auditor"))
    try:
        audit = read_audit(auditor, now - DAY_MS, actor="Nguyen Van A")
    finally:
        auditor.close()
    assert [(a["action"], a["subject_id"], a["rows"], a["ok"]) for a in audit] == [
        ("trace", person, 1, True)
    ]


def test_the_auditor_reads_the_audit_log_only(secured: Secured) -> None:
    auditor = secured.role("auditor")
    assert one(auditor, "SELECT count() >= 0 FROM audit_log") == 1
    for sql in (
        "SELECT count() FROM scans",
        "SELECT count() FROM scans_by_person",
        "SELECT count() FROM premises",
        "INSERT INTO audit_log (actor) VALUES ('forged')",
        "ALTER TABLE audit_log DELETE WHERE 1",
    ):
        assert refused(auditor, sql).code == NOT_ENOUGH_PRIVILEGES, sql


def test_the_report_reads_rollups_not_detail_rows(secured: Secured) -> None:
    report = secured.role("report")
    for table in ("premises_daily", "premises_daily_sets", "premises", "report_counts"):
        assert one(report, f"SELECT count() >= 0 FROM {table}") == 1
    # of the dead letters, the scan fields without person data (the unregistered QR codes)
    assert one(report, "SELECT count() >= 0 FROM (SELECT stage, reason, premises_id, gateway_id,"
                       " count(), min(coalesce(scanned_at, at)) FROM dead_letters"
                       " GROUP BY ALL)") == 1  # fmt: skip
    for sql in (
        "SELECT count() FROM scans",
        "SELECT count() FROM scans_by_person",
        "SELECT count() FROM audit_log",
        "SELECT raw FROM dead_letters",
        "SELECT event_id FROM dead_letters",
        "SELECT detail FROM dead_letters",
        "INSERT INTO premises_daily (premises_id) VALUES ('x')",
        "SELECT query FROM system.processes",  # other users' running queries
    ):
        assert refused(report, sql).code == NOT_ENOUGH_PRIVILEGES, sql


def test_the_migrator_has_no_rights_on_other_databases(secured: Secured) -> None:
    migrator = secured.role("migrator")
    other = f"o_{uuid.uuid4().hex[:8]}"
    admin = connect(secured.admin)
    try:
        admin.execute(f"CREATE DATABASE {other}")
        admin.execute(f"CREATE TABLE {other}.t (x UInt8) ENGINE = Memory")
        for sql in (
            f"CREATE DATABASE {other}_2",
            f"SELECT count() FROM {other}.t",
            f"DROP TABLE {other}.t",
            f"CREATE TABLE {other}.u (x UInt8) ENGINE = MergeTree ORDER BY x",
        ):
            assert refused(migrator, sql).code == NOT_ENOUGH_PRIVILEGES, sql
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {other}")
        admin.disconnect()


def test_db_users_sql_parses_on_clickhouse(secured: Secured) -> None:
    """The `db users` SQL cannot run here (no writable access storage), so each statement
    goes through ClickHouse's own parser instead."""
    admin = connect(secured.admin)
    try:
        for cluster in ("", "scantrace"):
            sql = render_users_sql("scantrace", cluster, {"sink": "ab" * 32})
            statements = [s for s in sql.split(";\n") if s.strip()]
            assert len(statements) > 5 * 4
            for statement in statements:
                body = "\n".join(
                    line for line in statement.splitlines() if not line.startswith("--")
                ).strip()
                if not body:
                    continue
                formatted = admin.execute("SELECT formatQuery(%(q)s)", {"q": body})[0][0]
                assert formatted.split()[0] in ("CREATE", "GRANT"), formatted
    finally:
        admin.disconnect()


def test_the_trace_and_audit_commands_use_their_users(
    secured: Secured, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("SCANTRACE_CLICKHOUSE__URL", "SCANTRACE_AUDIT_CLICKHOUSE__URL"):
        monkeypatch.setenv(var, "")  # recorded, so the value the command sets is undone
        monkeypatch.delenv(var)
    monkeypatch.setenv("SCANTRACE_SERVICES__STATE_DIR", str(secured.settings.state_dir))
    from scantrace.cli import main

    now = now_ms()
    period = ["--from", iso_utc(now - DAY_MS), "--to", iso_utc(now)]
    cli = CliRunner()
    r = cli.invoke(main, ["trace", "NOBODY", *period])
    assert r.exit_code == 0, r.output
    tracer_url = manager.clickhouse_url_for(secured.state, "tracer")
    assert os.environ["SCANTRACE_CLICKHOUSE__URL"] == tracer_url
    r = cli.invoke(main, ["audit", "--since", iso_utc(now - DAY_MS), "--json"])
    assert r.exit_code == 0, r.output
    assert '"subject_id": "NOBODY"' in r.output
    auditor_url = manager.clickhouse_url_for(secured.state, "auditor")
    assert os.environ["SCANTRACE_AUDIT_CLICKHOUSE__URL"] == auditor_url


def test_the_api_reads_the_audit_log_as_the_auditor_and_traces_as_the_tracer(
    secured: Secured,
) -> None:
    tokens = {
        "tt": {"name": "Tracer T", "role": "tracer"},
        "ta": {"name": "Aud A", "role": "auditor"},
    }
    options = ApiOptions(port=0, tokens=json.dumps(tokens))  # type: ignore[arg-type]
    now = now_ms()
    period = {"from": iso_utc(now - DAY_MS), "to": iso_utc(now)}

    async def ask(settings: TracerSettings) -> tuple[int, int, Any]:
        stop = asyncio.Event()
        port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        server = asyncio.create_task(serve(settings, stop=stop, on_listening=port.set_result))
        try:
            base = f"http://127.0.0.1:{await asyncio.wait_for(port, 60)}"
            async with aiohttp.ClientSession() as http:
                async with http.get(
                    f"{base}/v1/trace/API-CASE",
                    params=period,
                    headers={"Authorization": "Bearer tt"},
                ) as r:
                    traced = r.status
                async with http.get(
                    f"{base}/v1/audit",
                    params={"since": period["from"], "actor": "Tracer T"},
                    headers={"Authorization": "Bearer ta"},
                ) as r:
                    return traced, r.status, await r.json()
        finally:
            stop.set()
            await server

    both = TracerSettings(
        clickhouse=secured.role("tracer"), audit_clickhouse=secured.role("auditor"), api=options
    )
    traced, status, body = asyncio.run(ask(both))
    assert (traced, status) == (200, 200), body
    assert "API-CASE" in [e["subject_id"] for e in body["entries"]]
    # Without the auditor's connection the audit log is read as the tracer: refused.
    alone = TracerSettings(
        clickhouse=secured.role("tracer"), audit_clickhouse=ClickHouseSettings(), api=options
    )
    traced, status, body = asyncio.run(ask(alone))
    assert (traced, status) == (200, 503), body


def test_the_tracer_keeps_the_workbench_tables_and_stops_its_own_jobs(secured: Secured) -> None:
    """The workbench as the tracer's user: it appends versions to its tables and reads
    them, may not alter or delete them, and stops its own depth-2 job's query (a Cancel
    packet on the job's connection: `KILL QUERY` would need SELECT on system.processes)."""
    import threading
    from datetime import date

    from tracing.runner import RunnerPool
    from tracing.workbench import followup
    from tracing.workbench.jobs import Job, Jobs

    tracer = secured.role("tracer")
    runner = ClickHouseRunner(tracer)
    try:
        case_id = followup.create_case(runner, "P-wb", date(2026, 12, 1), "", "A", now_ms())
        followup.set_status(runner, case_id, "P-f1", "called", "A", now_ms())
        assert followup.statuses(runner, case_id)["P-f1"].status == "called"
    finally:
        runner.close()
    for sql in ("ALTER TABLE followups DELETE WHERE 1", "TRUNCATE TABLE cases"):
        assert refused(tracer, sql).code == NOT_ENOUGH_PRIVILEGES, sql

    jobs = Jobs(RunnerPool(lambda: ClickHouseRunner(tracer), size=1), max_jobs=1, max_rows=10)
    job = Job("1", "P-wb", 0, 0, Rule(depth=2), state="running")
    job.runner = slow = ClickHouseRunner(tracer)
    outcome: list[object] = []

    def run() -> None:
        try:  # ten minutes unless stopped
            outcome.append(
                slow.query(
                    "SELECT sleepEachRow(0.5) FROM numbers(1200) SETTINGS max_block_size = 1",
                    {},
                )
            )
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        for _ in range(600):  # the query is on its way
            if slow._client.connection.is_query_executing:
                break
            time.sleep(0.1)
        time.sleep(1)
        jobs.cancel(job)
        thread.join(300)
        assert not thread.is_alive(), "the query was not stopped"
    finally:
        jobs.close()
        slow.close()
    assert job.cancel.is_set()
    [got] = outcome
    # the server ends a cancelled query early: here with the rows so far, no error (which
    # is why a job checks its own flag before it calls an answer complete)
    assert isinstance(got, Exception) or len(got) < 1200  # type: ignore[arg-type]
