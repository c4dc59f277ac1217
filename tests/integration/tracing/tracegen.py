"""Test data for the exposure queries, and a brute-force reference of the rules.

`generate(seed)` builds a small province with `random.Random(seed)`: premises with a
popularity skew, persons visiting them over several days with morning and evening peaks,
scans across local and UTC midnight, repeats, check-outs (some late, some missing, some
without a check-in), co-visitors placed exactly on and just beyond the window edges of
chosen cases, and persons scanning at several premises within an hour (`_hops`).

The reference (`reference_trace`) is plain Python over the same rows, written from the
rules' text (tracing/rules.py, tracing/sql.py docstrings), not from the SQL: nested loops
over scans and visits, visits built from all of a person's scans at a premises and, under
`cap_at_next_scan`, cut at the person's next scan elsewhere by a scan of all their scans.
"""

from __future__ import annotations

import random
import uuid
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ingest.premises import DWELL_MINUTES
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
from sinks.writer import INSERT_SETTINGS
from tracing.rules import MINUTE_MS, Rule

HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
LOCAL_OFFSET_MS = 7 * HOUR_MS  # Asia/Ho_Chi_Minh, no DST
HOURLY = (
    0.3, 0.2, 0.1, 0.1, 0.3, 1.5, 4.0, 10.0, 10.0, 5.5, 4.5, 5.0,
    5.5, 3.5, 3.5, 4.0, 5.0, 9.5, 10.0, 6.0, 4.0, 2.5, 1.5, 1.0,
)  # fmt: skip
DISTRICTS = ("Phan Rang-Tháp Chàm", "Ninh Hải", "Ninh Phước", "Ninh Sơn", "Thuận Nam")
CATEGORIES = tuple(DWELL_MINUTES)


@dataclass(frozen=True, slots=True)
class PremisesRow:
    premises_id: str
    name: str
    category: str
    district: str
    ward: str
    agency: str

    @property
    def dwell(self) -> int:
        return DWELL_MINUTES[self.category]


@dataclass(frozen=True, slots=True)
class Scan:
    event_id: str
    person_id: str
    premises_id: str
    t: int  # epoch ms UTC
    kind: str  # checkin | checkout


@dataclass
class Province:
    premises: dict[str, PremisesRow]
    scans: list[Scan]
    start_ms: int  # local midnight of the first day, as UTC epoch ms
    days: int
    cases: list[str] = field(default_factory=list)


def _local_midnight_days_ago(days: int) -> int:
    now = datetime.now(tz=UTC)
    local = now + timedelta(hours=7)
    midnight_local = datetime(local.year, local.month, local.day, tzinfo=UTC)
    return int((midnight_local - timedelta(days=days)).timestamp() * 1000) - LOCAL_OFFSET_MS


def generate(
    seed: int, *, persons: int = 3000, premises: int = 250, days: int = 4, cases: int = 8
) -> Province:
    rng = random.Random(seed)
    start = _local_midnight_days_ago(days + 2)
    prem: dict[str, PremisesRow] = {}
    for i in range(premises):
        cat = rng.choice(CATEGORIES)
        district = rng.choice(DISTRICTS)
        pid = f"NT-{i:06d}"
        prem[pid] = PremisesRow(pid, f"{cat} {i} (Chợ)", cat, district, f"ward {i % 9}", "UBND")
    ids = list(prem)
    weights = [1.0 / (r + 1) ** 0.9 for r in range(premises)]  # popularity skew
    people = [f"P{rng.getrandbits(48):012x}" for _ in range(persons)]
    scans: list[Scan] = []

    def add(person: str, premises_id: str, t: int, kind: str = "checkin") -> None:
        scans.append(Scan(uuid.UUID(int=rng.getrandbits(128)).hex, person, premises_id, t, kind))

    def visit(person: str, premises_id: str, t: int) -> None:
        r = rng.random()
        if r < 0.08:  # a check-out with no check-in
            add(person, premises_id, t, "checkout")
            return
        add(person, premises_id, t)
        if rng.random() < 0.2:  # repeats inside the merge gap
            add(person, premises_id, t + rng.randint(1, 29 * 60) * 1000)
        if rng.random() < 0.05:  # a repeat just beyond it: a second visit
            add(person, premises_id, t + 31 * MINUTE_MS + rng.randint(0, 600_000))
        if rng.random() < 0.35:  # a check-out, sometimes hours later
            add(person, premises_id, t + rng.randint(5, 400) * MINUTE_MS, "checkout")
            if rng.random() < 0.1:
                add(person, premises_id, t + rng.randint(401, 420) * MINUTE_MS, "checkout")

    for person in people:
        for _ in range(rng.choice((1, 2, 2, 3, 3, 4, 5, 6))):
            day = rng.randrange(days)
            hour = rng.choices(range(24), HOURLY)[0]
            t = start + day * DAY_MS + hour * HOUR_MS + rng.randrange(HOUR_MS)
            t -= t % 1000 if rng.random() < 0.5 else 0
            visit(person, rng.choices(ids, weights)[0], t)

    # Cases: busy persons; around each case scan, co-visitors placed on the edges.
    chosen = rng.sample(people, cases)
    for case in chosen:
        for _ in range(rng.randint(4, 7)):
            day = rng.randrange(days)
            # around local midnight, UTC midnight (07:00 local) and the evening peak
            hour = rng.choice((23, 0, 6, 7, 18))
            t = start + day * DAY_MS + hour * HOUR_MS + rng.randrange(-30, 30) * MINUTE_MS
            p = rng.choices(ids, weights)[0]
            visit(case, p, t)
            for edge in (-60, 60):
                for delta_ms in (0, 1, -1):
                    other = rng.choice(people)
                    if other != case:
                        add(other, p, t + edge * MINUTE_MS + (delta_ms if edge > 0 else -delta_ms))
    _hops(rng, prem, weights, people, chosen, scans, add)
    scans.sort(key=lambda s: (s.premises_id, s.t, s.event_id))
    return Province(prem, scans, start, days, chosen)


