"""Example tests for the processors core: every path with its exact output, and the
accounting identity after each scenario."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from processors_testkit import (
    DAY,
    HOUR,
    MINUTE,
    NOW,
    SECOND,
    Feed,
    assert_balanced,
    event_ids,
    make_core,
    pack,
    premises,
    serializing_state,
    wire,
)

from ingest.deadletter import DeadLetter
from ingest.premises import Premises
from ingest.wire import raw_frames
from processors import core as core_module
from processors.core import Counts, ProcessorCore, Result
from processors.records import EnrichedScan, decode_frame, encode_frames
from processors.state import premises_entry

T = NOW - 2 * HOUR  # a scan time comfortably in the past


def enriched(event_id: str, processed_at: int = NOW, **overrides: Any) -> EnrichedScan:
    """The EnrichedScan for `wire(event_id)` at the default premises P1."""
    fields: dict[str, Any] = {
        "event_id": event_id,
        "person_id": "p1",
        "premises_id": "P1",
        "scanned_at": NOW - 10 * MINUTE,
        "kind": "checkin",
        "gateway_id": "gw-1",
        "received_at": None,
        "schema": 1,
        "premises_name": "Cho Phan Rang",
        "category": "market",
        "district": "Phan Rang-Thap Cham",
        "ward": "Thanh Son",
        "agency": "So Cong Thuong",
        "dwell_minutes": 45,
        "processed_at": processed_at,
    }
    fields.update(overrides)
    return EnrichedScan(**fields)


def counts(result: Result) -> dict[str, object]:
    return result.counts.as_dict()


def c(**values: Any) -> dict[str, object]:
    """Expected counts: zeros unless given."""
    base: dict[str, object] = {
        "received": 0,
        "enriched": 0,
        "duplicates": 0,
        "repeats": 0,
        "parked": 0,
        "released": 0,
        "dead_lettered": {},
    }
    base.update(values)
    return base


# -- enrichment -----------------------------------------------------------------------------


def test_a_valid_scan_is_enriched_with_every_premises_field() -> None:
    core = make_core(premises())
    feed = Feed()
    result = core.process([feed.scan("e1", received_at=NOW - 2 * SECOND)], NOW)
    assert result.enriched == [enriched("e1", received_at=NOW - 2 * SECOND)]
    assert result.dead_letters == []
    assert counts(result) == c(received=1, enriched=1)
    assert_balanced(core, result)


def test_iso_timestamps_take_the_contract_path_and_give_epoch_ms() -> None:
    core = make_core(premises())
    feed = Feed()
    # NOW - 10 min is 2023-11-14T22:03:20Z; in Vietnam's offset:
    result = core.process([feed.scan("e1", scanned_at="2023-11-15T05:03:20+07:00")], NOW)
    assert result.enriched == [enriched("e1")]
    assert_balanced(core, result)


def test_a_premises_update_mid_stream_applies_to_later_scans_only() -> None:
    core = make_core(premises(version=1))
    feed = Feed()
    first = core.process([feed.scan("e1")], NOW)
    moved = premises(name="Cho Phan Rang moi", category="supermarket", ward="Do Vinh", version=2)
    assert core.upsert_premises(moved, NOW + 1).rows == []
    second = core.process([feed.scan("e2", person_id="p2")], NOW + 2)
    new_meta = {"premises_name": "Cho Phan Rang moi", "category": "supermarket"}
    assert first.enriched == [enriched("e1")]
    assert second.enriched == [
        enriched("e2", NOW + 2, person_id="p2", ward="Do Vinh", dwell_minutes=40, **new_meta)
    ]
    # An older version arriving late is stale and ignored; the same version replaces.
    core.upsert_premises(premises(name="stale", version=1), NOW + 3)
    third = core.process([feed.scan("e3", person_id="p3")], NOW + 4)
    assert third.enriched[0].premises_name == "Cho Phan Rang moi"
    core.upsert_premises(premises(name="re-imported", version=2), NOW + 5)
    fourth = core.process([feed.scan("e4", person_id="p4")], NOW + 6)
    assert fourth.enriched[0].premises_name == "re-imported"
    assert_balanced(core, first, second, third, fourth)


def test_unknown_categories_dwell_like_other() -> None:
    core = make_core(premises(category="spaceport"))
    result = core.process([Feed().scan("e1")], NOW)
    assert (result.enriched[0].category, result.enriched[0].dwell_minutes) == ("spaceport", 30)


# -- dead letters ---------------------------------------------------------------------------

GOOD = pack(wire("e1"))


@pytest.mark.parametrize(
    ("value", "reason", "detail", "event_id"),
    [
        (b"\xc1", "undecodable", "undecodable: msgpack: FormatError", ""),
        (b"", "undecodable", "undecodable: msgpack: ValueError", ""),
        (None, "undecodable", "undecodable: msgpack: ValueError", ""),
        (GOOD[:-3], "undecodable", "undecodable: msgpack: ValueError", ""),
        (GOOD + b"\x00", "undecodable", "undecodable: msgpack: ExtraData", ""),
        (pack(["e1", "p1"]), "not_a_map", "not_a_map: got list", ""),
        (pack({k: v for k, v in wire("e1").items() if k != "person_id"}),
         "missing_field", "missing_field (person_id)", "e1"),
        (pack(wire("e1", scanned_at=NOW + 5 * MINUTE + 1)),
         "future_timestamp", "future_timestamp (scanned_at): 300001 ms ahead of server time", "e1"),
        (pack(wire("e1", scanned_at=1_500_000_000_000)),
         "bad_timestamp", "bad_timestamp (scanned_at): 1500000000000 is out of range", "e1"),
        (pack(wire("e1", kind="exit")), "unknown_kind", "unknown_kind (kind): 'exit'", "e1"),
        (pack(wire("e1", venue="x")), "unknown_field", "unknown_field (venue)", "e1"),
        (pack(wire("e\x00")), "bad_id_chars",
         "bad_id_chars (event_id): control or non-printable characters", ""),
        (pack(wire("e1", person_id=7)), "wrong_type",
         "wrong_type (person_id): expected string, got int", "e1"),
        (pack(wire("e1", schema=2)), "unknown_schema", "unknown_schema (schema): 2 (supported: 1)",
         "e1"),
    ],
)  # fmt: skip
def test_undecodable_and_invalid_records_become_dead_letters(
    value: bytes | None, reason: str, detail: str, event_id: str
) -> None:
    core = make_core(premises())
    feed = Feed(topic="scans.raw", partition=5)
    feed.offset = 4242
    result = core.process([feed.raw(value), feed.scan("ok")], NOW)
    assert result.dead_letters == [
        DeadLetter(
            stage="worker",
            reason=reason,
            raw=value if value is not None else b"",
            detail=detail,
            topic="scans.raw",
            partition=5,
            offset=4242,
            at=NOW,
            event_id=event_id,
        )
    ]
    assert event_ids(result) == ["ok"]  # the rest of the batch goes on
    assert counts(result) == c(received=2, enriched=1, dead_lettered={reason: 1})
    assert_balanced(core, result)


def test_a_frame_of_scans_is_taken_scan_by_scan_in_its_place() -> None:
    """The HTTP gateway's frames (`ingest.wire.raw_frames`): each scan is received, deduped,
    enriched or dead-lettered alone, in order with the records around it; a bad scan's
    dead letter carries its own bytes and the frame's offset."""
    core = make_core(premises())
    feed = Feed(topic="scans.raw", partition=5)
    bad = pack(wire("e3", kind="bogus"))
    values = [
        pack(wire("e1")),
        pack(wire("e2", person_id="p2")),
        bad,
        pack(wire("e0", person_id="p0")),
    ]
    [(n, frame)] = raw_frames(values)
    assert n == 4
    before = feed.scan("e0", person_id="p0")
    framed = feed.raw(frame)
    after = feed.scan("e1")
    result = core.process([before, framed, after], NOW)
    assert event_ids(result) == ["e0", "e1", "e2"]
    [dl] = result.dead_letters
    assert (dl.reason, dl.raw, dl.offset, dl.partition) == ("unknown_kind", bad, framed.offset, 5)
    assert counts(result) == c(
        received=6, enriched=3, duplicates=2, dead_lettered={"unknown_kind": 1}
    )
    assert_balanced(core, result)


