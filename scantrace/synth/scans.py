"""A synthetic day of scans: `generate_scans(seed, premises, day)` (the package docstring
says what the records are), built in steps: where and when people scan (`_places`), the
base scans person by person, resends (late uploads, duplicates, repeats), scans at
unregistered premises, bad records, then arrival order and the ground truth.

Every step draws from the one seeded `random.Random`, in a fixed order: the same seed
gives the same day.
"""

from __future__ import annotations

import hashlib
import random
from bisect import bisect
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import accumulate
from typing import Final

from ingest.contract import MIN_SCANNED_AT_MS
from ingest.premises import Premises
from scantrace.synth.premises import allocate
from scantrace.synth.province import (
    ATTRACTION,
    CHECKOUT_P,
    CHECKOUT_P_DEFAULT,
    DISTRICT_POPULATION,
    DISTRICTS,
    HOME_DISTRICT_P,
    HOURLY_PROFILE,
    TZ,
    VISITS,
    VISITS_WEIGHT,
)

__all__ = [
    "BAD_REASONS",
    "FUTURE_MS",
    "REPEAT_MAX_MS",
    "REPEAT_MIN_MS",
    "Scan",
    "ScanDay",
    "ScanTruth",
    "day_bounds_ms",
    "generate_scans",
    "person_id",
    "person_ids",
]

Scan = dict[str, object]
# Far beyond any realistic server clock, but before the contract's 2100 limit, so the
# rejection is `future_timestamp` and not `bad_timestamp`.
FUTURE_MS: Final = 4_070_908_800_000  # 2099-01-01T00:00:00Z
BAD_REASONS: Final = ("missing_field", "wrong_type", "unknown_kind", "future_timestamp")
REPEAT_MIN_MS: Final = 60_000
REPEAT_MAX_MS: Final = 240_000
_HOUR_MS: Final = 3_600_000


@dataclass(frozen=True, slots=True)
class ScanTruth:
    """Exact expected counts for a `ScanDay`, counted while generating.

    Accounting, as the pipeline's counters should find it:
    `total = stored + duplicates + bad + unknown_premises`, `valid = total - bad`,
    `unique = stored + unknown_premises` (distinct event ids among valid records).
    """

    total: int  # records emitted
    valid: int  # records that pass ingest.contract.parse_scan
    bad: int  # records parse_scan rejects (dead letters)
    bad_by_reason: Mapping[str, int]  # ScanRejected.reason -> records
    unique: int  # distinct event_ids among valid records
    duplicates: int  # exact resends: valid records whose event_id came before
    repeats: int  # unique events repeating a same person/premises/kind scan 1-4 min apart
    unknown_premises: int  # unique valid events at premises not in the registry (parked)
    unknown_premises_ids: frozenset[str]
    stored: int  # unique valid events at known premises (what the store should hold)
    late: int  # stored events uploaded after the day (ScanDay.late)
    checkins: int  # among stored
    checkouts: int  # among stored
    visits: int  # visits among stored, repeats merged (merge window >= 4 min)
    persons: int  # distinct person_ids among stored
    stored_by_district: Mapping[str, int]
    stored_by_category: Mapping[str, int]
    stored_by_premises: Mapping[str, int]  # only premises with at least one scan


@dataclass(frozen=True, slots=True)
class ScanDay:
    """One local day of scans in arrival order, with arrival times and ground truth.

    Iterating a `ScanDay` yields its wire maps. `arrivals[i]` is when `scans[i]`
    reaches a gateway (epoch ms); `scans[late_start:]` are the late uploads.
    """

    day: date
    day_start_ms: int
    day_end_ms: int
    scans: list[Scan]
    arrivals: list[int]
    late_start: int
    truth: ScanTruth

    def __iter__(self) -> Iterator[Scan]:
        return iter(self.scans)

    def __len__(self) -> int:
        return len(self.scans)

    @property
    def on_time(self) -> list[Scan]:
        return self.scans[: self.late_start]

    @property
    def late(self) -> list[Scan]:
        return self.scans[self.late_start :]


def day_bounds_ms(day: date) -> tuple[int, int]:
    """Epoch ms of the start and end (exclusive) of a local day in Asia/Ho_Chi_Minh."""
    start = datetime(day.year, day.month, day.day, tzinfo=TZ)
    end = start + timedelta(days=1)  # Vietnam has no DST: always 24 h
    return int(start.timestamp()) * 1000, int(end.timestamp()) * 1000


