"""`scantrace report` as officials get it, on the real ClickHouse, against recounts in
plain Python of the generated rows (`test_report`'s province): the header, the trend, the
staff of each agency, the QR codes outside the registry, the editions, the suppression
attacks (a week minus its days, a province minus its other groups, an edition against the
province), the PDF opened with pypdf, and the delivery received by a real SMTP server.
"""

from __future__ import annotations

import csv
import json
import socket
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import msgpack
import pytest
from click.testing import CliRunner
from pydantic import SecretStr
from test_report import (
    CHROMIUM,
    TINY_AGENCY,
    Province,
    load,
    local,
    recount,
)
from test_report import (
    province as province,  # the module's fixture
)

from ingest.deadletter import DeadLetter, encode_dead_letter
from scantrace.cli import main
from sinks.batch import COLUMNS, Slice, build_chunk
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
from sinks.migrations import migrate
from sinks.writer import ClickHouseWriter

W46 = [date(2021, 11, 15) + timedelta(days=i) for i in range(7)]
W45 = [d - timedelta(days=7) for d in W46]
HEADCOUNT = 40
# QR codes read in W46 that are not in the registry: id -> [(gateway, local day, hour)]
UNKNOWN = {
    "QR-NOT-REGISTERED-1": [("gw-a", 16, 8), ("gw-a", 16, 9), ("gw-b", 18, 7)] * 3,
    "QR-NOT-REGISTERED-2": [("gw-c", 20, 10)] * 2,
}
PROVINCE_NAME = "Tỉnh Ninh Thuận"
AUTHORITY = "Sở Thông tin và Truyền thông"


def _dead_letters(p: Province) -> list[DeadLetter]:
    out = []
    n = 0
    for pid, scans in UNKNOWN.items():
        for gw, day, hour in scans:
            n += 1
            scan = {"event_id": f"u{n}", "person_id": f"P{n}", "premises_id": pid,
                    "scanned_at": local(2021, 11, day, hour, n % 60), "gateway_id": gw}  # fmt: skip
            out.append(DeadLetter("worker", "unknown_premises", msgpack.packb(scan), "parked",
                                  "scans.raw", 0, n, local(2021, 11, 19), f"u{n}"))  # fmt: skip
    # registered since it was dead-lettered: not in the list
    known = sorted(p.current)[0]
    scan = {"event_id": "k1", "person_id": "P", "premises_id": known,
            "scanned_at": local(2021, 11, 17, 8), "gateway_id": "gw-a"}  # fmt: skip
    out.append(DeadLetter("worker", "unknown_premises", msgpack.packb(scan), "", "scans.raw",
                          0, 900, local(2021, 11, 20), "k1"))  # fmt: skip
    bad = {"event_id": "b1", "person_id": "P", "premises_id": known,
           "scanned_at": "yesterday", "gateway_id": "gw-b"}  # fmt: skip
    for i in range(4):
        out.append(DeadLetter("worker", "bad_timestamp", msgpack.packb(bad | {"n": i}), "",
                              "scans.raw", 0, 910 + i, local(2021, 11, 18, 12), "b1"))  # fmt: skip
    return out


@pytest.fixture(scope="module")
def loaded(services: Any, province: Province) -> Iterator[Any]:
    """Loaded once for the module's tests (they only read)."""
    settings = ClickHouseSettings(
        url=f"{services.clickhouse_native}/t_{uuid.uuid4().hex[:12]}_ed",
        person_hash_key=SecretStr("test-person-hash-key-not-secret"),
        retention_days=3650,
    )
    migrate(settings)
    try:
        load(settings, province)
        letters = [encode_dead_letter(d) for d in _dead_letters(province)]
        chunk = build_chunk(
            "dead_letters", Slice("scans.dlq", 0, list(range(len(letters))), letters), 0
        )
        writer = ClickHouseWriter(settings)
        try:
            columns = [list(c) for c in zip(*chunk.rows, strict=True)]
            writer.insert("dead_letters", COLUMNS["dead_letters"], columns, "dlq:0:all")
        finally:
            writer.close()
        yield settings
    finally:
        client = connect(settings, database="default")
        client.execute(f"DROP DATABASE IF EXISTS `{settings.database}`")
        client.disconnect()