def test_an_array_that_is_not_a_frame_of_maps_is_one_dead_letter() -> None:
    core = make_core(premises())
    for value in (pack([]), pack([wire("e1"), "x"]), b"\x92\x81"):
        result = core.process([Feed().raw(value)], NOW)
        assert [d.raw for d in result.dead_letters] == [value]
        assert counts(result)["received"] == 1


def test_a_scan_at_the_skew_limit_is_accepted() -> None:
    core = make_core(premises())
    result = core.process([Feed().scan("e1", scanned_at=NOW + 5 * MINUTE)], NOW)
    assert event_ids(result) == ["e1"]


def test_an_unforeseen_exception_while_decoding_is_dead_lettered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(core_module, "parse_scan", boom)
    core = make_core(premises())
    feed = Feed()
    iso = feed.scan("e1", scanned_at="2023-11-15T05:03:20+07:00")  # not the fast path
    result = core.process([iso, feed.scan("e2")], NOW)
    assert [(d.reason, d.detail, d.event_id) for d in result.dead_letters] == [
        ("exception", "RuntimeError: boom", "e1")
    ]
    assert event_ids(result) == ["e2"]
    assert_balanced(core, result)


# -- dedup ----------------------------------------------------------------------------------


def test_duplicates_in_a_batch_and_across_batches_are_dropped_first_copy_wins() -> None:
    core = make_core(premises())
    feed = Feed()
    one = core.process([feed.scan("e1"), feed.scan("e1"), feed.scan("e2", person_id="p2")], NOW)
    two = core.process([feed.scan("e1", person_id="someone-else")], NOW + HOUR)
    assert one.enriched == [enriched("e1"), enriched("e2", person_id="p2")]
    assert two.rows == []
    assert counts(one) == c(received=3, enriched=2, duplicates=1)
    assert counts(two) == c(received=1, duplicates=1)
    assert_balanced(core, one, two)


