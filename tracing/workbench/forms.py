"""The trace form as a question: a person, a local period and a rule whose parameters
are read generically from the `Rule` dataclass (every field a query parameter of its own
name, `rule` for the name), so a new rule parameter reaches the workbench without a
change here."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from multidict import MultiMapping

from ingest.contract import now_ms
from tracing.rules import RULES, Rule, RuleError
from tracing.trace import TraceInputError, check_question, parse_int
from tracing.workbench.localtime import DAY_MS, LocalTimeError, input_value, parse_local

DEFAULT_DAYS: Final = 14
_TRUE: Final = frozenset({"1", "true", "on", "yes"})
_FALSE: Final = frozenset({"0", "false", "off", "no"})


@dataclass(frozen=True, slots=True)
class RuleField:
    """A rule parameter as a form input: a number or a checkbox."""

    name: str
    kind: str  # "int" | "bool"
    default: object


def rule_fields() -> list[RuleField]:
    """Every parameter of `Rule` but its name and depth: an integer is a number input, a
    boolean a choice (with "the rule's default" when its default is None)."""
    out = []
    for f in dataclasses.fields(Rule):
        if f.name in ("name", "depth"):
            continue
        if "bool" in str(f.type):
            out.append(RuleField(f.name, "bool", f.default))
        elif isinstance(f.default, int):
            out.append(RuleField(f.name, "int", f.default))
    return out


def _last(query: MultiMapping[str], name: str) -> str | None:
    """The last value of `name` given."""
    values = query.getall(name, [])
    return values[-1] if values else None


def rule_of(query: MultiMapping[str]) -> Rule:
    """The rule of a query string; `RuleError` or `TraceInputError` with the reason."""
    kw: dict[str, Any] = {}
    for f in rule_fields():
        raw = _last(query, f.name)
        if raw is None or raw == "":
            continue
        if f.kind == "bool":
            word = raw.strip().lower()
            if word not in _TRUE | _FALSE:
                raise TraceInputError(f"{f.name} must be 1 or 0")
            kw[f.name] = word in _TRUE
        else:
            kw[f.name] = parse_int(raw.strip(), f.name, -(10**9), 10**9)
    depth = _last(query, "depth")
    if depth:
        kw["depth"] = parse_int(depth.strip(), "depth", 1, 2)
    name = _last(query, "rule") or Rule().name
    return Rule(name, **kw)  # type: ignore[arg-type]


@dataclass
class TraceForm:
    """What the form shows (the values as typed) and, when complete, the question."""

    values: dict[str, str]
    person: str = ""
    from_ms: int = 0
    to_ms: int = 0
    rule: Rule = field(default_factory=Rule)
    errors: list[str] = field(default_factory=list)

    @property
    def asked(self) -> bool:
        return bool(self.person) and not self.errors

    def query(self, **changes: object) -> dict[str, str]:
        """The question as query parameters (for links: exports, pages, premises)."""
        out = {"person": self.person, "from": input_value(self.from_ms)}
        out["to"] = input_value(self.to_ms)
        d = Rule(self.rule.name)  # the rule's own defaults
        out["rule"] = self.rule.name
        for f in [*rule_fields(), RuleField("depth", "int", 1)]:
            value = getattr(self.rule, f.name)
            if value != getattr(d, f.name):
                out[f.name] = ("1" if value else "0") if f.kind == "bool" else str(value)
        out.update({k: str(v) for k, v in changes.items()})
        return out


def read_form(query: MultiMapping[str], retention_days: int, now: int | None = None) -> TraceForm:
    now = now_ms() if now is None else now
    values = {k: v[:80] for k, v in query.items() if k != "lang"}
    form = TraceForm(values)
    values.setdefault("from", input_value(now - DEFAULT_DAYS * DAY_MS))
    values.setdefault("to", input_value(now))
    values.setdefault("rule", Rule().name)
    person = (query.get("person") or "").strip()
    if not person:
        return form
    form.person = person
    for name in ("from", "to"):
        try:
            setattr(form, f"{name}_ms", parse_local(values[name]))
        except LocalTimeError:
            form.errors.append(f"time:{name}")
    try:
        form.rule = rule_of(query)
    except (RuleError, TraceInputError) as exc:
        form.errors.append(f"rule:{exc}")
    if not form.errors:
        try:
            check_question(person, form.from_ms, form.to_ms, retention_days)
        except TraceInputError as exc:
            form.errors.append(f"question:{exc}")
    return form


def rule_names() -> tuple[str, ...]:
    return RULES


def choices(values: Mapping[str, str], name: str, default: str) -> str:
    return values.get(name, default)
