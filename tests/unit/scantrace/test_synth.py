"""The synthetic Ninh Thuan province: premises, a day of scans, and its ground truth."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from datetime import date, datetime
from itertools import pairwise
from pathlib import Path
from typing import TypedDict

import pytest

from ingest.contract import ScanRejected, parse_scan
from ingest.premises import CSV_COLUMNS, DWELL_MINUTES, Premises
from scantrace import synth

DAY = date(2021, 10, 15)


class Rates(TypedDict):
    duplicate_rate: float
    repeat_rate: float
    late_rate: float
    bad_rate: float
    unknown_premises_rate: float


# Higher than the defaults, so a small day has some of everything.
SMALL_RATES: Rates = {
    "duplicate_rate": 0.04,
    "repeat_rate": 0.05,
    "late_rate": 0.05,
    "bad_rate": 0.02,
    "unknown_premises_rate": 0.02,
}


@pytest.fixture(scope="module")
def premises() -> list[Premises]:
    return synth.generate_premises(7)


@pytest.fixture(scope="module")
def day(premises: list[Premises]) -> synth.ScanDay:
    return synth.generate_scans(7, premises, DAY, persons=4000, **SMALL_RATES)


def _local_hour(ms: int) -> int:
    return datetime.fromtimestamp(ms / 1000, tz=synth.TZ).hour


def _check(scan: dict[str, object], now: int) -> str | None:
    """None when the scan is valid, else the rejection reason."""
    try:
        parse_scan(scan, now=now)
    except ScanRejected as exc:
        return exc.reason
    return None


# ---------------------------------------------------------------- premises


def test_premises_are_deterministic_per_seed() -> None:
    assert synth.generate_premises(3, 500) == synth.generate_premises(3, 500)
    assert synth.generate_premises(3, 500) != synth.generate_premises(4, 500)


def test_premises_look_like_ninh_thuan(premises: list[Premises]) -> None:
    assert len(premises) == 3000
    ids = [p.premises_id for p in premises]
    assert ids[0] == "NT-000001" and ids[-1] == "NT-003000"
    assert len(set(ids)) == len(ids)
    for p in premises:
        assert p.district in synth.DISTRICT_POPULATION
        assert p.ward in synth.WARDS[p.district]
        assert p.category in DWELL_MINUTES
        assert p.agency in synth.AGENCIES
        assert p.name and p.address.endswith("tỉnh Ninh Thuận")
        assert p.lat is not None and p.lon is not None
        assert 11.3 <= p.lat <= 12.2 and 108.6 <= p.lon <= 109.25
    categories = Counter(p.category for p in premises)
    assert set(categories) == set(DWELL_MINUTES)  # every category occurs
    top = [c for c, _ in categories.most_common(4)]
    assert set(top) == {"shop", "restaurant", "office", "school"}
    assert categories["mall"] <= 5 and categories["bus_station"] <= 8
    assert all(p.district == synth.CITY for p in premises if p.category == "mall")
    names = {p.name for p in premises}
    assert "Chợ Phan Rang" in names
    assert any(n.startswith("Trường THCS ") for n in names)
    assert any(n.startswith("Cửa hàng tạp hóa ") for n in names)
    assert {p.agency for p in premises} >= {
        "Sở Y tế",
        "Sở Giáo dục và Đào tạo",
        "Sở Công Thương",
        "Sở Giao thông Vận tải",
        "Sở Văn hóa, Thể thao và Du lịch",
        "Doanh nghiệp tư nhân",
        "UBND huyện Ninh Phước",
    }


def test_premises_per_district_follow_population(premises: list[Premises]) -> None:
    counts = Counter(p.district for p in premises)
    people = sum(synth.DISTRICT_POPULATION.values())
    assert set(counts) == set(synth.DISTRICTS)
    for district, population in synth.DISTRICT_POPULATION.items():
        share = counts[district] / len(premises)
        assert share == pytest.approx(population / people, abs=0.01), district


def test_small_registries_work() -> None:
    assert synth.generate_premises(1, 0) == []
    few = synth.generate_premises(1, 5)
    assert len(few) == 5 and len({p.premises_id for p in few}) == 5


def test_premises_csv_round_trip_keeps_vietnamese(premises: list[Premises], tmp_path: Path) -> None:
    path = tmp_path / "premises.csv"
    assert synth.write_premises_csv(premises, path) == len(premises)
    assert synth.read_premises_csv(path) == premises
    raw = path.read_bytes()
    assert "Phan Rang-Tháp Chàm".encode() in raw  # UTF-8, not escaped
    with path.open(encoding="utf-8", newline="") as f:
        assert tuple(next(csv.reader(f))) == CSV_COLUMNS


def test_premises_csv_with_empty_coordinates(tmp_path: Path) -> None:
    one = [Premises("NT-1", 'Quán "Bà Tư", chợ mới', "restaurant", "Ninh Sơn")]
    path = tmp_path / "one.csv"
    synth.write_premises_csv(one, path)
    assert synth.read_premises_csv(path) == one


def test_read_premises_csv_rejects_other_columns(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("id,name\nNT-1,x\n", encoding="utf-8")
    with pytest.raises(ValueError, match="columns"):
        synth.read_premises_csv(path)


def test_population_csv(tmp_path: Path) -> None:
    path = tmp_path / "population.csv"
    synth.write_population_csv(path)
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["district"]: int(r["population"]) for r in rows} == synth.DISTRICT_POPULATION
    assert "Bác Ái" in {r["district"] for r in rows}


# ---------------------------------------------------------------- scans


def test_scans_are_deterministic_per_seed(premises: list[Premises]) -> None:
    a = synth.generate_scans(11, premises, DAY, persons=500, **SMALL_RATES)
    b = synth.generate_scans(11, premises, DAY, persons=500, **SMALL_RATES)
    c = synth.generate_scans(12, premises, DAY, persons=500, **SMALL_RATES)
    assert a.scans == b.scans and a.arrivals == b.arrivals and a.truth == b.truth
    assert a.scans != c.scans


def test_every_valid_scan_parses_and_bad_ones_fail(day: synth.ScanDay) -> None:
    real_now = int(datetime.now(tz=synth.TZ).timestamp() * 1000)
    for now in (day.day_end_ms, real_now):
        reasons = Counter(_check(scan, now) for scan in day)
        bad = {r: n for r, n in reasons.items() if r is not None}
        assert reasons[None] == day.truth.valid
        assert sum(bad.values()) == day.truth.bad > 0
        assert bad == {r: n for r, n in day.truth.bad_by_reason.items() if n}
    for scan in day:
        if _check(scan, day.day_end_ms) is None:
            assert set(scan) == {"event_id", "person_id", "premises_id", "scanned_at", "kind"}
            assert day.day_start_ms <= scan["scanned_at"] < day.day_end_ms  # type: ignore[operator]


def test_truth_matches_a_recount(day: synth.ScanDay, premises: list[Premises]) -> None:
    truth = day.truth
    registry = {p.premises_id: p for p in premises}
    valid = [s for s in day if _check(s, day.day_end_ms) is None]
    first: dict[object, dict[str, object]] = {}
    duplicates = 0
    for scan in valid:
        if scan["event_id"] in first:
            assert scan == first[scan["event_id"]]  # a duplicate is an exact resend
            duplicates += 1
        else:
            first[scan["event_id"]] = scan
    unique = list(first.values())
    known = [s for s in unique if s["premises_id"] in registry]
    unknown = [s for s in unique if s["premises_id"] not in registry]

    assert truth.total == len(day.scans)
    assert truth.valid == len(valid)
    assert truth.unique == len(unique)
    assert truth.duplicates == duplicates > 0
    assert truth.stored == len(known)
    assert truth.unknown_premises == len(unknown) > 0
    assert truth.unknown_premises_ids == {s["premises_id"] for s in unknown}
    assert truth.total == truth.stored + truth.duplicates + truth.bad + truth.unknown_premises
    kinds = Counter(s["kind"] for s in known)
    assert (truth.checkins, truth.checkouts) == (kinds["checkin"], kinds["checkout"])
    assert truth.persons == len({s["person_id"] for s in known})
    assert truth.stored_by_premises == Counter(s["premises_id"] for s in known)
    assert truth.stored_by_district == Counter(
        registry[str(s["premises_id"])].district for s in known
    )
    assert truth.stored_by_category == Counter(
        registry[str(s["premises_id"])].category for s in known
    )

    # Repeats: the same person, premises and kind again within 4 minutes.
    times: dict[tuple[object, ...], list[int]] = defaultdict(list)
    for s in unique:
        times[(s["person_id"], s["premises_id"], s["kind"])].append(int(s["scanned_at"]))  # type: ignore[call-overload]
    repeats = 0
    for ts in times.values():
        ts.sort()
        repeats += sum(1 for a, b in pairwise(ts) if b - a <= 240_000)
    assert truth.repeats == repeats > 0
    # Visits: check-ins once repeats are merged.
    assert truth.visits == truth.checkins - sum(
        1
        for (_, pid, kind), ts in times.items()
        if kind == "checkin" and pid in registry
        for a, b in pairwise(ts)
        if b - a <= 240_000
    )


def test_late_uploads_come_last(day: synth.ScanDay) -> None:
    assert day.arrivals == sorted(day.arrivals)
    assert len(day.late) == day.truth.late > 0
    assert len(day.on_time) + len(day.late) == len(day)
    late_arrivals = day.arrivals[day.late_start :]
    assert min(late_arrivals) >= day.day_end_ms + 3_600_000
    assert max(day.arrivals[: day.late_start]) < day.day_end_ms + 600_000
    for scan, arrival in zip(day.on_time, day.arrivals, strict=False):
        if isinstance(scan.get("scanned_at"), int) and scan["scanned_at"] < day.day_end_ms:  # type: ignore[operator]
            assert 0 <= arrival - scan["scanned_at"] <= 330_000  # type: ignore[operator]
    for scan in day.late:  # still the original event time, inside the day
        assert _check(scan, day.day_end_ms) is None
        assert day.day_start_ms <= scan["scanned_at"] < day.day_end_ms  # type: ignore[operator]


def test_event_ids_are_unique_except_resends(day: synth.ScanDay) -> None:
    ids = Counter(s["event_id"] for s in day if "event_id" in s)
    assert all(n <= 2 for n in ids.values())
    assert sum(n - 1 for n in ids.values()) == day.truth.duplicates


def test_morning_and_evening_peaks(day: synth.ScanDay) -> None:
    hours = Counter(
        _local_hour(s["scanned_at"])  # type: ignore[arg-type]
        for s in day
        if _check(s, day.day_end_ms) is None
    )
    night = hours[2] + hours[3]
    morning = hours[7] + hours[8]
    evening = hours[17] + hours[18]
    assert morning > 10 * max(night, 1)
    assert evening > 10 * max(night, 1)
    assert morning > hours[13] + hours[14]


def test_people_stay_mostly_in_their_district(day: synth.ScanDay, premises: list[Premises]) -> None:
    district = {p.premises_id: p.district for p in premises}
    per_person: dict[object, set[str]] = defaultdict(set)
    for s in day:
        if _check(s, day.day_end_ms) is None and s["premises_id"] in district:
            per_person[s["person_id"]].add(district[str(s["premises_id"])])
    one_district = sum(1 for ds in per_person.values() if len(ds) == 1)
    assert one_district / len(per_person) > 0.7


def test_checkouts_follow_checkins(day: synth.ScanDay) -> None:
    first: dict[tuple[object, object, object], int] = {}
    for s in day:
        if _check(s, day.day_end_ms) is None:
            key = (s["person_id"], s["premises_id"], s["kind"])
            first[key] = min(first.get(key, 1 << 62), int(s["scanned_at"]))  # type: ignore[call-overload]
    gaps = [
        (t - first[(person, prem, "checkin")]) / 60_000
        for (person, prem, kind), t in first.items()
        if kind == "checkout" and (person, prem, "checkin") in first
    ]
    assert gaps
    assert all(20 - 4 <= g <= 120 + 4 for g in gaps)  # a repeat may move either end 4 min


def test_person_ids_are_pseudonymous_and_stable(day: synth.ScanDay) -> None:
    population = set(synth.person_ids(7, 4000))
    assert len(population) == 4000
    assert synth.person_id(7, 123) == synth.person_ids(7, 4000)[123]
    assert synth.person_ids(7, 10) == synth.person_ids(7, 4000)[:10]
    for s in day:
        if isinstance(s.get("person_id"), str):
            assert s["person_id"] in population
    assert all(pid.startswith("P") and len(pid) == 13 for pid in list(population)[:100])


def test_exact_size_when_scans_is_given(premises: list[Premises]) -> None:
    few = synth.generate_scans(5, premises, DAY, persons=50, scans=2000, **SMALL_RATES)
    assert len(few) == few.truth.total == 2000
    assert few.truth.bad == 40 and few.truth.duplicates == 80 and few.truth.repeats == 100
    assert len({s["person_id"] for s in few if isinstance(s.get("person_id"), str)}) <= 50
    tiny = synth.generate_scans(
        5,
        premises[:3],
        DAY,
        persons=1,
        scans=3,
        duplicate_rate=0.0,
        repeat_rate=0.0,
        late_rate=0.0,
        bad_rate=0.0,
        unknown_premises_rate=0.0,
    )
    assert len(tiny) == 3


def test_default_size_is_a_day_of_ninh_thuan(premises: list[Premises]) -> None:
    full = synth.generate_scans(1, premises, DAY)
    assert 115_000 * 2 <= full.truth.total <= 115_000 * 4
    assert full.truth.persons > 110_000
    assert full.truth.bad == round(
        (
            full.truth.total
            - full.truth.duplicates
            - full.truth.repeats
            - full.truth.bad
            - full.truth.unknown_premises
        )
        * 0.001
    )


def test_bad_arguments_are_refused(premises: list[Premises]) -> None:
    with pytest.raises(ValueError):
        synth.generate_scans(1, [], DAY)
    with pytest.raises(ValueError):
        synth.generate_scans(1, premises, date(2019, 6, 1), persons=10)
    with pytest.raises(ValueError):
        synth.generate_scans(1, premises, DAY, persons=10, bad_rate=1.5)
    with pytest.raises(ValueError):  # one person cannot make 100 distinct visits to 2 places
        synth.generate_scans(1, premises[:2], DAY, persons=1, scans=100)


@pytest.mark.parametrize("suffix", [".jsonl", ".msgpack"])
def test_scan_files_round_trip(day: synth.ScanDay, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"scans{suffix}"
    assert synth.write_scans(path, day.scans) == len(day)
    back = list(synth.read_scans(path))
    assert back == day.scans
    # bad records keep their defect through the file (a float stays a float)
    assert Counter(_check(s, day.day_end_ms) for s in back) == Counter(
        _check(s, day.day_end_ms) for s in day
    )


def test_scan_file_format_by_suffix_or_flag(tmp_path: Path) -> None:
    scans: list[dict[str, object]] = [{"event_id": "e1", "kind": "checkin"}]
    with pytest.raises(ValueError, match="format"):
        synth.write_scans(tmp_path / "scans.txt", scans)
    path = tmp_path / "scans.bin"
    synth.write_scans(path, scans, "msgpack")
    assert list(synth.read_scans(path, "msgpack")) == scans