def test_dedup_horizon_runs_on_received_at_and_a_later_copy_is_kept_again() -> None:
    """A copy arriving at most 24 h after the first is a duplicate; one arriving later is new
    again (kept, and not a repeat either: the last-kept memory has the same horizon). The
    store's idempotency by event_id absorbs the second row."""
    core = make_core(premises())
    feed = Feed()
    later = NOW + 2 * DAY  # processing time: a backlog, irrelevant to the horizon
    first = core.process([feed.scan("e1", received_at=NOW)], NOW)
    at_horizon = core.process([feed.scan("e1", received_at=NOW + DAY)], later)
    past_horizon = core.process([feed.scan("e1", received_at=NOW + DAY + 1)], later)
    again = core.process([feed.scan("e1", received_at=NOW + DAY + 2)], later)
    assert event_ids(first) == ["e1"]
    assert at_horizon.rows == []
    assert past_horizon.enriched == [enriched("e1", later, received_at=NOW + DAY + 1)]
    assert again.rows == []  # the horizon restarts from the copy kept again
    assert core.counts.as_dict() == c(received=4, enriched=2, duplicates=2)
    assert_balanced(core, first, at_horizon, past_horizon, again)


def test_without_received_at_the_dedup_clock_is_processing_time() -> None:
    core = make_core(premises())
    feed = Feed()
    assert event_ids(core.process([feed.scan("e1")], NOW)) == ["e1"]
    assert core.process([feed.scan("e1")], NOW + DAY).rows == []
    assert event_ids(core.process([feed.scan("e1")], NOW + DAY + 1)) == ["e1"]
    assert_balanced(core)


