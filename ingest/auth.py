"""Bearer tokens mapped to whoever holds them (a gateway id, a tracer), shared by the
ingest gateway and the tracer API."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

__all__ = ["BearerTokens", "TokensError", "parse_token_table"]

T = TypeVar("T")


class TokensError(ValueError):
    """A token table is unusable. The message never contains a token."""


def parse_token_table(
    text: str, label: str, shape: str, holder: Callable[[int, object], T]
) -> dict[str, T]:
    """`{token: holder}` from a JSON object of tokens (`text`, empty for none). `holder(n,
    value)` checks and converts the n-th token's value, raising `TokensError`; `label`
    names the table in messages ("gateway", "API") and `shape` shows its JSON form."""
    text = text.strip()
    if not text:
        return {}
    try:
        obj = json.loads(text)
    except ValueError:
        raise TokensError(f"{label} tokens are not valid JSON") from None
    if not isinstance(obj, dict):
        raise TokensError(f"{label} tokens must be a JSON object {shape}")
    out: dict[str, T] = {}
    for n, (token, value) in enumerate(obj.items(), start=1):
        if not token or not token.isprintable() or " " in token:
            raise TokensError(f"{label} token #{n} is empty or has blanks/control characters")
        out[token] = holder(n, value)
    return out


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