def person_ids(seed: int, n: int) -> list[str]:
    """The pseudonymous ids of persons 0..n-1 of the population of `seed`.

    `P` and 12 hex characters, cut from one SHAKE-128 stream of the seed: person i's id
    depends only on the seed and i (a longer list extends a shorter one). The rare
    48-bit clash is resolved by appending `-<index>`, so ids are always distinct.
    """
    stream = hashlib.shake_128(f"scantrace-persons:{seed}".encode()).digest(6 * n).hex()
    ids = ["P" + stream[12 * i : 12 * i + 12] for i in range(n)]
    if len(set(ids)) != n:
        seen: set[str] = set()
        for i, pid in enumerate(ids):
            if pid in seen:
                ids[i] = pid = f"{pid}-{i}"
            seen.add(pid)
    return ids


def person_id(seed: int, index: int) -> str:
    """The id of one person (see `person_ids`)."""
    return person_ids(seed, index + 1)[index]


@dataclass(frozen=True, slots=True)
class _Picker:
    """Weighted choice by bisection: `members[bisect(cumulative, random() * total)]`."""

    members: list[int]
    cumulative: list[float]
    total: float

    @classmethod
    def build(cls, members: Iterable[int], weights: Iterable[float]) -> _Picker:
        """`weights` align with `members`, one each."""
        chosen = list(members)
        cumulative = list(accumulate(weights))
        if not chosen or len(cumulative) != len(chosen) or cumulative[-1] <= 0:
            raise ValueError("a picker needs positive weights, one per member")
        # One extra copy of the last member: random() * total can round up to total.
        return cls([*chosen, chosen[-1]], cumulative, cumulative[-1])


def generate_scans(
    seed: int,
    premises: Sequence[Premises],
    day: date,
    persons: int = 115_000,
    scans: int | None = None,
    *,
    duplicate_rate: float = 0.02,
    repeat_rate: float = 0.03,
    late_rate: float = 0.02,
    bad_rate: float = 0.001,
    unknown_premises_rate: float = 0.001,
) -> ScanDay:
    """A local day of scans at `premises` by `persons` people (see the package doc)."""
    rates = _Rates(duplicate_rate, repeat_rate, late_rate, bad_rate, unknown_premises_rate)
    _check(premises, persons, rates)
    day_start, day_end = day_bounds_ms(day)
    if day_start < MIN_SCANNED_AT_MS:
        raise ValueError(f"{day} is before the scan contract's earliest time (2020)")
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not security
    places = _places(rng, premises, day_start)

    # Sizes: with `scans`, exactly that many records; else one pass over the persons.
    if scans is not None:
        if scans < 1:
            raise ValueError("scans must be positive")
        n_dup, n_rep, n_late, n_bad, n_unknown = rates.counts(scans)
        target = scans - n_dup - n_rep - n_bad - n_unknown
        if target < 1:
            raise ValueError("rates leave no room for base scans")
    else:
        target = -1  # as many as the persons make in one pass

    # The people: stable pseudonymous ids and a home district by population.
    pids = person_ids(seed, persons)
    districts = places.districts
    d_members, d_cum, d_total = districts.members, districts.cumulative, districts.total
    random_ = rng.random
    homes = [
        places.home_picker[d_members[bisect(d_cum, random_() * d_total)]] for _ in range(persons)
    ]

    records = _base_scans(rng, places, pids, homes, target, day_end)
    n_base = len(records.out)
    base_persons = len({scan["person_id"] for scan in records.out})
    if scans is None:
        n_dup, n_rep, n_late, n_bad, n_unknown = rates.counts(n_base)
    if n_dup + n_late + n_rep > n_base:
        raise ValueError("duplicate, late and repeat rates together exceed the base scans")
    prem_count, repeated_checkins = _resends(
        rng, records, len(premises), n_dup, n_late, n_rep, day_end
    )
    used_unknown = _unknown_premises_scans(rng, records, places, pids, n_unknown)
    bad_by_reason = _bad_records(rng, records, places, pids, n_bad, day_start, day_end)
    sorted_scans, sorted_arrivals = _by_arrival(records.out, records.arrivals)

    stored = n_base + n_rep
    checkins = records.checkins + repeated_checkins
    by_district: dict[str, int] = {}
    by_category: dict[str, int] = {}
    by_premises: dict[str, int] = {}
    for p, count in enumerate(prem_count):
        if count:
            prem = premises[p]
            by_district[prem.district] = by_district.get(prem.district, 0) + count
            by_category[prem.category] = by_category.get(prem.category, 0) + count
            by_premises[prem.premises_id] = count
    total = len(records.out)
    truth = ScanTruth(
        total=total,
        valid=total - n_bad,
        bad=n_bad,
        bad_by_reason=bad_by_reason,
        unique=stored + n_unknown,
        duplicates=n_dup,
        repeats=n_rep,
        unknown_premises=n_unknown,
        unknown_premises_ids=frozenset(used_unknown),
        stored=stored,
        late=n_late,
        checkins=checkins,
        checkouts=stored - checkins,
        visits=records.checkins,  # one check-in per visit
        persons=base_persons,
        stored_by_district=by_district,
        stored_by_category=by_category,
        stored_by_premises=by_premises,
    )
    return ScanDay(
        day=day,
        day_start_ms=day_start,
        day_end_ms=day_end,
        scans=sorted_scans,
        arrivals=sorted_arrivals,
        late_start=total - n_late,
        truth=truth,
    )