def test_a_backlog_keeps_its_duplicates_unless_expire_forgot_them_first() -> None:
    """Arrival time, not processing time: copies received a minute apart are duplicates even
    when processed three days later. But `expire` drops entries by the processing clock, so
    a replay of old records after an expire pass is kept again (the store absorbs it)."""
    core = make_core(premises())
    feed = Feed()
    late = NOW + 3 * DAY
    core.process([feed.scan("e1", received_at=NOW)], late)
    assert core.process([feed.scan("e1", received_at=NOW + MINUTE)], late).rows == []
    core.expire(late)
    replay = core.process([feed.scan("e1", received_at=NOW + MINUTE)], late)
    assert event_ids(replay) == ["e1"]
    assert_balanced(core, replay)


def test_dedup_horizon_is_a_setting() -> None:
    core = make_core(premises(), dedup_horizon_ms=MINUTE)
    feed = Feed()
    core.process([feed.scan("e1")], NOW)
    assert core.process([feed.scan("e1")], NOW + MINUTE).rows == []
    assert event_ids(core.process([feed.scan("e1")], NOW + MINUTE + 1)) == ["e1"]


# -- repeats --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "kept"),
    [
        (-5 * MINUTE - 1, True),
        (-5 * MINUTE, False),
        (-1, False),
        (0, False),
        (1, False),
        (5 * MINUTE, False),
        (5 * MINUTE + 1, True),
    ],
)
def test_repeats_within_five_minutes_either_side_of_the_last_kept_scan(
    offset: int, kept: bool
) -> None:
    core = make_core(premises())
    feed = Feed()
    first = core.process([feed.scan("e1", scanned_at=T)], NOW)
    tap = core.process([feed.scan("e2", scanned_at=T + offset)], NOW)
    assert event_ids(first) == ["e1"]
    assert event_ids(tap) == (["e2"] if kept else [])
    assert counts(tap) == c(received=1, enriched=int(kept), repeats=int(not kept))
    assert_balanced(core, first, tap)


def test_a_chain_of_taps_is_compared_with_the_last_kept_scan() -> None:
    """Taps every 4 minutes: each is compared with the last *kept* one (not the last seen),
    so they go kept, repeat, kept, repeat, kept."""
    core = make_core(premises())
    feed = Feed()
    taps = [feed.scan(f"e{i}", scanned_at=T + i * 4 * MINUTE) for i in range(5)]
    result = core.process(taps, NOW)
    assert event_ids(result) == ["e0", "e2", "e4"]
    assert counts(result) == c(received=5, enriched=3, repeats=2)
    assert_balanced(core, result)


def test_checkin_and_checkout_are_never_repeats_of_each_other() -> None:
    core = make_core(premises(), premises("P2"))
    feed = Feed()
    result = core.process(
        [
            feed.scan("in", scanned_at=T),
            feed.scan("out", scanned_at=T + MINUTE, kind="checkout"),
            feed.scan("out-again", scanned_at=T + 2 * MINUTE, kind="checkout"),
            feed.scan("other-person", scanned_at=T, person_id="p2"),
            feed.scan("other-premises", scanned_at=T, premises_id="P2"),
        ],
        NOW,
    )
    assert event_ids(result) == ["in", "out", "other-person", "other-premises"]
    assert counts(result) == c(received=5, enriched=4, repeats=1)
    assert_balanced(core, result)


