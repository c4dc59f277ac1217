"""A synthetic province shaped like Ninh Thuan, Vietnam: premises registry and a day of scans.

Everything is deterministic from a seed: each generator builds its own
`random.Random(seed)` and never touches the global one, so the same seed gives the
same premises, the same scans in the same order, and the same ground truth.

Premises
    `generate_premises(seed, n)` spreads `n` premises over the seven districts by
    population (`DISTRICT_POPULATION`), over real ward and commune names, with a
    category mix that has many shops, restaurants, offices and schools and only a few
    malls and bus stations. Ids are `NT-000001`, `NT-000002`, ...

A day of scans
    `generate_scans(seed, premises, day)` returns a `ScanDay` (iterate it for the
    scans): the wire maps a gateway would POST (`event_id` as 32 hex characters like
    `uuid4().hex`, drawn from the seeded Random; `person_id`; `premises_id`;
    `scanned_at` in epoch ms; `kind`) in *arrival order*, a parallel list of arrival
    times, and a `ScanTruth` with exact expected counts, counted while generating.

    The records are, in this order of construction:
    - base scans: each person (pseudonymous `P` + 12 hex chars) checks in at a few
      distinct premises, mostly in their home district, at times drawn from an hourly
      profile with morning (7-9h) and evening (17-19h) peaks in Asia/Ho_Chi_Minh
      local time; some visits also check out 20-120 minutes later (within the day);
    - exact duplicates: a base scan resent unchanged (same `event_id`) 1-300 s later;
    - repeats: the same person, premises and kind as a base scan, a new `event_id`,
      1-4 minutes after it (before it when that would leave the day);
    - unknown premises: valid check-ins at ids that are not in the registry
      (`NT-9xxxxx`, a few scans per unknown premises), to be parked downstream;
    - bad records, each breaking the contract in exactly one way, so
      `ingest.contract.parse_scan` rejects it with a known reason: a missing field,
      a wrong type, an unknown kind, or a timestamp in 2099 (`future_timestamp`
      for any realistic clock).

    Late uploads are base scans whose phone was offline: their `scanned_at` is
    unchanged, but they arrive 1-36 hours after the end of the day. Because
    `ScanDay.scans` is sorted by arrival, the late ones are exactly the tail
    `scans[late_start:]` (`ScanDay.late`); a loader that wants to send them later
    sends `ScanDay.on_time` first. Every other record arrives 0-33 s after its
    `scanned_at` (a resend up to 5 minutes after the original).

    Size: by default one record stream for `persons` people (about 2.7 base scans
    each, a few hundred thousand records for Ninh Thuan's 115,000 app users), and
    the anomaly counts are `round(base * rate)`. With `scans=N` the output has
    exactly N records and the anomaly counts are `round(N * rate)`.

Files
    `write_premises_csv` / `read_premises_csv` (UTF-8, `CSV_COLUMNS`),
    `write_population_csv` (district,population), `write_scans` / `read_scans`
    (JSON lines for `.jsonl`, a msgpack stream for `.msgpack`).

Modules: `province` (the data tables: districts, wards, names, shares, profiles),
`premises` (the registry generator), `scans` (the day-of-scans generator), `files`
(reading and writing the files above); this package offers their public names.
"""

from scantrace.synth.files import (
    ScanFormat,
    read_premises_csv,
    read_scans,
    write_population_csv,
    write_premises_csv,
    write_scans,
)
from scantrace.synth.premises import generate_premises
from scantrace.synth.province import (
    AGENCIES,
    AGENCY_CULTURE,
    AGENCY_EDUCATION,
    AGENCY_HEALTH,
    AGENCY_PRIVATE,
    AGENCY_TRADE,
    AGENCY_TRANSPORT,
    CATEGORY_SHARE,
    CITY,
    DISTRICT_POPULATION,
    DISTRICTS,
    HOME_DISTRICT_P,
    HOURLY_PROFILE,
    LAT_RANGE,
    LON_RANGE,
    PROVINCE,
    TZ,
    WARDS,
    district_agency,
)
from scantrace.synth.scans import (
    BAD_REASONS,
    FUTURE_MS,
    REPEAT_MAX_MS,
    REPEAT_MIN_MS,
    Scan,
    ScanDay,
    ScanTruth,
    day_bounds_ms,
    generate_scans,
    person_id,
    person_ids,
)

__all__ = [
    "AGENCIES",
    "AGENCY_CULTURE",
    "AGENCY_EDUCATION",
    "AGENCY_HEALTH",
    "AGENCY_PRIVATE",
    "AGENCY_TRADE",
    "AGENCY_TRANSPORT",
    "BAD_REASONS",
    "CATEGORY_SHARE",
    "CITY",
    "DISTRICTS",
    "DISTRICT_POPULATION",
    "FUTURE_MS",
    "HOME_DISTRICT_P",
    "HOURLY_PROFILE",
    "LAT_RANGE",
    "LON_RANGE",
    "PROVINCE",
    "REPEAT_MAX_MS",
    "REPEAT_MIN_MS",
    "TZ",
    "WARDS",
    "Scan",
    "ScanDay",
    "ScanFormat",
    "ScanTruth",
    "day_bounds_ms",
    "district_agency",
    "generate_premises",
    "generate_scans",
    "person_id",
    "person_ids",
    "read_premises_csv",
    "read_scans",
    "write_population_csv",
    "write_premises_csv",
    "write_scans",
]
