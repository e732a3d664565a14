"""The input limits as settings (TURNLOG_MAX_REQUEST_BYTES, TURNLOG_MAX_TEXT_BYTES), what
they are bounded by (the topics' max.message.bytes), and the client's early refusal."""

from __future__ import annotations

import asyncio

import pytest

from agents.errors import ContractError
from agents.limits import DEFAULT_MAX_TEXT_BYTES, EVENT_OVERHEAD_BYTES
from streams.topics import (
    DEFAULT_MAX_REQUEST_BYTES,
    DLQ_MAX_BYTES,
    EVENTS_MAX_BYTES,
    REQUESTS_MAX_BYTES,
    TOPIC_SPECS,
    WORKER_MAX_REQUEST_SIZE,
)
from turnlog.client import Client
from turnlog.settings import ConfigError, Settings, load_settings


def test_defaults_are_documented_values() -> None:
    s = load_settings()
    assert s.max_request_bytes == DEFAULT_MAX_REQUEST_BYTES == REQUESTS_MAX_BYTES == 4 * 2**20
    assert s.max_text_bytes == DEFAULT_MAX_TEXT_BYTES == 2**20


@pytest.mark.parametrize(
    ("env", "variable", "says"),
    [
        ({"TURNLOG_MAX_TEXT_BYTES": "lots"}, "TURNLOG_MAX_TEXT_BYTES", "valid integer"),
        ({"TURNLOG_MAX_TEXT_BYTES": "0"}, "TURNLOG_MAX_TEXT_BYTES", "greater than or equal"),
        (
            {"TURNLOG_MAX_REQUEST_BYTES": str(8 * 2**20)},
            "TURNLOG_MAX_REQUEST_BYTES",
            "less than or equal to 4194304",
        ),
        (
            {"TURNLOG_MAX_REQUEST_BYTES": "100"},
            "TURNLOG_MAX_REQUEST_BYTES",
            "greater than or equal to 1024",
        ),
        (
            {"TURNLOG_MAX_REQUEST_BYTES": "4096", "TURNLOG_MAX_TEXT_BYTES": "8192"},
            "TURNLOG_MAX_TEXT_BYTES",
            "at most TURNLOG_MAX_REQUEST_BYTES (4096)",
        ),
    ],
)
def test_a_broken_limit_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], variable: str, says: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.variable == variable
    assert str(info.value).startswith(variable) and says in str(info.value)


def test_whatever_the_topics_accept_the_worker_can_write() -> None:
    sizes = {spec.key: int(spec.configs["max.message.bytes"]) for spec in TOPIC_SPECS}
    assert sizes["requests"] == REQUESTS_MAX_BYTES
    assert sizes["events"] == EVENTS_MAX_BYTES
    assert sizes["dlq"] == DLQ_MAX_BYTES > REQUESTS_MAX_BYTES  # a request + error headers
    assert max(sizes["requests"], sizes["events"], sizes["dlq"]) <= WORKER_MAX_REQUEST_SIZE
    # The largest text the settings allow still fits in an event, with its envelope.
    ceiling = Settings.model_fields["max_text_bytes"].metadata
    assert any(getattr(m, "le", None) == EVENTS_MAX_BYTES - EVENT_OVERHEAD_BYTES for m in ceiling)


def test_the_requests_topic_is_stamped_with_the_brokers_append_time() -> None:
    (spec,) = [s for s in TOPIC_SPECS if s.key == "requests"]
    assert spec.configs["message.timestamp.type"] == "LogAppendTime"


def test_the_client_refuses_text_over_the_limit_before_it_travels() -> None:
    client = Client(bootstrap_servers="127.0.0.1:1", max_text_bytes=10)
    with pytest.raises(ContractError, match="11 bytes of UTF-8, over the text limit of 10"):
        asyncio.run(client.send_message("x" * 11, agent="assistant"))
    with pytest.raises(ContractError, match="12 bytes"):  # bytes, not characters
        asyncio.run(client.send_message("é" * 6, agent="assistant"))


def test_the_client_takes_the_limit_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNLOG_MAX_TEXT_BYTES", "123")
    assert Client.from_settings().max_text_bytes == 123