def test_out_of_order_and_late_scans() -> None:
    """Late uploads are normal (days late: kept and enriched). The comparison is with the
    last kept scan in processing order, so a tap just after a late upload is compared with
    the late scan, not with the earlier one of the same hour (documented limitation: the
    visit merge downstream absorbs the extra row)."""
    core = make_core(premises())
    feed = Feed()
    result = core.process(
        [
            feed.scan("a", scanned_at=T),
            feed.scan("before-a", scanned_at=T - 4 * MINUTE),  # out of order: a repeat
            feed.scan("days-late", scanned_at=T - 3 * DAY),  # an offline phone uploads
            feed.scan("after-a", scanned_at=T + MINUTE),  # vs days-late: kept
            feed.scan("after-a-2", scanned_at=T + 2 * MINUTE),  # vs after-a: repeat
        ],
        NOW,
    )
    assert event_ids(result) == ["a", "days-late", "after-a"]
    assert result.enriched[1] == enriched("days-late", scanned_at=T - 3 * DAY)
    assert counts(result) == c(received=5, enriched=3, repeats=2)
    assert_balanced(core, result)


def test_the_last_kept_scan_is_remembered_for_the_dedup_horizon() -> None:
    core = make_core(premises())
    feed = Feed()
    core.process([feed.scan("e1", scanned_at=T, received_at=NOW)], NOW)
    near = feed.scan("e2", scanned_at=T + MINUTE, received_at=NOW + DAY)
    far = feed.scan("e3", scanned_at=T + 2 * MINUTE, received_at=NOW + DAY + 1)
    result = core.process([near, far], NOW + 2 * DAY)
    assert event_ids(result) == ["e3"]
    assert counts(result) == c(received=2, enriched=1, repeats=1)
    assert_balanced(core, result)


def test_repeat_window_is_a_setting() -> None:
    core = make_core(premises(), repeat_window_ms=0)
    feed = Feed()
    result = core.process(
        [
            feed.scan("e1", scanned_at=T),
            feed.scan("e2", scanned_at=T),
            feed.scan("e3", scanned_at=T + 1),
        ],
        NOW,
    )
    assert event_ids(result) == ["e1", "e3"]


# -- parking --------------------------------------------------------------------------------


def test_scans_for_an_unknown_premises_are_parked_and_released_when_it_arrives() -> None:
    core = make_core(premises())
    feed = Feed()
    batch = core.process(
        [
            feed.scan("e1", premises_id="P9"),
            feed.scan("e2", premises_id="P9", person_id="p2"),
            feed.scan("e3"),
        ],
        NOW,
    )
    assert event_ids(batch) == ["e3"]
    assert counts(batch) == c(received=3, enriched=1, parked=2)
    dup = core.process([feed.scan("e1", premises_id="P9")], NOW + MINUTE)  # passed dedup
    assert counts(dup) == c(received=1, duplicates=1)

    p9 = premises("P9", name="Truong THPT Chu Van An", category="school", agency="So GD-DT")
    released = core.upsert_premises(p9, NOW + HOUR)
    p9_meta = {
        "premises_id": "P9",
        "premises_name": "Truong THPT Chu Van An",
        "category": "school",
        "agency": "So GD-DT",
        "dwell_minutes": 300,
    }
    assert released.enriched == [
        enriched("e1", NOW + HOUR, **p9_meta),
        enriched("e2", NOW + HOUR, person_id="p2", **p9_meta),
    ]
    assert released.dead_letters == []
    assert counts(released) == c(enriched=2, parked=-2, released=2)
    assert core.state.parked == {}
    assert core.counts.as_dict() == c(received=4, enriched=3, duplicates=1, released=2)
    # Later scans for P9 go straight through.
    later = core.process([feed.scan("e4", premises_id="P9", person_id="p3")], NOW + 2 * HOUR)
    assert event_ids(later) == ["e4"]
    assert_balanced(core, batch, dup, released, later)


