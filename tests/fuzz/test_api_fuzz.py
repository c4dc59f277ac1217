"""Fuzz campaign, tracer API half: generated requests against the API's request handling
in process (aiohttp's test server and client, `tracing.testing`'s fake ClickHouse behind
the runner pool), one server for the whole campaign.

Each request has an odd path (percent-encoded or raw text, unicode, invalid escapes,
unknown endpoints), a query string of known and unknown names with arbitrary values
(other scripts' digits, numbers of thousands of digits, NaN, empty, repeated names, bad
times, huge offsets), a method, a token of any role or none, and sometimes a failure of
the fake (a query failing before or during its answer, a limit hit, the audit log
unwritable). Asserted for every one:
- no unhandled exception (nothing logged at ERROR by aiohttp or asyncio, nor by the API
  unless a failure was injected), no 5xx but 503, and 503 only for an injected failure
  (any malformed input is a 4xx);
- a request with a known token to a non-public path leaves exactly one audit row; any
  other, none (401 without a token);
- an answer sent whole is never a 200 without its audit row; a streamed one without it
  is cut (an incomplete body).

The campaign's size is `SCANTRACE_FUZZ_EXAMPLES` (shared with the gateway's half; small
by default, for CI): `SCANTRACE_FUZZ_EXAMPLES=10000 pytest tests/fuzz/test_api_fuzz.py`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from yarl import URL

from tracing.api.app import build_app
from tracing.api.metrics import ApiMetrics
from tracing.runner import QueryLimitExceeded, RunnerPool
from tracing.settings import ApiOptions, Principal
from tracing.testing import FakeClickHouse, QueryKind

EXAMPLES = int(os.environ.get("SCANTRACE_FUZZ_EXAMPLES", "500"))
TOKENS = {
    "tok-tracer": Principal("Nguyen Van A", "tracer"),
    "tok-auditor": Principal("Tran Thi B", "auditor"),
    "tok-intern": Principal("Le Van C", "intern"),
}
MAX_QUERY_BYTES = 7000
PUBLIC_PATHS = frozenset({"/healthz", "/metrics", "/openapi.json"})
FROM, TO = "2025-11-13T00:00:00+07:00", "2025-11-20T00:00:00Z"
NAMES = [
    "from", "to", "since", "rule", "window_min", "buffer_min", "min_overlap_min",
    "merge_gap_min", "depth", "limit", "offset", "format", "actor",
]  # fmt: skip
OTHER_DIGITS = "\u0660\u0661\u0662\u0663\u0664\u06f1\u0967\u09e8\uff10\uff11\uff12\u00b2\u00b9"
NUMBERS = st.one_of(
    st.integers(-100, 100_000).map(str),
    st.integers().map(str),
    st.integers(19, 6000).map(lambda n: "9" * n),
    st.text(alphabet=OTHER_DIGITS + "0123456789", min_size=1, max_size=14),
    st.sampled_from(["NaN", "nan", "inf", "-inf", "Infinity", "1e3", "0x10", "1_000", " 5",
                     "5 ", "+5", "-0", "", "\u00a05", "2147483648", "99999999999999999999"]),
)  # fmt: skip
TIMES = st.one_of(
    st.sampled_from([FROM, TO, "2025-11-13T00:00:00Z", "2025-11-13", "2025-13-45T00:00:00Z",
                     "2025-11-13T00:00:00", "2025-11-13T25:61:00Z", "1763000000000", "0",
                     "2025-11-13T00:00:00+99:99", "\u0661\u0667\u0666\u0663" + "0" * 9]),
    NUMBERS,
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
)  # fmt: skip
# Known troublemakers, drawn as often as everything else together: digits `int()` takes
# or chokes on, numbers past its 4,300-digit limit, floats' spellings.
ODD = st.sampled_from(["\u00b2", "\u00b9\u00b2", "\u0661\u0662\u0663", "\uff11\uff12", "\u0967",
                       "9" * 4301, "1" * 5000, "NaN", "inf", "", "1e3", " 1", "1_0", "-1",
                       "\U0001d7ce", "2147483648", "0" * 30 + "1"])  # fmt: skip
NUMBERS = st.one_of(ODD, NUMBERS)
TIMES = st.one_of(ODD, TIMES)
VALUES = {
    "from": TIMES,
    "to": TIMES,
    "since": TIMES,
    "rule": st.sampled_from(["scan-window", "overlap", "vibes", "", "SCAN-WINDOW"]),
    "format": st.sampled_from(["json", "csv", "xlsx", "", "CSV"]),
    "actor": st.text(max_size=20),
}


@st.composite
def _encoded(draw: st.DrawFn, text: str) -> str:
    """`text` percent-encoded, or left raw with a few escapes broken or added."""
    how = draw(st.sampled_from(["quote", "quote", "quote", "raw"]))
    if how == "quote":
        return quote(text, safe="")
    safe = "".join(ch if ch.isascii() and ch.isalnum() else quote(ch, safe="") for ch in text)
    junk = draw(st.sampled_from(["", "%", "%G1", "%FF", "%00", "%2F", "%25", "%e2%82", "+"]))
    at = draw(st.integers(0, len(safe)))
    return safe[:at] + junk + safe[at:]


@st.composite
def _segment(draw: st.DrawFn) -> str:
    text = draw(
        st.one_of(
            st.sampled_from(["CASE", "NT-1", "P0a1b2", "", ".", "..", "x" * 65, "a/b"]),
            st.text(max_size=70),
            st.text(alphabet=OTHER_DIGITS, min_size=1, max_size=5),
        )
    )
    return draw(_encoded(text))


@st.composite
def _query(draw: st.DrawFn, endpoint: str) -> str:
    pairs: list[tuple[str, str]] = []
    if draw(st.integers(0, 3)) > 0:  # mostly from a valid question, to reach deeper checks
        pairs = [("since", FROM)] if endpoint == "audit" else [("from", FROM), ("to", TO)]
        if endpoint != "audit" and draw(st.booleans()):
            pairs.append(("format", draw(st.sampled_from(["json", "csv"]))))
    for _ in range(draw(st.integers(0, 4))):
        # a value of the question replaced, a known name added, now and then an unknown one
        choice = draw(st.integers(0, 5))
        if choice < 3 and pairs:
            name = draw(st.sampled_from([k for k, _ in pairs]))
        elif choice < 5:
            name = draw(st.sampled_from(NAMES))
        else:
            name = draw(st.text(max_size=8))
        value = draw(VALUES.get(name, NUMBERS))
        pairs = [(k, v) for k, v in pairs if k != name] + [(name, value)]
    if pairs and draw(st.integers(0, 9)) == 0:
        pairs.append(draw(st.sampled_from(pairs)))  # a name repeated
    parts = [f"{draw(_encoded(k))}={draw(_encoded(v))}" for k, v in pairs]
    # aiohttp's HTTP parser refuses a request line over 8 KiB (400) before any handler:
    # keep the requests within it, so that they reach the API.
    while len(parts) > 1 and sum(len(p) + 1 for p in parts) > MAX_QUERY_BYTES:
        parts.pop()
    return "&".join(parts)[:MAX_QUERY_BYTES]


@dataclass(frozen=True)
class Failure:
    kind: QueryKind | None = None
    exc: BaseException | None = None
    after_rows: int | None = None


FAILURES = st.one_of(
    st.just(Failure()),
    st.just(Failure()),
    st.just(Failure()),
    st.builds(
        Failure,
        kind=st.sampled_from(
            [
                "timeline",
                "case_scans",
                "contacts",
                "contacts2",
                "visitors",
                "audit_read",
                "audit_insert",
            ]
        ),
        exc=st.sampled_from(
            [
                RuntimeError("Code: 60. Unknown table"),
                QueryLimitExceeded("the query was stopped at its time limit of 1 s"),
                ConnectionResetError("reset by peer"),
            ]
        ),
        after_rows=st.one_of(st.none(), st.integers(0, 3)),
    ),
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, str | None, Failure]:
    endpoint = draw(st.sampled_from(["trace", "premises", "audit", "other", "public"]))
    if endpoint == "trace":
        path = f"/v1/trace/{draw(_segment())}"
    elif endpoint == "premises":
        path = f"/v1/premises/{draw(_segment())}/visitors"
    elif endpoint == "audit":
        path = draw(st.sampled_from(["/v1/audit", "/v1/audit", "/v1/audit/", "/v1/audit/x"]))
    elif endpoint == "other":
        segments = draw(st.lists(_segment(), max_size=4))
        path = draw(st.sampled_from(["/v1/", "/", "/v2/", "//v1/"])) + "/".join(segments)
    else:
        path = draw(st.sampled_from(sorted(PUBLIC_PATHS)))
    query = draw(_query(endpoint))
    method = draw(st.sampled_from(["GET"] * 8 + ["POST", "HEAD", "DELETE", "OPTIONS", "PUT"]))
    token = draw(st.sampled_from([*TOKENS, "tok-tracer", "tok-tracer", "tok-tracer", "bogus",
                                  None]))  # fmt: skip
    return method, f"{path}?{query}" if query else path, token, draw(FAILURES)


class _Errors(logging.Handler):
    """Errors logged by aiohttp or asyncio (an exception nobody handled) or by the API (a
    query failure it answered with 503). aiohttp's HTTP
    parser refusing a request (a request line over 8 KiB: 400, before any handler) is
    logged at ERROR too; those are counted apart."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.parser_refusals = 0

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            self.parser_refusals += 1
        else:
            self.records.append(record)


