"""Test data of the sink's tests (unit and integration): enriched scans as the worker
publishes them."""

from __future__ import annotations

from ingest.contract import SCHEMA_VERSION
from ingest.premises import DWELL_MINUTES
from processors.records import EnrichedScan


def enriched(
    event_id: str,
    person_id: str,
    premises_id: str,
    scanned_at: int,
    *,
    kind: str = "checkin",
    received_at: int | None = None,
    processed_at: int | None = None,
    category: str = "market",
    district: str = "Phan Rang-Thap Cham",
) -> bytes:
    """The wire bytes of one enriched scan, as the worker publishes them."""
    return EnrichedScan(
        event_id=event_id,
        person_id=person_id,
        premises_id=premises_id,
        scanned_at=scanned_at,
        kind="checkout" if kind == "checkout" else "checkin",
        gateway_id="gw-test",
        received_at=received_at,
        schema=SCHEMA_VERSION,
        premises_name=f"Premises {premises_id}",
        category=category,
        district=district,
        ward="Ward 1",
        agency="Agency A",
        dwell_minutes=DWELL_MINUTES.get(category, 30),
        processed_at=processed_at if processed_at is not None else scanned_at + 1000,
    ).encode()