def test_parking_for_one_premises_is_bounded_and_the_overflow_dead_lettered() -> None:
    core = make_core(premises(), max_parked_per_premises=2)
    feed = Feed()
    records = [feed.scan(f"e{i}", premises_id="P9", person_id=f"p{i}") for i in range(3)]
    first = core.process(records, NOW)
    assert counts(first) == c(received=3, parked=2, dead_lettered={"unknown_premises": 1})
    (letter,) = first.dead_letters
    assert (letter.reason, letter.event_id, letter.offset) == ("unknown_premises", "e2", 102)
    assert "P9" in letter.detail and "max_parked_per_premises" in letter.detail
    assert letter.raw == records[2].value  # kept whole, for a replay
    # Another premises parks on; a copy of the overflowed scan is a duplicate.
    more = core.process(
        [feed.scan("e9", premises_id="P8"), feed.scan("e2", premises_id="P9", person_id="p2")],
        NOW,
    )
    assert counts(more) == c(received=2, parked=1, duplicates=1)
    released = core.upsert_premises(premises("P9"), NOW + HOUR)
    assert sorted(event_ids(released)) == ["e0", "e1"]
    assert_balanced(core, first, more, released)


def test_repeat_suppression_of_parked_scans_happens_at_release() -> None:
    """Parked scans go through repeat suppression when released, in arrival order, exactly
    as if the premises had been known; later scans are compared with the released ones."""
    core = make_core()
    feed = Feed()
    parked = core.process(
        [feed.scan("e1", scanned_at=T), feed.scan("e2", scanned_at=T + MINUTE)], NOW
    )
    assert counts(parked) == c(received=2, parked=2)
    released = core.upsert_premises(premises(), NOW + HOUR)
    assert event_ids(released) == ["e1"]
    assert counts(released) == c(enriched=1, repeats=1, parked=-2, released=1)
    after = core.process([feed.scan("e3", scanned_at=T + 2 * MINUTE)], NOW + HOUR)
    assert counts(after) == c(received=1, repeats=1)
    assert_balanced(core, parked, released, after)


def test_parked_scans_are_dead_lettered_as_unknown_premises_after_72_hours() -> None:
    core = make_core()
    feed = Feed(partition=7)
    record = feed.scan("e1", premises_id="P9")
    core.process([record], NOW)
    at_timeout = core.expire(NOW + 72 * HOUR)
    assert counts(at_timeout) == c()
    expired = core.expire(NOW + 72 * HOUR + 1)
    assert expired.dead_letters == [
        DeadLetter(
            stage="worker",
            reason="unknown_premises",
            raw=record.value or b"",
            detail="premises P9 not in the registry 259200000 ms after the scan was parked",
            topic="scans.raw",
            partition=7,
            offset=100,
            at=NOW + 72 * HOUR + 1,
            event_id="e1",
        )
    ]
    assert counts(expired) == c(parked=-1, dead_lettered={"unknown_premises": 1})
    assert core.state.parked == {}
    late = core.upsert_premises(premises("P9"), NOW + 73 * HOUR)
    assert counts(late) == c()
    assert core.counts.as_dict() == c(received=1, dead_lettered={"unknown_premises": 1})
    assert_balanced(core, at_timeout, expired, late)


def test_expiry_takes_only_the_scans_past_their_timeout() -> None:
    core = make_core(park_timeout_ms=HOUR)
    feed = Feed()
    core.process([feed.scan("old", premises_id="P9")], NOW)
    core.process([feed.scan("new", premises_id="P9", person_id="p2")], NOW + 30 * MINUTE)
    expired = core.expire(NOW + HOUR + 1)
    assert [d.event_id for d in expired.dead_letters] == ["old"]
    assert core.state.parked_count() == 1
    released = core.upsert_premises(premises("P9"), NOW + HOUR + 2)
    assert event_ids(released) == ["new"]
    assert_balanced(core, expired, released)