def _env(settings: ClickHouseSettings, **more: str) -> dict[str, str]:
    return {
        "SCANTRACE_CLICKHOUSE__URL": settings.url,
        "SCANTRACE_REPORT__PROVINCE": PROVINCE_NAME,
        "SCANTRACE_REPORT__AUTHORITY": AUTHORITY,
        **more,
    }


def _headcount(p: Province, path: Path) -> dict[str, int]:
    agencies = sorted({x.agency for x in p.current.values() if x.category == "office"})
    path.write_text(
        "agency,headcount\n" + "".join(f'"{a}",{HEADCOUNT}\n' for a in agencies), encoding="utf-8"
    )
    return dict.fromkeys(agencies, HEADCOUNT)


def run(settings: ClickHouseSettings, args: list[str], **env: str) -> str:
    result = CliRunner().invoke(main, ["report", *args], env=_env(settings, **env))
    assert result.exit_code == 0, result.output
    return result.output


def doc_of(settings: ClickHouseSettings, tmp: Path, args: list[str], name: str) -> Any:
    out = tmp / name
    run(settings, [*args, "--format", "json", "--out", str(out)])
    return json.loads(out.read_text(encoding="utf-8"))


def test_header_trend_staff_and_unregistered(
    loaded: ClickHouseSettings, province: Province, tmp_path: Path
) -> None:
    staff_file = tmp_path / "headcount.csv"
    headcount = _headcount(province, staff_file)
    args = ["weekly", "--week", "2021-W46", "--headcount", str(staff_file), "--weeks", "3"]
    doc = doc_of(loaded, tmp_path, [*args, "--cross"], "w.json")
    # header and period
    assert (doc["province"], doc["authority"]) == (PROVINCE_NAME, AUTHORITY)
    assert doc["period"]["from"] == "2021-11-15T00:00:00+07:00"
    assert doc["period"]["to"] == "2021-11-22T00:00:00+07:00"
    assert doc["complete"] is True and doc["generated_at"].endswith("+07:00")
    assert doc["cutoff"] == "2021-11-22T00:00:00+07:00"  # the period's end: all reported
    assert all(d["reported"] for d in doc["days"])
    # the trend: W44 (no data), W45, W46, per district and agency, against the recount
    trend = {(s["dimension"], s["key"]): s["weeks"] for s in doc["trend"]}
    assert [w["week"] for w in trend[("total", "")]] == ["2021-W44", "2021-W45", "2021-W46"]
    assert trend[("total", "")][0]["scans"] is None  # no data, not zero
    for first, points in ((W45[0], 1), (W46[0], 2)):
        counted = recount(province, first, first + timedelta(days=6))
        for (dim, key), weeks in trend.items():
            c = counted.get((dim, key))
            w = weeks[points]
            persons = len(c.persons) if c else 0
            assert w["scanners"] == ("<5" if 1 <= persons <= 4 else persons), (dim, key)
            if w["scans"] != "x":
                assert w["scans"] == (len(c.events) if c else 0), (dim, key)
            assert w["active"] == (len(c.active) if c else 0)
    assert {d for d, _ in trend} == {"total", "district", "agency"}
    # the same cells as the week's own tables
    table = {r["key"]: r for r in doc["tables"]["agency"]}
    for key, r in table.items():
        assert trend[("agency", key)][2]["scans"] == r["scans"]
    assert trend[("agency", TINY_AGENCY)][2]["scans"] == "x"

    # staff: distinct persons per working day at the agency's own offices
    staff = {s["agency"]: s for s in doc["staff"]}
    assert set(staff) == set(headcount)
    for agency, s in staff.items():
        offices = {k for k, x in province.current.items()
                   if x.agency == agency and x.category == "office"}  # fmt: skip
        per_day = []
        for d in W46[:5]:
            start = local(d.year, d.month, d.day)
            per_day.append(len({r.person_id for r in province.rows if r.premises_id in offices
                                and start <= r.scanned_at < start + 86_400_000}))  # fmt: skip
        assert s["headcount"] == HEADCOUNT and s["working_days"] == 5
        assert [x["scanners"] for x in s["days"]] == ["<5" if 1 <= n <= 4 else n for n in per_day]
        if any(1 <= n <= 4 for n in per_day):
            assert s["mean_daily_scanners"] == "x" and s["share"] == "x"
        else:
            assert s["mean_daily_scanners"] == pytest.approx(sum(per_day) / 5)
            assert s["share"] == pytest.approx(sum(per_day) / 5 / HEADCOUNT)
    assert any(isinstance(s["share"], float) and s["share"] > 0 for s in staff.values())

    # the QR codes outside the registry, and the rejected scans
    assert doc["unregistered"] == [
        {"premises_id": "QR-NOT-REGISTERED-1", "scans": 9, "gateways": 2,
         "first_seen": "2021-11-16", "last_seen": "2021-11-18"},
        {"premises_id": "QR-NOT-REGISTERED-2", "scans": "<5", "gateways": 1,
         "first_seen": "2021-11-20", "last_seen": "2021-11-20"},
    ]  # fmt: skip
    rejected = {(r["reason"], r["gateway_id"]): r["scans"] for r in doc["rejected"]}
    # bad timestamps have no scan time: counted on the day they were dead-lettered
    assert rejected[("bad_timestamp", "gw-b")] == 4
    assert rejected[("unknown_premises", "gw-a")] == 7  # 6 unregistered + 1 since registered

    # the agency by district table: premises and distinct scanners, no scans
    cross = doc["cross"]
    counted = recount(province, W46[0], W46[-1])
    for row in cross["rows"]:
        for district, cell in zip(cross["columns"], row["cells"], strict=True):
            key = (row["agency"], district)
            reg = sum(1 for x in province.current.values() if (x.agency, x.district) == key)
            assert cell["registered"] == reg
            rows = [r for r in province.rows if (province.current[r.premises_id].agency,
                    province.current[r.premises_id].district) == key
                    and local(2021, 11, 15) <= r.scanned_at < local(2021, 11, 22)]  # fmt: skip
            persons = len({r.person_id for r in rows})
            assert cell["active"] == len({r.premises_id for r in rows})
            assert cell["scanners"] == ("<5" if 1 <= persons <= 4 else persons)
    assert counted[("total", "")].registered == sum(
        c["registered"] for row in cross["rows"] for c in row["cells"]
    )