def _hops(
    rng: random.Random,
    prem: dict[str, PremisesRow],
    weights: list[float],
    people: list[str],
    cases: list[str],
    scans: list[Scan],
    add: Callable[..., None],
) -> None:
    """What makes the cap at the next scan elsewhere matter: persons at several premises
    within an hour, check-outs forgotten (done after a scan elsewhere) or made at the very
    time of a scan elsewhere, scans elsewhere exactly at a visit's start, at its end, or
    at the case's visit's start or 15 minutes into it; around the cases' own scans (their
    co-visitors and the cases themselves hop) and anywhere."""
    ids = list(prem)
    case_scans = [s for s in scans if s.person_id in set(cases)]

    def elsewhere(premises_id: str) -> str:
        while True:
            other = rng.choices(ids, weights)[0]
            if other != premises_id:
                return other

    for c in case_scans:
        for _ in range(3):
            x = rng.choice(people)
            if x == c.person_id:
                continue
            before = rng.randint(0, 90) * MINUTE_MS
            add(x, c.premises_id, c.t - before)
            r = rng.random()
            if r < 0.2:  # elsewhere exactly at the case's scan: capped to touch it
                add(x, elsewhere(c.premises_id), c.t)
            elif r < 0.35:  # exactly 15 minutes together (`min_overlap_min` 15)
                add(x, elsewhere(c.premises_id), c.t + 15 * MINUTE_MS)
            elif r < 0.5:  # a check-out forgotten: elsewhere first, checked out later
                add(x, elsewhere(c.premises_id), c.t + rng.randint(-10, 30) * MINUTE_MS)
                add(x, c.premises_id, c.t + rng.randint(31, 240) * MINUTE_MS, "checkout")
            elif r < 0.6:  # checked out at the very time of the scan elsewhere
                out = c.t + rng.randint(1, 40) * MINUTE_MS
                add(x, c.premises_id, out, "checkout")
                add(x, elsewhere(c.premises_id), out)
            else:  # elsewhere within the hour
                add(
                    x,
                    elsewhere(c.premises_id),
                    c.t + rng.randint(-before // MINUTE_MS, 60) * MINUTE_MS,
                )
        if rng.random() < 0.5:  # the case hops on; co-visitors stay, some arrive later
            hop = c.t + rng.randint(0, 45) * MINUTE_MS
            add(c.person_id, elsewhere(c.premises_id), hop)
            for delta in (-1, 0, 1, rng.randint(2, 60)):
                x = rng.choice(people)
                if x != c.person_id:
                    add(x, c.premises_id, hop + delta * MINUTE_MS)
    start = min(s.t for s in scans)
    end = max(s.t for s in scans)
    for x in rng.sample(people, len(people) // 6):
        t = rng.randrange(start, end)
        p = rng.choices(ids, weights)[0]
        add(x, p, t)
        for _ in range(rng.randint(1, 3)):
            q = elsewhere(p)
            r = rng.random()
            if r < 0.15:
                step = 0  # at the same time elsewhere: caps neither
            elif r < 0.3:  # exactly at the end of the visit by the dwell time
                step = prem[p].dwell * MINUTE_MS
            else:
                step = rng.randint(1, 60) * MINUTE_MS
            if rng.random() < 0.3:  # a check-out at p, forgotten or at q's time
                add(x, p, t + step + rng.choice((0, rng.randint(1, 120))) * MINUTE_MS, "checkout")
            t += step
            add(x, q, t)
            p = q


def rows_for_insert(p: Province) -> list[tuple[object, ...]]:
    out = []
    for s in p.scans:
        pr = p.premises[s.premises_id]
        at = datetime.fromtimestamp(s.t / 1000, tz=UTC)
        out.append(
            (
                s.event_id,
                s.person_id,
                s.premises_id,
                at,
                s.kind,
                "gw-test",
                at + timedelta(seconds=2),
                at + timedelta(seconds=3),
                pr.name,
                pr.category,
                pr.district,
                pr.ward,
                pr.agency,
                pr.dwell,
            )
        )
    return out


INSERT_COLUMNS = (
    "event_id, person_id, premises_id, scanned_at, kind, gateway_id, received_at,"
    " processed_at, premises_name, category, district, ward, agency, dwell_minutes"
)

HandScan = tuple[str, str, str, int, str]  # event_id, person_id, premises_id, epoch ms, kind
Place = tuple[str, str, str, str, str, int]  # name, category, district, ward, agency, dwell


def insert_scans(
    settings: ClickHouseSettings,
    scans: Sequence[HandScan],
    places: Mapping[str, Place] | None = None,
) -> None:
    """Hand-made scans into `scans` as the sink stores them, enriched from `places` by
    premises id (by default the id as the name of a 20-minute shop)."""
    rows = []
    for event_id, person_id, premises_id, t, kind in scans:
        at = datetime.fromtimestamp(t / 1000, tz=UTC)
        place = (places or {}).get(premises_id, (premises_id, "shop", "d", "w", "a", 20))
        rows.append((event_id, person_id, premises_id, at, kind, "gw", None, at, *place))
    client = connect(settings)
    try:
        # the sink's settings: a duplicate inside the block stays stored, as it does there
        client.execute(
            f"INSERT INTO scans ({INSERT_COLUMNS}) VALUES", rows, settings=INSERT_SETTINGS
        )
    finally:
        client.disconnect()


# ---------------------------------------------------------------------------------------
# The reference: the rules in plain Python.


@dataclass(frozen=True, slots=True)
class Visit:
    person_id: str
    premises_id: str
    start: int
    end: int
    scan_times: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class RefContact:
    person_id: str
    premises_id: str
    degree: int
    via: str
    case_from: int
    case_to: int
    contact_from: int
    contact_to: int
    overlap_ms: int | None


class Reference:
    def __init__(self, p: Province, rule: Rule) -> None:
        self.p = p
        self.rule = rule
        self.by_premises: dict[str, list[Scan]] = defaultdict(list)
        self.by_person: dict[str, list[Scan]] = defaultdict(list)
        for s in p.scans:
            self.by_premises[s.premises_id].append(s)
            self.by_person[s.person_id].append(s)
        for lst in self.by_premises.values():
            lst.sort(key=lambda s: s.t)
        self.times = {k: [s.t for s in v] for k, v in self.by_premises.items()}
        self._visits: dict[tuple[str, str], list[Visit]] | None = None
        self._index: tuple[dict[str, list[Visit]], dict[str, list[Visit]]] | None = None

    # Visits: a person's scans at one premises, in (time, kind, event_id) order.
    def visits(self) -> dict[tuple[str, str], list[Visit]]:
        if self._visits is not None:
            return self._visits
        groups: dict[tuple[str, str], list[Scan]] = defaultdict(list)
        for s in self.p.scans:
            groups[(s.person_id, s.premises_id)].append(s)
        gap = self.rule.merge_gap_min * MINUTE_MS
        max_visit = self.rule.max_visit_min * MINUTE_MS
        out: dict[tuple[str, str], list[Visit]] = {}
        for key, lst in groups.items():
            lst.sort(key=lambda s: (s.t, 0 if s.kind == "checkin" else 1, s.event_id))
            runs: list[list[Scan]] = []
            for s in lst:
                if runs:
                    prev = runs[-1][-1]
                    same = s.t - prev.t <= gap or (
                        s.kind == "checkout"
                        and prev.kind == "checkin"
                        and s.t - prev.t <= max_visit
                    )
                    if same:
                        runs[-1].append(s)
                        continue
                runs.append([s])
            dwell = self.p.premises[key[1]].dwell * MINUTE_MS
            visits = []
            for run in runs:
                has_in = any(s.kind == "checkin" for s in run)
                closed = has_in and run[-1].kind == "checkout"
                start, last = run[0].t, run[-1].t
                visits.append(
                    Visit(key[0], key[1], start, last if closed else last + dwell,
                          tuple(s.t for s in run))
                )  # fmt: skip
            out[key] = visits
        if self.rule.cap_at_next_scan:
            out = {key: [self._capped(v) for v in vs] for key, vs in out.items()}
        self._visits = out
        return out

    def _capped(self, v: Visit) -> Visit:
        """One place at a time: the visit ends no later than the person's first scan at
        another premises after its start (a scan at its start exactly, or at or after its
        end, changes nothing)."""
        end = v.end
        for s in self.by_person[v.person_id]:
            if s.premises_id != v.premises_id and v.start < s.t < end:
                end = s.t
        return Visit(v.person_id, v.premises_id, v.start, end, v.scan_times)

    def _pairs_scan_window(self, seed: str, since: int, to: int, exclude: set[str]):
        w = self.rule.window_min * MINUTE_MS
        for c in self.by_person[seed]:
            if not since <= c.t <= to:
                continue
            lst, times = self.by_premises[c.premises_id], self.times[c.premises_id]
            for x in lst[bisect_left(times, c.t - w) : bisect_right(times, c.t + w)]:
                if x.person_id != seed and x.person_id not in exclude:
                    yield x.person_id, c.premises_id, c.t, c.t, x.t, x.t, None

    def _pairs_overlap(self, seed: str, since: int, to: int, exclude: set[str]):
        b = self.rule.buffer_min * MINUTE_MS
        m = self.rule.min_overlap_min * MINUTE_MS
        visits = self.visits()
        if self._index is None:
            self._index = (defaultdict(list), defaultdict(list))
            for (person, premises), vs in visits.items():
                self._index[0][person].extend(vs)
                self._index[1][premises].extend(vs)
        by_person, by_premises = self._index
        mine = [v for v in by_person[seed] if any(since <= t <= to for t in v.scan_times)]
        for cv in mine:
            for xv in by_premises[cv.premises_id]:
                if xv.person_id == seed or xv.person_id in exclude:
                    continue
                ov = min(xv.end, cv.end + b) - max(xv.start, cv.start - b)
                if ov >= m:
                    yield xv.person_id, xv.premises_id, cv.start, cv.end, xv.start, xv.end, ov

    def contacts(
        self, seeds: dict[str, int], to: int, exclude: set[str], degree: int
    ) -> list[RefContact]:
        pairs = self._pairs_scan_window if self.rule.name == "scan-window" else self._pairs_overlap
        # (person, premises, seed) -> aggregated times
        agg: dict[tuple[str, str, str], list] = {}
        for seed, since in seeds.items():
            for person, premises, c0, c1, x0, x1, ov in pairs(seed, since, to, exclude):
                key = (person, premises, seed)
                if key not in agg:
                    agg[key] = [c0, c1, x0, x1, ov]
                else:
                    a = agg[key]
                    a[0], a[1] = min(a[0], c0), max(a[1], c1)
                    a[2], a[3] = min(a[2], x0), max(a[3], x1)
                    a[4] = None if ov is None else max(a[4], ov)
        best: dict[tuple[str, str], RefContact] = {}
        for (person, premises, seed), (c0, c1, x0, x1, ov) in agg.items():
            cand = RefContact(person, premises, degree, seed, c0, c1, x0, x1, ov)
            cur = best.get((person, premises))
            if cur is None or (cand.contact_from, cand.via) < (cur.contact_from, cur.via):
                best[(person, premises)] = cand
        return list(best.values())


def reference_trace(p: Province, rule: Rule, case: str, frm: int, to: int) -> list[RefContact]:
    ref = Reference(p, rule)
    f1 = ref.contacts({case: frm}, to, {case}, 1)
    if rule.depth < 2 or not f1:
        return f1
    earliest: dict[str, int] = {}
    for c in f1:
        earliest[c.person_id] = min(earliest.get(c.person_id, c.contact_from), c.contact_from)
    f2 = ref.contacts(earliest, to, {case, *earliest}, 2)
    return f1 + f2