def test_a_premises_arriving_after_the_timeout_dead_letters_instead_of_releasing() -> None:
    """The outcome does not depend on whether an expire pass ran in between."""
    core = make_core(park_timeout_ms=HOUR)
    feed = Feed()
    core.process([feed.scan("old", premises_id="P9")], NOW)
    core.process([feed.scan("new", premises_id="P9", person_id="p2")], NOW + HOUR)
    result = core.upsert_premises(premises("P9"), NOW + HOUR + 1)
    assert event_ids(result) == ["new"]
    assert [(d.reason, d.event_id, d.at) for d in result.dead_letters] == [
        ("unknown_premises", "old", NOW + HOUR + 1)
    ]
    assert counts(result) == c(
        enriched=1, released=1, parked=-2, dead_lettered={"unknown_premises": 1}
    )
    assert_balanced(core, result)


def test_a_parked_scan_stays_a_duplicate_after_the_dedup_horizon() -> None:
    core = make_core()
    feed = Feed()
    core.process([feed.scan("e1")], NOW)
    core.expire(NOW + 25 * HOUR)  # its `seen` entry is gone
    assert len(core.state.seen) == 0
    resent = core.process([feed.scan("e1")], NOW + 25 * HOUR)
    assert counts(resent) == c(received=1, duplicates=1)
    released = core.upsert_premises(premises(), NOW + 26 * HOUR)
    assert event_ids(released) == ["e1"]
    assert_balanced(core, resent, released)


def test_expire_releases_scans_whose_premises_reached_the_registry_behind_its_back() -> None:
    core = make_core()
    feed = Feed()
    core.process([feed.scan("e1")], NOW)
    core.state.premises["P1"] = premises_entry(premises())  # e.g. a Faust global table
    result = core.expire(NOW + MINUTE)
    assert result.enriched == [enriched("e1", NOW + MINUTE)]
    assert counts(result) == c(enriched=1, parked=-1, released=1)
    assert_balanced(core, result)


def test_forgotten_premises_park_their_later_scans() -> None:
    core = make_core(premises())
    feed = Feed()
    assert core.forget_premises("P1") is True
    assert core.forget_premises("P1") is False
    result = core.process([feed.scan("e1")], NOW)
    assert counts(result) == c(received=1, parked=1)
    assert_balanced(core, result)


# -- expire ---------------------------------------------------------------------------------


def test_expire_reclaims_dedup_and_repeat_memory_past_the_horizon() -> None:
    core = make_core(premises())
    feed = Feed()
    core.process([feed.scan("e1"), feed.scan("e2", received_at=NOW + HOUR, person_id="p2")], NOW)
    assert len(core.state.seen) == len(core.state.last_kept) == 2
    assert counts(core.expire(NOW + DAY)) == c()
    assert len(core.state.seen) == len(core.state.last_kept) == 2
    core.expire(NOW + DAY + 1)
    assert len(core.state.seen) == len(core.state.last_kept) == 1
    assert core.state.seen.get("e2") == (NOW + HOUR,)
    assert core.state.last_kept.get("p2\x1fP1\x1fcheckin") == (NOW + HOUR, NOW - 10 * MINUTE)
    core.expire(NOW + DAY + HOUR + 1)
    assert len(core.state.seen) == len(core.state.last_kept) == 0
    assert_balanced(core)


def test_a_key_seen_again_after_the_horizon_is_remembered_from_then() -> None:
    core = make_core(premises())
    feed = Feed()
    core.process([feed.scan("e1"), feed.scan("e2", person_id="p2")], NOW)
    again = NOW + DAY + MINUTE
    result = core.process([feed.scan("e1", scanned_at=again - MINUTE, received_at=again)], again)
    assert event_ids(result) == ["e1"]
    core.expire(NOW + DAY + 1)  # e2 and e1's first sighting are past; e1's second is not
    assert len(core.state.seen) == 1
    assert core.state.seen.get("e1") == (again,)
    copy = feed.scan("e1", scanned_at=again - MINUTE, received_at=again + HOUR)
    assert counts(core.process([copy], again + HOUR)) == c(received=1, duplicates=1)
    assert_balanced(core)


