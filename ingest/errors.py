"""The project's errors: one root, two branches, so that every stage and the CLI can tell
what to do with a failure without knowing which library raised it.

- `TransientError`: the same operation may succeed later, unchanged (a service down,
  overloaded, slow, or not started yet). Retry, pause or wait; never dead-letter for it.
- `TerminalError`: retrying the same operation cannot help; the input, the data, the
  settings or the schema must change first.

Errors are labelled where they enter our code (a client library's exception becomes one
of these, the original kept as `__cause__`). A few classes also inherit a built-in
exception (`ValueError`) for callers that catch that; each says so where it is defined.
`hint` tells the operator what to do about it; the CLI prints it after the message.
The CLI's exit codes follow the branches: `InvalidInput` 2, `ServiceUnavailable` 3,
`NotFound` 4, any other error 1 (`scantrace.cli`).
"""

from __future__ import annotations

__all__ = [
    "InvalidInput",
    "NotFound",
    "ScantraceError",
    "ServiceUnavailable",
    "TerminalError",
    "TransientError",
    "loggable",
]


class ScantraceError(Exception):
    """The root of every error the project raises on purpose."""

    hint: str = ""

    def __init__(self, *args: object, hint: str = "") -> None:
        super().__init__(*args)
        if hint:
            self.hint = hint


class TransientError(ScantraceError):
    """The same operation may succeed later: retry, pause or wait."""


class TerminalError(ScantraceError):
    """Retrying the same operation cannot help: something must change first."""


class ServiceUnavailable(TransientError):
    """A service the work needs (Kafka, ClickHouse, the gateway) is not running, not
    reachable, not configured, or does not answer in time."""


class InvalidInput(TerminalError):
    """What the caller gave is wrong: an argument, a file's content, a setting, a
    credential. The message says what and where."""


class NotFound(TerminalError):
    """What was asked for does not exist: a file, a topic, a unit of a report."""


def loggable(exc: BaseException) -> str:
    """What a log line at INFO or above may say of `exc`: its type and, when it has one,
    its server's error code, never its message: a server's message can quote the data
    or the query it refused, person ids among them."""
    code = getattr(exc, "code", None)
    return f"{type(exc).__name__}{f' (code {code})' if isinstance(code, int) else ''}"
