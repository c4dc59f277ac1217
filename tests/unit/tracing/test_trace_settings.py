"""API token table parsing: names and roles, never a token in an error message."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from ingest.auth import TokensError
from tracing.api.app import TokenAuth
from tracing.settings import ApiOptions, Principal, TracerSettings, parse_tokens


def test_tokens_map_to_named_principals() -> None:
    tokens = parse_tokens('{"s3cret": {"name": "Nguyen Van A", "role": "tracer"}}')
    assert tokens == {"s3cret": Principal("Nguyen Van A", "tracer")}
    auth = TokenAuth(tokens)
    assert auth.principal("Bearer s3cret") == Principal("Nguyen Van A", "tracer")
    assert auth.principal("bearer s3cret ") == Principal("Nguyen Van A", "tracer")
    assert auth.principal("Bearer s3cre") is None
    assert auth.principal("Basic s3cret") is None
    assert auth.principal(None) is None
    assert "s3cret" not in repr(auth)


@pytest.mark.parametrize(
    "text",
    [
        "not json s3cret",
        '["s3cret"]',
        '{"s3cret": "tracer"}',
        '{"s3cret": {"role": "tracer"}}',
        '{"s3cret": {"name": "A", "role": 1}}',
        '{"s3 cret": {"name": "A", "role": "tracer"}}',
    ],
)
def test_bad_token_tables_fail_without_quoting_tokens(text: str) -> None:
    with pytest.raises(TokensError) as info:
        parse_tokens(text)
    assert "s3cret" not in str(info.value) and "s3 cret" not in str(info.value)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCANTRACE_API__TOKENS", '{"t": {"name": "B", "role": "auditor"}}')
    monkeypatch.setenv("SCANTRACE_API__PORT", "9999")
    settings = TracerSettings()
    assert settings.api.port == 9999
    assert settings.api.token_map() == {"t": Principal("B", "auditor")}
    assert '"t"' not in repr(settings)
    changed = settings.with_api(port=0, tokens=SecretStr(""))
    assert changed.api.port == 0 and changed.api.token_map() == {}
    assert ApiOptions().page_size <= ApiOptions().max_page_size