def test_duplicates_and_repeats_within_one_batch_see_the_batch_before_them() -> None:
    """The state is read once per batch; what the batch itself writes counts at once."""
    core = make_core(premises())
    feed = Feed()
    result = core.process(
        [
            feed.scan("e1", scanned_at=NOW - 20 * MINUTE),
            feed.scan("e1", scanned_at=NOW - 20 * MINUTE),  # a duplicate of the first
            feed.scan("e2", scanned_at=NOW - 17 * MINUTE),  # a repeat of e1
            feed.scan("e3", scanned_at=NOW - 14 * MINUTE),  # kept: 6 min after e1
            feed.scan("e4", scanned_at=NOW - 10 * MINUTE),  # a repeat of e3, not of e1
            feed.scan("e4", scanned_at=NOW - 10 * MINUTE),  # a duplicate of a repeat
        ],
        NOW,
    )
    assert event_ids(result) == ["e1", "e3"]
    assert counts(result) == c(received=6, enriched=2, duplicates=2, repeats=2)
    assert core.state.last_kept.get("p1\x1fP1\x1fcheckin") == (NOW, NOW - 14 * MINUTE)
    assert_balanced(core, result)


# -- state backends, results ----------------------------------------------------------------


def scenario(core: ProcessorCore) -> list[Result]:
    feed = Feed()
    return [
        core.process(
            [
                feed.scan("e1", scanned_at=T),
                feed.scan("e1"),
                feed.scan("e2", scanned_at=T + MINUTE),
                feed.scan("p1", premises_id="P9"),
                feed.scan("p2", premises_id="P9", scanned_at=NOW - 9 * MINUTE),
                feed.raw(b"\xc1"),
            ],
            NOW,
        ),
        core.process([feed.scan("p3", premises_id="P9", person_id="p3")], NOW + MINUTE),
        core.upsert_premises(premises("P9"), NOW + HOUR),
        core.process([feed.scan("p4", premises_id="P8")], NOW + HOUR),
        core.expire(NOW + 80 * HOUR),
    ]


def test_a_serializing_table_backend_gives_the_same_results_as_dicts() -> None:
    """State values survive a msgpack round trip and are never mutated in place (a Faust
    table would lose such a change)."""
    with_dicts = make_core(premises())
    state = serializing_state()
    with_tables = make_core(premises(), state=state)
    expected = scenario(with_dicts)
    got = scenario(with_tables)
    assert [(r.rows, r.dead_letters, r.counts) for r in got] == [
        (r.rows, r.dead_letters, r.counts) for r in expected
    ]
    assert [event_ids(r) for r in got] == [["e1"], [], ["p1", "p3"], [], []]
    assert with_tables.counts == with_dicts.counts
    assert_balanced(with_tables, *got)
    assert_balanced(with_dicts, *expected)


def test_result_rows_become_a_frame_of_wire_maps() -> None:
    core = make_core(premises())
    result = core.process([Feed().scan("e1")], NOW)
    [frame] = encode_frames(result.rows, 1_000_000)
    assert decode_frame(frame) == [enriched("e1")]
    assert msgpack.unpackb(frame)[0]["premises_name"] == "Cho Phan Rang"


def test_counts_add_and_balance() -> None:
    total = Counts()
    total.add(Counts(received=3, enriched=1, parked=1, dead_lettered={"undecodable": 1}))
    total.add(Counts(enriched=1, parked=-1, released=1))
    assert total == Counts(received=3, enriched=2, released=1, dead_lettered={"undecodable": 1})
    assert total.dead == 1
    assert total.balanced()
    assert not Counts(received=1).balanced()


def test_an_empty_batch_is_an_empty_result() -> None:
    core = ProcessorCore()
    result = core.process([], NOW)
    assert (result.rows, result.dead_letters, counts(result)) == ([], [], c())
    assert counts(core.upsert_premises(Premises("P1", "x", "shop", "d"), NOW)) == c()