class Campaign:
    """The server of the campaign (not a dataclass: Hypothesis prints a dataclass field
    by field with a failing example, and the fake's audit rows grow all along)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client: TestClient[Any, Any],
        db: FakeClickHouse,
        errors: _Errors,
    ) -> None:
        self.loop, self.client, self.db, self.errors = loop, client, db, errors
        self.statuses: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"Campaign(after {sum(self.statuses.values())} requests)"


@pytest.fixture(scope="module")
def campaign() -> Iterator[Campaign]:
    db = FakeClickHouse(contacts=3, visitors=400)  # a premises' CSV takes two chunks
    pool = RunnerPool(db.runner, size=4)
    options = ApiOptions(page_size=2, max_page_size=50, max_json_rows=300)
    app = build_app(pool, options, ApiMetrics(CollectorRegistry()), retention_days=28,
                    tokens=TOKENS)  # fmt: skip
    errors = _Errors()
    watched = [logging.getLogger(n) for n in ("aiohttp", "asyncio", "tracing")]
    for logger in watched:
        logger.addHandler(errors)
    loop = asyncio.new_event_loop()
    client: TestClient[Any, Any] = TestClient(TestServer(app), loop=loop)
    loop.run_until_complete(client.start_server())
    try:
        yield Campaign(loop, client, db, errors)
    finally:
        loop.run_until_complete(client.close())
        loop.close()
        pool.close()
        for logger in watched:
            logger.removeHandler(errors)


async def _workbench_page(c: Campaign, method: str, target: str) -> bool:
    """Whether the app routes `target` to one of the workbench's pages (which audit only
    what a signed-in user does), not to the API."""
    app = c.client.server.app
    assert app is not None
    if target.startswith("//"):  # a mocked request would read `//v1/` as host v1, path /
        return False  # the server routes the path as it is: no page starts with //
    request = make_mocked_request(method, target, app=app)
    try:
        match = await app.router.resolve(request)
    except ValueError:  # a target the router cannot read is the API's to refuse
        return False
    name = match.route.name or ""
    return name.startswith("wb.")


async def _send(c: Campaign, method: str, target: str, token: str | None) -> tuple[int, bool]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # Sent as written (escapes left as they are), past the test client's URL checks.
    url = URL(f"http://127.0.0.1:{c.client.port}{target}", encoded=True)
    async with c.client.session.request(method, url, headers=headers) as r:
        try:
            await r.read()
        except aiohttp.ClientPayloadError:
            return r.status, False
        return r.status, True


# The suite's 300 s per test would stop a big campaign: 0.1 s an example is ten times what
# a request takes on a loaded 2-core machine.
@pytest.mark.timeout(max(300, EXAMPLES // 10))
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(request=requests())
def test_api_requests(campaign: Campaign, request: tuple[str, str, str | None, Failure]) -> None:
    method, target, token, failure = request
    c = campaign
    c.db.fail = {failure.kind: failure.exc} if failure.kind and failure.exc else {}
    c.db.fail_after_rows = failure.after_rows
    before = len(c.db.audit_rows())
    c.errors.records.clear()
    try:
        status, whole = c.loop.run_until_complete(_send(c, method, target, token))
    finally:
        c.db.fail, c.db.fail_after_rows = {}, None
    rows = len(c.db.audit_rows()) - before
    c.statuses[status] = c.statuses.get(status, 0) + 1
    assert status < 500 or status == 503, (status, target)
    if failure.kind is None:  # nothing failed: nothing may be logged as an error, nor 503
        assert not c.errors.records, [r.getMessage() for r in c.errors.records]
        assert status != 503, (status, target)
    else:  # the API logs the injected failure; aiohttp and asyncio nothing
        assert not [r for r in c.errors.records if not r.name.startswith("tracing")]
    public = URL(f"http://h{target}", encoded=True).path in PUBLIC_PATHS and method in (
        "GET",
        "HEAD",
    )
    if status == 400:  # refused by aiohttp's HTTP parser, before any handler: no identity
        assert rows == 0
        return
    if c.loop.run_until_complete(_workbench_page(c, method, target)):
        # The workbench's pages know sessions, not bearer tokens: without a session a page
        # is public (sign-in, public sites) or sends to /login, and leaves no audit row.
        assert rows == 0, (status, target)
        return
    if public or token not in TOKENS:
        assert rows == 0, (status, target)
        assert public or status == 401, (status, target)
        return
    audit_broken = failure.kind == "audit_insert"
    assert rows == (0 if audit_broken else 1), (status, target, failure)
    if audit_broken:  # nothing leaves complete without its row
        assert status == 503 or not whole, (status, target)
    if not whole:  # only a stream cut by a failure ends early
        assert failure.kind is not None, (status, target)


def test_the_campaign_reached_every_outcome(campaign: Campaign) -> None:
    """Runs after the campaign (same module): it reached answers, refusals and failures
    alike, not only the first check of the request."""
    seen = campaign.statuses
    print(
        f"fuzz: {sum(seen.values())} requests, statuses {dict(sorted(seen.items()))},"
        f" {campaign.errors.parser_refusals} refused by the HTTP parser"
    )
    if EXAMPLES >= 500:
        assert {200, 401, 403, 404, 422, 503} <= set(seen), seen