@dataclass(frozen=True, slots=True)
class _Rates:
    duplicate: float
    repeat: float
    late: float
    bad: float
    unknown_premises: float

    def counts(self, total: int) -> tuple[int, int, int, int, int]:
        """Duplicates, repeats, late uploads, bad records and unknown-premises scans for
        `total` records (round(total * rate) each)."""
        n_dup, n_rep, n_late, n_bad, n_unknown = (
            round(total * r)
            for r in (self.duplicate, self.repeat, self.late, self.bad, self.unknown_premises)
        )
        return n_dup, n_rep, n_late, n_bad, n_unknown


def _check(premises: Sequence[Premises], persons: int, rates: _Rates) -> None:
    if not premises:
        raise ValueError("need at least one premises")
    if persons < 1:
        raise ValueError("need at least one person")
    named = {
        "duplicate_rate": rates.duplicate,
        "repeat_rate": rates.repeat,
        "late_rate": rates.late,
        "bad_rate": rates.bad,
        "unknown_premises_rate": rates.unknown_premises,
    }
    for name, rate in named.items():
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be within 0..1, got {rate}")


def _event_id(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"  # the uuid4().hex shape


@dataclass(frozen=True, slots=True)
class _Places:
    """Where and when the day's people scan."""

    ids: list[str]  # premises ids, by premises index
    known_ids: set[str]
    checkout_p: list[float]  # by premises index: the chance a visit also checks out
    everywhere: _Picker  # premises indexes, province-wide, weighted by attraction
    home_picker: list[_Picker]  # by district index: that district's premises
    visit_counts: _Picker  # visits a person makes in the day
    districts: _Picker  # district indexes, by population
    hour_table: list[int]  # 4096 slots of hour starts (epoch ms), by the hourly profile


def _places(rng: random.Random, premises: Sequence[Premises], day_start: int) -> _Places:
    """Premises pickers, per district and province-wide, weighted by attraction (a
    category's pull times a Pareto draw per premises), and the check-in hour table."""
    ids = [p.premises_id for p in premises]
    checkout_p = [CHECKOUT_P.get(x.category, CHECKOUT_P_DEFAULT) for x in premises]
    weights = [ATTRACTION.get(x.category, 3.0) * rng.paretovariate(2.0) for x in premises]
    everywhere = _Picker.build(range(len(premises)), weights)
    district_members: dict[str, list[int]] = {}
    for i, x in enumerate(premises):
        district_members.setdefault(x.district, []).append(i)
    pickers = {d: _Picker.build(m, (weights[i] for i in m)) for d, m in district_members.items()}
    # Hour of a check-in: a 4096-slot table of hour starts, indexed by 12 random bits.
    slots = allocate(4096, {str(h): w for h, w in enumerate(HOURLY_PROFILE)})
    return _Places(
        ids=ids,
        known_ids=set(ids),
        checkout_p=checkout_p,
        everywhere=everywhere,
        home_picker=[pickers.get(d, everywhere) for d in DISTRICTS],
        visit_counts=_Picker.build(VISITS, VISITS_WEIGHT),
        districts=_Picker.build(range(len(DISTRICTS)), DISTRICT_POPULATION.values()),
        hour_table=[day_start + int(h) * _HOUR_MS for h, c in slots.items() for _ in range(c)],
    )


@dataclass(slots=True)
class _Records:
    """The records so far, in construction order, with their arrival times."""

    out: list[Scan] = field(default_factory=list)
    arrivals: list[int] = field(default_factory=list)
    rec_prem: list[int] = field(default_factory=list)  # premises index of each base scan
    checkins: int = 0  # among the base scans


def _base_scans(
    rng: random.Random,
    places: _Places,
    pids: list[str],
    homes: list[_Picker],
    target: int,
    day_end: int,
) -> _Records:
    """Base scans, person by person, wrapping around while `target` (>= 0) asks for more.
    A person visits distinct premises (over the whole day), which keeps `repeats` exact.
    One uniform draw often serves two decisions (home district or not, and which
    premises; checkout or not, and how much later), and the low 15 bits of the event
    id's random bits are the arrival delay (0-33 s): fewer calls, same distributions."""
    random_ = rng.random
    getrandbits = rng.getrandbits
    persons = len(pids)
    ids, checkout_p, hour_table = places.ids, places.checkout_p, places.hour_table
    records = _Records()
    out, arrivals, rec_prem = records.out, records.arrivals, records.rec_prem
    append, arrive, note = out.append, arrivals.append, rec_prem.append
    visit_counts, everywhere = places.visit_counts, places.everywhere
    v_members, v_cum, v_total = visit_counts.members, visit_counts.cumulative, visit_counts.total
    e_members, e_cum, e_total = everywhere.members, everywhere.cumulative, everywhere.total
    home_p = HOME_DISTRICT_P
    e_scale = e_total / (1.0 - home_p)
    hour_ms = _HOUR_MS
    # Only a second round needs what everyone visited in the first.
    visited: list[list[int]] | None = [[] for _ in range(persons)] if target >= 0 else None
    person = 0
    round_start = 0
    n_checkins = 0
    while target < 0 or len(out) < target:
        if person == persons:
            if target < 0:
                break
            if len(out) == round_start:
                raise ValueError(f"{persons} persons cannot make {target} distinct visits")
            person, round_start = 0, len(out)
        pid = pids[person]
        home = homes[person]
        hm, hc, h_scale = home.members, home.cumulative, home.total / home_p
        mine: list[int] = [] if visited is None else visited[person]
        for _ in range(v_members[bisect(v_cum, random_() * v_total)]):
            tries = 0
            while True:
                u = random_()
                if u < home_p:
                    p = hm[bisect(hc, u * h_scale)]
                else:
                    p = e_members[bisect(e_cum, (u - home_p) * e_scale)]
                if p not in mine:
                    break
                tries += 1
                if tries == 4:
                    p = -1  # this person already knows every place they would go
                    break
            if p < 0:
                continue
            mine.append(p)
            pid_p = ids[p]
            t = hour_table[getrandbits(12)] + int(random_() * hour_ms)
            kind = "checkin"
            while True:  # the check-in, then maybe its check-out
                bits = getrandbits(128)
                append(
                    {
                        "event_id": f"{bits:032x}",
                        "person_id": pid,
                        "premises_id": pid_p,
                        "scanned_at": t,
                        "kind": kind,
                    }
                )
                arrive(t + (bits & 0x7FFF))
                note(p)
                if kind == "checkout":
                    break
                n_checkins += 1
                u = random_()
                q = checkout_p[p]
                if u >= q:
                    break
                t += 1_200_000 + int(u / q * 6_000_000)  # 20-120 min later
                if t >= day_end:
                    break
                kind = "checkout"
        person += 1
    if 0 <= target < len(out):  # the last person is cut short
        n_checkins -= sum(1 for scan in out[target:] if scan["kind"] == "checkin")
        del out[target:], arrivals[target:], rec_prem[target:]
    records.checkins = n_checkins
    return records


def _resends(
    rng: random.Random,
    records: _Records,
    n_premises: int,
    n_dup: int,
    n_late: int,
    n_rep: int,
    day_end: int,
) -> tuple[list[int], int]:
    """Late uploads, duplicates and repeats, each of a distinct base scan. Returns the
    stored scans per premises index and the check-ins among the repeats."""
    random_ = rng.random
    out, arrivals, rec_prem = records.out, records.arrivals, records.rec_prem
    sources = rng.sample(range(len(out)), n_dup + n_late + n_rep)
    dup_src = sources[:n_dup]
    late_src = sources[n_dup : n_dup + n_late]
    rep_src = sources[n_dup + n_late :]
    for i in late_src:  # offline phones: uploaded 1-36 h after the day ends
        arrivals[i] = day_end + _HOUR_MS + int(random_() * 35 * _HOUR_MS)
    for i in dup_src:  # a resend after a lost acknowledgement
        out.append(dict(out[i]))
        arrivals.append(arrivals[i] + 1_000 + int(random_() * 299_000))
    prem_count = [0] * n_premises
    for p in rec_prem:
        prem_count[p] += 1
    checkins = 0
    for i in rep_src:  # the same scan again a minute or few later, new event id
        delta = REPEAT_MIN_MS + int(random_() * (REPEAT_MAX_MS - REPEAT_MIN_MS + 1))
        rep = dict(out[i])
        t = int(rep["scanned_at"])  # type: ignore[call-overload]
        t = t + delta if t + delta < day_end else t - delta
        rep["event_id"] = _event_id(rng)
        rep["scanned_at"] = t
        out.append(rep)
        arrivals.append(t + int(random_() * 30_000))
        prem_count[rec_prem[i]] += 1
        checkins += rep["kind"] == "checkin"
    return prem_count, checkins


def _unknown_premises_scans(
    rng: random.Random, records: _Records, places: _Places, pids: list[str], n_unknown: int
) -> set[str]:
    """Check-ins at unregistered premises: a handful of ids, each scanned by distinct
    people. Returns the ids used."""
    random_ = rng.random
    persons = len(pids)
    ids = places.ids
    top = max((int(x[3:]) for x in ids if x.startswith("NT-") and x[3:].isdigit()), default=0)
    unknown_ids: list[str] = []
    candidate = max(top + 1, 900_000)
    while len(unknown_ids) < max(1, (n_unknown + 2) // 3):
        uid = f"NT-{candidate:06d}"
        if uid not in places.known_ids:
            unknown_ids.append(uid)
        candidate += 1
    unknown_pairs: set[tuple[int, int]] = set()
    used_unknown: set[str] = set()
    for _ in range(n_unknown):
        while True:
            pair = (int(random_() * persons), int(random_() * len(unknown_ids)))
            if pair not in unknown_pairs:
                break
            if len(unknown_pairs) >= persons * len(unknown_ids):
                raise ValueError("too many unknown-premises scans for so few persons")
        unknown_pairs.add(pair)
        used_unknown.add(unknown_ids[pair[1]])
        t = places.hour_table[rng.getrandbits(12)] + int(random_() * _HOUR_MS)
        records.out.append(
            {
                "event_id": _event_id(rng),
                "person_id": pids[pair[0]],
                "premises_id": unknown_ids[pair[1]],
                "scanned_at": t,
                "kind": "checkin",
            }
        )
        records.arrivals.append(t + int(random_() * 30_000))
    return used_unknown


def _bad_records(
    rng: random.Random,
    records: _Records,
    places: _Places,
    pids: list[str],
    n_bad: int,
    day_start: int,
    day_end: int,
) -> dict[str, int]:
    """Records that break the contract in exactly one way each; returns their count by
    the reason `parse_scan` gives."""
    random_ = rng.random
    persons = len(pids)
    everywhere = places.everywhere
    e_members, e_cum, e_total = everywhere.members, everywhere.cumulative, everywhere.total
    bad_by_reason = dict.fromkeys(BAD_REASONS, 0)
    for _ in range(n_bad):
        t = day_start + int(random_() * (day_end - day_start))
        rec: Scan = {
            "event_id": _event_id(rng),
            "person_id": pids[int(random_() * persons)],
            "premises_id": places.ids[e_members[bisect(e_cum, random_() * e_total)]],
            "scanned_at": t,
            "kind": "checkin",
        }
        reason = BAD_REASONS[int(random_() * len(BAD_REASONS))]
        if reason == "missing_field":
            del rec[rng.choice(("event_id", "person_id", "premises_id", "scanned_at"))]
        elif reason == "wrong_type":
            broken = rng.choice(("person_id", "scanned_at", "kind"))
            rec[broken] = {"person_id": 84_912_345_678, "scanned_at": float(t), "kind": 1}[broken]
        elif reason == "unknown_kind":
            rec["kind"] = rng.choice(("enter", "exit", "CHECKIN", "check-in"))
        else:
            rec["scanned_at"] = FUTURE_MS + int(random_() * 86_400_000)
        bad_by_reason[reason] += 1
        records.out.append(rec)
        records.arrivals.append(t + int(random_() * 30_000))
    return bad_by_reason


def _by_arrival(out: list[Scan], arrivals: list[int]) -> tuple[list[Scan], list[int]]:
    """The records and their arrivals in arrival order (stable): one sort of plain ints
    carrying the arrival and the position."""
    shift = len(out).bit_length()
    mask = (1 << shift) - 1
    keys = sorted([(a << shift) | i for i, a in enumerate(arrivals)])
    return [out[k & mask] for k in keys], [k >> shift for k in keys]
