"""Sign-in sessions of the workbench: in the server's memory, ended by sign-out or after
an idle time, each with its CSRF token and its depth-2 jobs.

The session id is the only thing the cookie holds (HttpOnly, SameSite=Strict, Secure when
the request came over TLS); the token a tracer signed in with is never kept. A state-
changing form carries the session's CSRF token (compared in constant time): SameSite
already keeps other sites' forms out, the token keeps out what SameSite does not cover
(a sibling subdomain, an old browser). The sign-in form, before any session, has a token
of its own in a short-lived cookie of its own (double submit), so that nobody can sign a
tracer in as somebody else.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

from tracing.settings import Principal

SESSION_COOKIE: Final = "scantrace_session"
LOGIN_COOKIE: Final = "scantrace_login"
LANG_COOKIE: Final = "scantrace_lang"
LOGIN_COOKIE_S: Final = 3600
# Failed sign-ins an address may make in `FAIL_WINDOW_S` before it must wait.
MAX_FAILURES: Final = 10
FAIL_WINDOW_S: Final = 600.0
_MAX_TRACKED: Final = 10_000


def new_token() -> str:
    return secrets.token_urlsafe(32)


def same(a: str, b: str) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())


@dataclass(eq=False)
class Session:
    sid: str
    principal: Principal
    csrf: str
    seen: float
    jobs: dict[str, Any] = field(default_factory=dict)  # job id -> `jobs.Job`


class SessionStore:
    """At most `most` sessions, each ending `idle_s` after its last request; the least
    recently used ends first when a new one needs room. `on_end` is told of every end
    (the session's jobs are cancelled and dropped). Used from the event loop only."""

    def __init__(
        self,
        idle_s: float,
        most: int,
        on_end: Callable[[Session], None] = lambda s: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_s = idle_s
        self.most = most
        self.on_end = on_end
        self.clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, principal: Principal) -> Session:
        self.sweep()
        while len(self._sessions) >= self.most:
            self.end(next(iter(self._sessions)))
        s = Session(new_token(), principal, new_token(), self.clock())
        self._sessions[s.sid] = s
        return s

    def get(self, sid: str | None) -> Session | None:
        """The live session of `sid` (its idle time starts again), or None."""
        if not sid:
            return None
        s = self._sessions.get(sid)
        if s is None:
            return None
        now = self.clock()
        if now - s.seen >= self.idle_s:
            self.end(sid)
            return None
        s.seen = now
        self._sessions.move_to_end(sid)
        return s

    def end(self, sid: str) -> None:
        s = self._sessions.pop(sid, None)
        if s is not None:
            self.on_end(s)

    def sweep(self) -> None:
        now = self.clock()
        for sid in [k for k, s in self._sessions.items() if now - s.seen >= self.idle_s]:
            self.end(sid)

    def all(self) -> list[Session]:
        return list(self._sessions.values())


class Throttle:
    """Failed sign-ins by client address: after `MAX_FAILURES` within `FAIL_WINDOW_S`, the
    address waits until the oldest of them is that old (tokens are long random strings;
    this keeps guessing from costing the server, and shows up in the audit of nothing)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def blocked(self, who: str) -> bool:
        now = self.clock()
        recent = [t for t in self._failures.get(who, []) if now - t < FAIL_WINDOW_S]
        if recent:
            self._failures[who] = recent
        else:
            self._failures.pop(who, None)
        return len(recent) >= MAX_FAILURES

    def failed(self, who: str) -> None:
        self._failures.setdefault(who, []).append(self.clock())
        self._failures.move_to_end(who)
        while len(self._failures) > _MAX_TRACKED:
            self._failures.popitem(last=False)

    def succeeded(self, who: str) -> None:
        self._failures.pop(who, None)


def is_tls(request: web.Request, proxies: frozenset[str]) -> bool:
    """The request came over TLS: to this server, or to a trusted proxy that says so."""
    if request.secure:
        return True
    if request.remote in proxies:
        proto = request.headers.get("X-Forwarded-Proto", "")
        return proto.split(",")[0].strip().lower() == "https"
    return False


def set_cookie(
    response: web.StreamResponse,
    name: str,
    value: str,
    *,
    secure: bool,
    max_age: int | None = None,
    http_only: bool = True,
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=http_only,
        samesite="Strict",
    )
