"""Bearer tokens mapped to whoever holds them (a gateway id, a tracer), shared by the
ingest gateway and the tracer API."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


class BearerTokens(Generic[T]):
    """Every token is compared (in constant time each), so the answer's timing does not
    tell which token was close. Tokens are never logged or printed."""

    __slots__ = ("_tokens",)

    def __init__(self, tokens: Mapping[str, T]) -> None:
        self._tokens = [(t.encode(), holder) for t, holder in tokens.items()]

    def __len__(self) -> int:
        return len(self._tokens)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<{len(self._tokens)} tokens>)"

    def lookup(self, authorization: str | None) -> T | None:
        """The holder of the token in an `Authorization: Bearer TOKEN` header, or None."""
        if not authorization:
            return None
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return None
        given = credentials.strip().encode("utf-8", "surrogateescape")
        found: T | None = None
        for token, holder in self._tokens:
            if hmac.compare_digest(token, given) and found is None:
                found = holder
        return found