def _scans(doc: dict[str, Any], dim: str) -> dict[str, Any]:
    return {r["key"]: r["scans"] for r in doc["tables"][dim]}


def test_subtraction_attacks_recover_no_hidden_number(
    loaded: ClickHouseSettings, province: Province, tmp_path: Path
) -> None:
    """Every report of W46 side by side: the weekly one, the seven daily ones, the agency
    editions. No hidden scan count is the difference of numbers shown."""
    week = doc_of(loaded, tmp_path, ["weekly", "--week", "2021-W46", "--by", "agency",
                                     "--by", "district", "--by", "category"], "w.json")  # fmt: skip
    days = [doc_of(loaded, tmp_path, ["daily", "--date", d.isoformat(), "--by", "agency",
                                      "--by", "district", "--by", "category"], f"{d}.json")
            for d in W46]  # fmt: skip
    total = week["total"]["scans"]
    assert isinstance(total, int)
    for dim in ("agency", "district", "category"):
        w = _scans(week, dim)
        # a province total minus the other groups: two or more hidden in every table
        hidden = [k for k, v in w.items() if v == "x"]
        assert len(hidden) != 1, dim
        # a week total minus its days: a group hidden on some day is hidden on another
        # day too, or in the week
        for key, week_value in w.items():
            per_day = [_scans(d, dim).get(key, 0) for d in days]
            if "x" in per_day and week_value != "x":
                assert per_day.count("x") >= 2, (dim, key, per_day)
            if week_value == "x":
                assert all(v == "x" or v == 0 for v in per_day) or per_day.count("x") != 0
        # each day's table: no single hidden cell against the day's province total
        for d in days:
            if isinstance(d["total"]["scans"], int):
                assert list(_scans(d, dim).values()).count("x") != 1, (dim, d["period"])
    # the tiny agency is hidden in the week; recounted, its true number is not derivable
    tiny = recount(province, W46[0], W46[-1])[("agency", TINY_AGENCY)]
    shown = sum(v for v in _scans(week, "agency").values() if isinstance(v, int))
    assert total - shown != len(tiny.events)  # two hidden cells share the remainder
    # the days of the week: every day shown adds up with the hidden ones to the total
    assert [d["day"] for d in week["days"] if d["current"]] == [x.isoformat() for x in W46]

    # an agency edition against the province edition: the same cells, nothing more
    for agency in (TINY_AGENCY, sorted(_scans(week, "agency"))[0]):
        ed = doc_of(loaded, tmp_path, ["weekly", "--week", "2021-W46", "--by", "agency",
                                       "--edition", f"agency={agency}"], "ed.json")  # fmt: skip
        assert ed["edition"] == {"dimension": "agency", "key": agency}
        [row] = ed["tables"]["agency"]
        assert row == next(r for r in week["tables"]["agency"] if r["key"] == agency)
        assert ed["total"] == week["total"]
        assert set(ed["tables"]) == {"agency"}
        assert all(p["agency"] == agency for p in ed["inactive"])
        assert ed["unregistered"] == []


