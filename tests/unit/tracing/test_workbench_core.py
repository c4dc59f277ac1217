"""The workbench's pure parts: risk levels and groups, the generic rule form, local
times, sessions, the four-eyes rule, the maps, the exports, its words."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import fields
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import MultiDict
from openpyxl import load_workbook

from tracing.models import Contact, TraceResult, Visit
from tracing.rules import Rule, RuleError
from tracing.settings import Principal
from tracing.trace import TraceInputError
from tracing.workbench import export, i18n, localtime, maps
from tracing.workbench.contacts import CLOSE_MIN, Status, group, risk
from tracing.workbench.exposure_sites import Proposal, Site, SiteError, check_decision
from tracing.workbench.forms import read_form, rule_fields, rule_of
from tracing.workbench.sessions import SessionStore, Throttle, is_tls

MIN = 60_000
T0 = 1_764_547_200_000  # 2025-12-01 00:00 UTC = 07:00 in Vietnam


def contact(person: str, *, degree: int = 1, via: str | None = None, premises: str = "NT-1",
            c: tuple[int, int] = (T0, T0 + 60 * MIN), x: tuple[int, int] = (T0, T0 + 10 * MIN),
            overlap: int | None = None) -> Contact:  # fmt: skip
    return Contact(person, degree, via, premises, "Chợ", "d", "market", *c, *x, overlap)


def test_risk_levels() -> None:
    inside = contact("A", x=(T0 + 5 * MIN, T0 + 10 * MIN), overlap=5 * MIN)
    long = contact("B", x=(T0 - 60 * MIN, T0 + 20 * MIN), overlap=CLOSE_MIN * MIN)
    short = contact("C", x=(T0 - 60 * MIN, T0 + 14 * MIN), overlap=14 * MIN)
    assert [risk(c, "overlap") for c in (inside, long, short)] == ["close", "close", "casual"]
    # scan-window knows scans, not presence together
    assert {risk(c, "scan-window") for c in (inside, long, short)} == {"casual"}


def test_groups_by_premises_and_visit_with_f2_under_their_f1() -> None:
    visits = [
        Visit("NT-1", "Chợ", "d", "market", T0, T0 + 60 * MIN, 2),
        Visit("NT-1", "Chợ", "d", "market", T0 + 600 * MIN, T0 + 660 * MIN, 1),
        Visit("NT-2", "Shop", "d", "shop", T0 + 120 * MIN, T0 + 130 * MIN, 1),
    ]
    contacts = [
        contact("A", overlap=30 * MIN),
        contact(
            "B",
            c=(T0 + 600 * MIN, T0 + 660 * MIN),
            overlap=1 * MIN,
            x=(T0 + 500 * MIN, T0 + 601 * MIN),
        ),
        contact(
            "A",
            premises="NT-2",
            c=(T0 + 120 * MIN, T0 + 130 * MIN),
            overlap=MIN,
            x=(T0 + 100 * MIN, T0 + 121 * MIN),
        ),
        contact("F", degree=2, via="A", overlap=20 * MIN),
        contact("G", degree=2, via="A", overlap=MIN, x=(T0 - 50 * MIN, T0 + MIN)),
    ]
    result = TraceResult("CASE", T0, T0 + 1440 * MIN, Rule("overlap", depth=2), visits, contacts)
    g = group(result, {"B": Status("called", "Lan", T0)}, frozenset({"G"}))
    assert [p.premises_id for p in g.premises] == ["NT-1", "NT-2"]
    nt1 = g.premises[0]
    assert [len(vg.rows) for vg in nt1.visits] == [1, 1]  # two visits of the case there
    assert nt1.visits[1].visit == visits[1]
    assert (nt1.counts.total, nt1.counts.close) == (2, 1)
    [via] = g.via
    assert via.via == "A" and [r.contact.person_id for r in via.rows] == ["F", "G"]
    a_rows = [
        r for p in g.premises for vg in p.visits for r in vg.rows if r.contact.person_id == "A"
    ]
    assert {r.f2 for r in a_rows} == {2}
    assert (g.f1.total, g.f2.total, g.total.total, g.total.close, g.persons) == (3, 2, 5, 2, 4)
    b = nt1.visits[1].rows[0]
    assert (b.status, b.status_by) == ("called", "Lan")
    assert via.rows[1].confirmed_case and not via.rows[0].confirmed_case


def test_the_rule_form_reads_every_rule_parameter_generically() -> None:
    names = {f.name for f in rule_fields()}
    assert names == {f.name for f in fields(Rule)} - {"name", "depth"}
    q = MultiDict([("rule", "overlap"), ("min_overlap_min", "15"), ("depth", "2")])
    assert rule_of(q) == Rule("overlap", min_overlap_min=15, depth=2)
    with pytest.raises(RuleError):
        rule_of(MultiDict([("window_min", "99999999")]))


def test_a_boolean_parameter_is_yes_no_or_the_rules_default() -> None:
    [cap] = [f for f in rule_fields() if f.name == "cap_at_next_scan"]
    assert cap.kind == "bool" and cap.default is None  # on under overlap, off otherwise
    overlap = MultiDict([("rule", "overlap")])
    assert rule_of(overlap) == Rule("overlap")
    assert rule_of(MultiDict([*overlap.items(), ("cap_at_next_scan", "")])) == Rule("overlap")
    assert rule_of(MultiDict([*overlap.items(), ("cap_at_next_scan", "0")])) == Rule(
        "overlap", cap_at_next_scan=False
    )
    with pytest.raises(TraceInputError):
        rule_of(MultiDict([("cap_at_next_scan", "maybe")]))
    form = read_form(MultiDict([("person", "P"), ("rule", "overlap")]), 28, now=T0)
    assert "cap_at_next_scan" not in form.query()  # the rule's default, not spelled out


def test_the_form_reads_local_times_without_an_offset() -> None:
    f = read_form(
        MultiDict({"person": "P1", "from": "2025-12-01T07:00", "to": "2025-12-02T07:00"}), 28
    )
    assert f.asked and f.from_ms == T0 and f.to_ms == T0 + 1440 * MIN
    assert (
        localtime.text(T0) == "01/12/2025 07:00" and localtime.text(T0, "en") == "2025-12-01 07:00"
    )
    assert localtime.iso_local(T0) == "2025-12-01T07:00:00+07:00"
    bad = read_form(MultiDict({"person": "P1", "from": "2025-12-01T07:00Z", "to": "x"}), 28)
    assert not bad.asked and {e.split(":")[0] for e in bad.errors} == {"time"}
    long = read_form(
        MultiDict({"person": "P1", "from": "2025-10-01T00:00", "to": "2025-12-01T00:00"}), 28
    )
    assert long.errors and long.errors[0].startswith("question:")
    empty = read_form(MultiDict(), 28, now=T0)
    assert not empty.person and empty.values["to"] == "2025-12-01T07:00"


def test_sessions_end_after_idle_time_and_the_oldest_goes_first() -> None:
    now = [0.0]
    ended: list[str] = []
    store = SessionStore(
        60, 2, on_end=lambda s: ended.append(s.principal.name), clock=lambda: now[0]
    )
    a = store.create(Principal("A", "tracer"))
    b = store.create(Principal("B", "tracer"))
    assert a.sid != b.sid and a.csrf != b.csrf and len(a.sid) >= 40
    now[0] = 30
    assert store.get(a.sid) is a  # touched: A is now the most recent
    store.create(Principal("C", "tracer"))
    assert ended == ["B"] and store.get(b.sid) is None
    now[0] = 89.9
    assert store.get(a.sid) is a
    now[0] = 150
    assert store.get(a.sid) is None and "A" in ended
    assert store.get("forged") is None and store.get(None) is None


def test_failed_sign_ins_are_throttled_by_address() -> None:
    now = [0.0]
    t = Throttle(clock=lambda: now[0])
    for _ in range(10):
        assert not t.blocked("1.2.3.4")
        t.failed("1.2.3.4")
    assert t.blocked("1.2.3.4") and not t.blocked("5.6.7.8")
    now[0] = 601
    assert not t.blocked("1.2.3.4")


def test_tls_from_a_trusted_proxy_only() -> None:
    forwarded = make_mocked_request("GET", "/", headers={"X-Forwarded-Proto": "https"}).clone(
        remote="10.0.0.5"
    )
    assert is_tls(forwarded, frozenset({"10.0.0.5"}))
    assert not is_tls(forwarded, frozenset({"10.0.0.6"}))  # anyone can send the header
    plain = make_mocked_request("GET", "/").clone(remote="10.0.0.5")
    assert not is_tls(plain, frozenset({"10.0.0.5"}))


def proposal(state: str = "proposed", by: str = "A") -> Proposal:
    return Proposal("p1", state, by, T0, "", None, None, [Site(0, "NT-1", T0, T0 + MIN)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "decision", "actor", "role", "status"),
    [
        ("proposed", "approve", "B", "tracer", 403),  # a tracer cannot approve
        ("proposed", "approve", "A", "supervisor", 403),  # nor the proposer (four eyes)
        ("proposed", "approve", "B", "auditor", 403),
        ("proposed", "approve", "B", "supervisor", None),
        ("approved", "approve", "B", "supervisor", 409),
        ("proposed", "reject", "B", "tracer", 403),
        ("proposed", "reject", "A", "supervisor", None),
        ("approved", "withdraw", "B", "supervisor", None),
        ("approved", "withdraw", "A", "tracer", 403),
        ("proposed", "withdraw", "A", "tracer", None),  # the proposer takes it back
        ("withdrawn", "withdraw", "B", "supervisor", 409),
    ],
)
def test_four_eyes(state: str, decision: str, actor: str, role: str, status: int | None) -> None:
    p = proposal(state)
    if status is None:
        check_decision(p, decision, actor, role)  # type: ignore[arg-type]
        return
    with pytest.raises(SiteError) as caught:
        check_decision(p, decision, actor, role)  # type: ignore[arg-type]
    assert caught.value.status == status


def test_the_map_fits_its_box_and_tiles_only_when_configured() -> None:
    places = [maps.Place("A", "a", 11.56, 108.98, "1"), maps.Place("B", "b", 11.60, 109.05, "2")]
    m = maps.draw_map(places)
    assert m is not None and not m.tiles
    for d in m.dots:
        assert maps.PAD - 1 <= d.x <= m.width - maps.PAD + 1
        assert maps.PAD - 1 <= d.y <= m.height - maps.PAD + 1
    north, _ = sorted(m.dots, key=lambda d: d.y)
    assert north.place.premises_id == "B"  # north is up
    tiled = maps.draw_map(places, "https://tiles.example/{z}/{x}/{y}.png")
    assert (
        tiled and tiled.tiles and all(re.search(r"/\d+/\d+/\d+\.png$", t.href) for t in tiled.tiles)
    )
    assert maps.draw_map([]) is None


def test_day_strip_and_hourly_chart() -> None:
    day = localtime.day_start(T0)
    spans = maps.day_strip(day, [(day + 6 * 60 * MIN, day + 12 * 60 * MIN, "1")])
    assert [(s.x, s.width) for s in spans] == [(25.0, 25.0)]
    assert maps.day_strip(day + 86_400_000, [(day, day + MIN, "1")]) == []
    chart = maps.hourly_chart([(T0 + 3_600_000, 4)], T0, T0 + 3 * 3_600_000)
    assert [b.count for b in chart.bars] == [0, 4, 0, 0] and chart.top == 4


def test_exports_are_formula_safe_with_local_times_and_vietnamese_headers() -> None:
    evil = contact('=HYPERLINK("x")', overlap=20 * MIN)
    result = TraceResult("CASE", T0, T0 + MIN, Rule("overlap"), [], [evil])
    t = i18n.translator("vi")
    cells = export.rows(group(result), t)
    raw = export.to_csv(export.header(t), cells)
    assert raw.startswith("\ufeff".encode())
    table = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert table[0][0] == "Mã người" and table[1][0] == '\'=HYPERLINK("x")'
    assert table[1][3] == "Tiếp xúc gần" and table[1][12] == "2025-12-01 07:00:00"
    book = load_workbook(io.BytesIO(export.to_xlsx(export.header(t), cells, "Tiếp xúc")))
    ws = book.active
    assert ws is not None and ws["A2"].value == '\'=HYPERLINK("x")' and ws["A2"].data_type == "s"


TEMPLATES = Path(i18n.__file__).parent / "templates"
SOURCES = [*TEMPLATES.glob("*.html"), *Path(i18n.__file__).parent.glob("*.py")]


def test_every_word_used_has_both_languages() -> None:
    used: set[str] = set()
    for path in SOURCES:
        used |= set(
            re.findall(r"""\bt\(\s*["']([a-z][a-z0-9_.-]*[a-z0-9_])["']""", path.read_text())
        )
    assert used, "the pattern finds the keys"
    missing = used - set(i18n.TEXT)
    assert not missing, sorted(missing)
    assert all(vi and en for vi, en in i18n.TEXT.values())
    t = i18n.translator("en")
    assert t("count.contacts", n=3) == "3 contacts"
    assert i18n.translator("vi")("param.some_new_parameter") == "some_new_parameter"


def test_every_template_compiles() -> None:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    for path in TEMPLATES.glob("*.html"):
        env.get_template(path.name)


def test_workbench_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from tracing.settings import ROLES, TRACING_ROLES, TracerSettings

    monkeypatch.setenv("SCANTRACE_WORKBENCH__SESSION_IDLE_S", "600")
    monkeypatch.setenv("SCANTRACE_WORKBENCH__TRUSTED_PROXIES", "10.0.0.1, 10.0.0.2")
    monkeypatch.setenv("SCANTRACE_WORKBENCH__JOB_MAX_EXECUTION_S", "1800")
    wb = TracerSettings().workbench
    assert wb.session_idle_s == 600 and wb.proxies() == frozenset({"10.0.0.1", "10.0.0.2"})
    assert wb.job_limits().max_execution_s == 1800
    assert "supervisor" in ROLES and {"tracer", "supervisor"} == TRACING_ROLES
