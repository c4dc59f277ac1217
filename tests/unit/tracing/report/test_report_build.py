"""The numbers and the suppression rule of the report, on hand-made inputs."""

from __future__ import annotations

from datetime import date

import pytest
from report_testkit import AGENCY_A, AGENCY_B, TINY, sample_report

from tracing.report.build import TOTAL, few, group_row
from tracing.report.model import Activity, Mark
from tracing.report.suppress import hidden_cells

MONDAY = date(2021, 11, 15)


def hidden_scans(cells: dict[str, Activity], total_hidden: bool) -> set[str]:
    """The agencies of one week whose scans are hidden, with no day data."""
    total = Activity(1, sum(a.scans for a in cells.values()), 3 if total_hidden else 99)
    week = {("agency", k): a for k, a in cells.items()} | {TOTAL: total}
    days = [date(2021, 11, 15 + i) for i in range(7)]
    hidden = hidden_cells(MONDAY, days, week, {})
    return {key for first, kind, dim, key in hidden if dim == "agency"}


@pytest.mark.parametrize(("n", "hidden"), [(0, False), (1, True), (4, True), (5, False)])
def test_few(n: int, hidden: bool) -> None:
    assert few(n) is hidden


def test_no_small_group_hides_nothing() -> None:
    cells = {"a": Activity(1, 50, 9), "b": Activity(1, 10, 5), "c": Activity()}
    assert hidden_scans(cells, total_hidden=False) == frozenset()


def test_one_small_group_hides_the_smallest_other_too() -> None:
    cells = {
        "tiny": Activity(1, 30, 2),
        "big": Activity(4, 500, 80),
        "small": Activity(1, 12, 6),
        "zero": Activity(),  # zero scans: known exactly, hides nothing
    }
    assert hidden_scans(cells, total_hidden=False) == {"tiny", "small"}


def test_ties_go_to_the_smallest_key_and_a_hidden_total_needs_no_second() -> None:
    cells = {"t": Activity(1, 3, 1), "b": Activity(1, 9, 5), "a": Activity(1, 9, 7)}
    assert hidden_scans(cells, total_hidden=False) == {"t", "a"}
    assert hidden_scans(cells, total_hidden=True) == {"t"}


def test_several_small_groups_still_get_one_larger_partner() -> None:
    cells = {"x": Activity(1, 4, 1), "y": Activity(1, 5, 2), "z": Activity(2, 70, 30)}
    assert hidden_scans(cells, total_hidden=False) == {"x", "y", "z"}


def test_group_row_numbers() -> None:
    r = group_row(
        "k",
        registered=8,
        now=Activity(4, 100, 20),
        before=Activity(2, 80, 25),
        scans_hidden=False,
        scans_hidden_before=False,
        population=1000,
    )
    assert (r.registered, r.active, r.share_active, r.scans, r.scanners) == (8, 4, 0.5, 100, 20)
    assert r.scans_per_active == 25.0
    assert r.change_share_pp == pytest.approx(25.0)
    assert r.change_scans == pytest.approx(0.25)
    assert r.change_scanners == pytest.approx(-0.2)
    assert r.uptake == pytest.approx(0.02)


def test_group_row_without_anything() -> None:
    r = group_row("k", 0, Activity(), Activity(), scans_hidden=False, scans_hidden_before=False)
    assert r.share_active is None and r.scans_per_active is None
    assert r.change_scans is None and r.change_scanners is None and r.uptake is None
    assert (r.scans, r.scanners) == (0, 0)


def test_a_small_group_shows_marks_only() -> None:
    r = group_row(
        "k",
        3,
        Activity(1, 17, 3),
        Activity(1, 40, 9),
        scans_hidden=True,
        scans_hidden_before=False,
        population=500,
    )
    assert r.scanners is Mark.FEW and str(r.scanners) == "<5"
    assert r.scans is Mark.HIDDEN and r.scans_per_active is Mark.HIDDEN
    assert r.change_scans is Mark.HIDDEN and r.change_scanners is Mark.HIDDEN
    assert r.uptake is Mark.HIDDEN
    assert r.active == 1 and r.share_active == pytest.approx(1 / 3)  # premises: shown


def test_small_in_the_previous_period_hides_the_change_only() -> None:
    r = group_row(
        "k",
        3,
        Activity(2, 60, 12),
        Activity(1, 5, 2),
        scans_hidden=False,
        scans_hidden_before=True,
    )
    assert (r.scans, r.scanners) == (60, 12)
    assert r.change_scans is Mark.HIDDEN and r.change_scanners is Mark.HIDDEN


def test_the_sample_report() -> None:
    report = sample_report()
    agencies = {r.key: r for r in report.table("agency").rows}
    assert agencies[TINY].scanners is Mark.FEW and agencies[TINY].scans is Mark.HIDDEN
    # the partner: the agency with the fewest scans among the others
    assert agencies[AGENCY_B].scans is Mark.HIDDEN and agencies[AGENCY_B].scanners == 20
    assert agencies[AGENCY_A].scans == 300
    districts = {r.key: r for r in report.table("district").rows}
    assert districts["Thuận Nam"].scans == 0 and districts["Thuận Nam"].active == 0
    assert districts["Thuận Nam"].uptake == 0.0
    assert districts["Ninh Hải"].uptake == pytest.approx(30 / 95_000)
    assert report.total.population == 185_000
    assert report.total.scans == 400 and report.total.change_scans == pytest.approx(0.25)
    assert report.suppressed
    # days: the quiet Wednesday (2 persons) and the week's smallest other day are hidden
    days = {d.day: d for d in report.days}
    assert days[date(2021, 11, 17)].scanners is Mark.FEW
    assert days[date(2021, 11, 17)].scans is Mark.HIDDEN
    assert days[date(2021, 11, 15)].scans is Mark.HIDDEN  # 47 scans, the fewest of the rest
    assert days[date(2021, 11, 16)].scans == 48
    assert all(not isinstance(d.scans, Mark) for d in report.days if not d.current)
    assert report.days[0].day == date(2021, 11, 8)
    # the list: by agency, then district and name in Vietnamese order
    assert [p.premises_id for p in report.inactive] == ["NT-2", "NT-1", "NT-3"]