def test_wards_with_an_empty_district_column(
    clickhouse_settings: ClickHouseSettings, province: Province, tmp_path: Path
) -> None:
    """A registry of the two-level government (no districts): the report groups by ward."""
    from dataclasses import replace

    settings = clickhouse_settings.with_database(f"{clickhouse_settings.database}_wards")
    settings = settings.model_copy(update={"retention_days": 3650})
    flat = replace(
        province,
        registry=[replace(x, district="") for x in province.registry],
        current={k: replace(x, district="") for k, x in province.current.items()},
    )
    migrate(settings)
    try:
        load(settings, flat)
        doc = doc_of(settings, tmp_path, ["weekly", "--week", "2021-W46"], "wards.json")
        assert set(doc["tables"]) == {"agency", "ward", "category"}
        counted = by_ward(flat, W46[0])
        wards = {r["key"]: r for r in doc["tables"]["ward"]}
        expected = {x.ward for x in flat.current.values()}
        assert set(wards) == expected and len(wards) > 10
        for key, r in wards.items():
            c = counted.get(key)
            assert r["registered"] == sum(1 for x in flat.current.values() if x.ward == key)
            persons = len(c.persons) if c else 0
            assert r["scanners"] == ("<5" if 1 <= persons <= 4 else persons)
            if r["scans"] != "x":
                assert r["scans"] == (len(c.events) if c else 0)
        assert {s["dimension"] for s in doc["trend"]} == {"total", "ward", "agency"}
        # and after the retention, from the counts: the same tables
        client = connect(settings)
        try:
            client.execute("TRUNCATE TABLE premises_daily_sets")
        finally:
            client.disconnect()
        again = doc_of(settings, tmp_path, ["weekly", "--week", "2021-W46"], "wards2.json")
        assert again["tables"] == doc["tables"] and again["trend"] == doc["trend"]
    finally:
        client = connect(settings, database="default")
        client.execute(f"DROP DATABASE IF EXISTS `{settings.database}`")
        client.disconnect()


