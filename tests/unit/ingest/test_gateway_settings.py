"""Gateway settings from the environment; the token table; secrets stay masked."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from ingest.auth import TokensError
from ingest.gateway.app import TokenAuth
from ingest.gateway.settings import GatewayOptions, GatewaySettings

TOKEN = "tok-ABCDEFGH-123"


def test_env_nested_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCANTRACE_GATEWAY__TOKENS", json.dumps({TOKEN: "gw-1"}))
    monkeypatch.setenv("SCANTRACE_GATEWAY__PORT", "9091")
    monkeypatch.setenv("SCANTRACE_GATEWAY__MAX_BATCH", "500")
    monkeypatch.setenv("SCANTRACE_KAFKA__BOOTSTRAP", "127.0.0.1:1")
    settings = GatewaySettings()
    assert settings.gateway.token_map() == {TOKEN: "gw-1"}
    assert (settings.gateway.port, settings.gateway.max_batch) == (9091, 500)
    assert settings.kafka.servers() == ["127.0.0.1:1"]
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCANTRACE_GATEWAY__PORT", "9091")
    settings = GatewaySettings().with_options(port=7000, tokens=SecretStr('{"t": "g"}'))
    assert settings.gateway.port == 7000
    assert settings.gateway.token_map() == {"t": "g"}
    with pytest.raises(ValueError, match="port"):
        GatewaySettings().with_options(port=70000)


@pytest.mark.parametrize(
    "text",
    [
        "not json " + TOKEN,
        json.dumps([TOKEN]),
        json.dumps({TOKEN: 7}),
        json.dumps({TOKEN: ""}),
        json.dumps({TOKEN: "x" * 65}),
        json.dumps({"": "gw"}),
        json.dumps({f"{TOKEN} tail": "gw"}),
    ],
)
def test_bad_token_tables_are_refused_without_quoting_tokens(text: str) -> None:
    with pytest.raises(TokensError) as info:
        GatewayOptions(tokens=SecretStr(text)).token_map()
    assert TOKEN not in str(info.value)


def test_empty_token_table() -> None:
    assert GatewayOptions().token_map() == {}
    assert GatewayOptions(tokens=SecretStr("  ")).token_map() == {}


def test_token_auth() -> None:
    auth = TokenAuth({"aaa": "gw-a", "bbb": "gw-b"})
    assert auth.gateway_for("Bearer aaa") == "gw-a"
    assert auth.gateway_for("bearer   bbb ") == "gw-b"
    assert auth.gateway_for("Bearer aa") is None
    assert auth.gateway_for("Bearer aaaa") is None
    assert auth.gateway_for("Bearer \udcff") is None
    assert auth.gateway_for(None) is None
    assert "aaa" not in repr(auth)