def by_ward(p: Province, monday: date) -> dict[str, Any]:
    """Per ward, the week's active premises, events and persons as sets."""
    from types import SimpleNamespace

    start = local(monday.year, monday.month, monday.day)
    out: dict[str, Any] = {}
    for r in p.rows:
        if start <= r.scanned_at < start + 7 * 86_400_000:
            ward = p.current[r.premises_id].ward
            c = out.setdefault(ward, SimpleNamespace(active=set(), events=set(), persons=set()))
            c.active.add(r.premises_id)
            c.events.add(r.event_id)
            c.persons.add(r.person_id)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium (apt)")
def test_editions_pdf_and_delivery_over_smtp(
    loaded: ClickHouseSettings, province: Province, tmp_path: Path
) -> None:
    pypdf = pytest.importorskip("pypdf")
    controller_mod = pytest.importorskip("aiosmtpd.controller")

    # one file per agency and an index
    folder = tmp_path / "editions"
    output = run(loaded, ["weekly", "--week", "2021-W46", "--editions", "agency",
                          "--out-dir", str(folder)])  # fmt: skip
    agencies = {x.agency for x in province.current.values()}
    files = sorted(folder.glob("agency-*.html"))
    assert len(files) == len(agencies)
    index = (folder / "index.html").read_text(encoding="utf-8")
    assert all(f.name in output for f in files) and TINY_AGENCY in index

    # the PDF, opened
    pdf = tmp_path / "w46.pdf"
    run(loaded, ["weekly", "--week", "2021-W46", "--format", "pdf", "--out", str(pdf)])
    reader = pypdf.PdfReader(pdf)
    pages = len(reader.pages)
    assert pages >= 3
    box = reader.pages[0].mediabox
    assert abs(float(box.width) - 595.3) < 2 and abs(float(box.height) - 841.9) < 2  # A4
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert (
        "Báo cáo kết quả thực hiện quét mã QR" in text and PROVINCE_NAME in text.replace("\n", " ")
    ) or PROVINCE_NAME.upper() in text
    assert f"Trang 1 / {pages}" in text and f"Trang {pages} / {pages}" in text

    # delivery: a real SMTP server, one message per recipient with its edition
    other = sorted(agencies - {TINY_AGENCY})[0]
    recipients = tmp_path / "recipients.csv"
    with recipients.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["email", "edition"])
        w.writerow(["giamdoc@stttt.example.vn", "province"])
        w.writerow(["bql@kcn.example.vn", f"agency={TINY_AGENCY}"])
        w.writerow(["vanphong@example.vn", f"agency={other}"])
    dry = run(loaded, ["send", "--week", "2021-W46", "--recipients", str(recipients),
                       "--dry-run"])  # fmt: skip
    assert dry.count("would send") == 3 and "bql@kcn.example.vn" in dry

    received: list[Message] = []

    class Collect:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(message_from_bytes(envelope.content))
            received[-1]["X-Rcpt"] = ",".join(envelope.rcpt_tos)
            return "250 OK"

    port = _free_port()
    controller = controller_mod.Controller(Collect(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        sent = run(
            loaded,
            ["send", "--week", "2021-W46", "--recipients", str(recipients)],
            SCANTRACE_REPORT__SMTP__HOST="127.0.0.1",
            SCANTRACE_REPORT__SMTP__PORT=str(port),
            SCANTRACE_REPORT__SMTP__STARTTLS="false",
            SCANTRACE_REPORT__SMTP__SENDER="baocao@stttt.example.vn",
        )
    finally:
        controller.stop()
    assert sent.count("sent to") == 3
    assert sorted(m["X-Rcpt"] for m in received) == sorted(
        ["giamdoc@stttt.example.vn", "bql@kcn.example.vn", "vanphong@example.vn"]
    )
    for m in received:
        parts = [p for p in m.walk() if p.get_filename()]
        names = [p.get_filename() for p in parts]
        assert [p.get_content_type() for p in parts] == ["application/pdf", "text/html"], names
        html = parts[1].get_payload(decode=True).decode("utf-8")
        assert parts[0].get_payload(decode=True).startswith(b"%PDF-")
        if m["X-Rcpt"] == "bql@kcn.example.vn":
            assert (
                TINY_AGENCY in html
                and other not in html.split("<footer>")[0].split("Cơ quan</th>")[-1]
            )
            assert m["From"] == "baocao@stttt.example.vn"
        if m["X-Rcpt"] == "giamdoc@stttt.example.vn":
            assert "QR-NOT-REGISTERED-1" in html


def test_a_week_not_over_marks_the_days_after_the_cutoff(
    clickhouse_settings: ClickHouseSettings, tmp_path: Path
) -> None:
    """This week, as it runs: scans until today; the later days are not yet reported."""
    from ingest.contract import now_ms
    from ingest.premises import Premises
    from sinks.batch import PREMISES_COLUMNS, SCAN_COLUMNS
    from sinks.rollup import local_day

    settings = clickhouse_settings.with_database(f"{clickhouse_settings.database}_now")
    migrate(settings)
    today = local_day(now_ms())
    monday = today - timedelta(days=today.weekday())
    premises = [Premises(f"NOW-{i}", f"Điểm {i}", "shop", "Phan Rang", "Phường 1", "Sở Y tế",
                         version=1) for i in range(3)]  # fmt: skip
    writer = ClickHouseWriter(settings)
    try:
        rows = [[getattr(x, c) for c in PREMISES_COLUMNS] for x in premises]
        writer.insert("premises", PREMISES_COLUMNS, [list(c) for c in zip(*rows, strict=True)], "p")
        scans = []
        d = monday
        while d <= today:
            start = local(d.year, d.month, d.day, 0, 5)
            for j in range(8):
                values = {"event_id": f"{d}-{j}", "person_id": f"P{j}",
                          "premises_id": premises[j % 3].premises_id, "scanned_at": start + j,
                          "kind": "checkin", "gateway_id": "gw", "received_at": start + j,
                          "premises_name": "x", "category": "shop", "district": "Phan Rang",
                          "ward": "Phường 1", "agency": "Sở Y tế", "dwell_minutes": 10,
                          "processed_at": start + j}  # fmt: skip
                scans.append([values[c] for c in SCAN_COLUMNS])
            d += timedelta(days=1)
        writer.insert("scans", SCAN_COLUMNS, [list(c) for c in zip(*scans, strict=True)], "s")
        writer.refresh_rollup(
            sorted({monday + timedelta(days=i) for i in range(today.weekday() + 1)})
        )
    finally:
        writer.close()
    try:
        year, week, _ = today.isocalendar()
        doc = doc_of(settings, tmp_path, ["weekly", "--week", f"{year}-W{week:02d}"], "n.json")
        assert doc["complete"] is False
        this = [x for x in doc["days"] if x["current"]]
        for x in this:
            if date.fromisoformat(x["day"]) <= today:
                assert x["reported"] and x["scans"] == 8
            else:
                assert not x["reported"] and x["scans"] is None  # not zero
        assert doc["previous_empty"] is True
        assert doc["total"]["change_scans"] is None and doc["total"]["change_share_pp"] is None
        html = tmp_path / "n.html"
        run(settings, ["weekly", "--week", f"{year}-W{week:02d}", "--out", str(html)])
        page = html.read_text(encoding="utf-8")
        assert "Tuần chưa kết thúc" in page and "không có số liệu" in page
        assert "+100,0" not in page
        if today.weekday() < 6:
            assert "chưa báo cáo" in page
    finally:
        client = connect(settings, database="default")
        client.execute(f"DROP DATABASE IF EXISTS `{settings.database}`")
        client.disconnect()
