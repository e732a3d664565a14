"""The fake Messages API server: its wire format, its validation and its programming.

Raw HTTP (urllib) checks the bytes; the real SDK checks that it accepts them.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from tests.fakes.anthropic_server import (
    FAKE_API_KEY,
    FakeAnthropicServer,
    FakeError,
    FakeMessage,
    FakeToolUse,
    FakeUsage,
)

NEW_API = "2026-10-21"
OLD_API = "2023-06-01"


@pytest.fixture(scope="module")
def module_server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer(api_key=FAKE_API_KEY) as server:
        yield server


@pytest.fixture
def server(module_server: FakeAnthropicServer) -> FakeAnthropicServer:
    module_server.reset()
    return module_server


def body(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "model": "claude-a",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
    }
    value.update(overrides)
    return value


def post(
    server: FakeAnthropicServer,
    payload: Any,
    *,
    headers: dict[str, str] | None = None,
    path: str = "/v1/messages",
) -> tuple[int, str]:
    sent = {
        "content-type": "application/json",
        "anthropic-version": NEW_API,
        "x-api-key": FAKE_API_KEY,
    }
    sent.update(headers or {})
    request = urllib.request.Request(
        server.base_url + path, data=json.dumps(payload).encode(), headers=sent, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for chunk in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


# ----------------------------------------------------------------------------- wire format


def test_stream_emits_the_real_event_sequence(server: FakeAnthropicServer) -> None:
    server.enqueue(
        FakeMessage(
            "Hello there",
            tool_uses=[FakeToolUse("calculator", {"expression": "17*23"}, id="toolu_1")],
            text_chunk_chars=4,
            json_chunk_chars=7,
            usage=FakeUsage(
                input_tokens=10,
                output_tokens=20,
                cache_creation_input_tokens=3,
                cache_read_input_tokens=4,
            ),
        )
    )
    status, text = post(server, body(stream=True))
    assert status == 200
    events = parse_sse(text)
    names = [name for name, _ in events]
    assert all(data["type"] == name for name, data in events)
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["model"] == "claude-a"
    assert start["usage"] == {
        "input_tokens": 10,
        "output_tokens": 1,
        "cache_creation_input_tokens": 3,
        "cache_read_input_tokens": 4,
    }
    text_deltas = [
        d["delta"]["text"] for n, d in events if n == "content_block_delta" and d["index"] == 0
    ]
    assert text_deltas == ["Hell", "o th", "ere"]
    tool_start = next(d for n, d in events if n == "content_block_start" and d["index"] == 1)
    assert tool_start["content_block"] == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "calculator",
        "input": {},
    }
    json_deltas = [
        d["delta"]["partial_json"]
        for n, d in events
        if n == "content_block_delta" and d["index"] == 1
    ]
    assert json_deltas[0] == "" and len(json_deltas) > 2
    assert json.loads("".join(json_deltas)) == {"expression": "17*23"}
    assert events[-2][1]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert events[-2][1]["usage"] == {"output_tokens": 20}


def test_the_sdk_reads_streamed_and_plain_answers_alike(server: FakeAnthropicServer) -> None:
    reply = FakeMessage(
        "Sure.", tool_uses=[FakeToolUse("shell", {"command": "ls -la"}, id="toolu_9")]
    )
    server.always(reply)
    client = anthropic.Anthropic(api_key=FAKE_API_KEY, base_url=server.base_url, max_retries=0)
    plain = client.messages.create(**body())
    with client.messages.stream(**body()) as stream:
        streamed = stream.get_final_message()
    client.close()
    for message in (plain, streamed):
        assert [b.type for b in message.content] == ["text", "tool_use"]
        assert message.content[1].input == {"command": "ls -la"}  # type: ignore[union-attr]
        assert message.content[1].id == "toolu_9"  # type: ignore[union-attr]
        assert message.stop_reason == "tool_use"
    assert plain.usage.output_tokens == streamed.usage.output_tokens


def test_errors_use_the_api_envelope_and_the_sdk_maps_them(server: FakeAnthropicServer) -> None:
    server.enqueue(FakeError(529))
    status, text = post(server, body())
    assert status == 529
    assert json.loads(text) == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    server.enqueue(FakeError(429, headers={"retry-after": "3"}))
    client = anthropic.Anthropic(api_key=FAKE_API_KEY, base_url=server.base_url, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as failure:
        client.messages.create(**body())
    assert failure.value.response.headers["retry-after"] == "3"
    client.close()


def test_a_mid_stream_error_event_reaches_the_sdk(server: FakeAnthropicServer) -> None:
    server.enqueue(FakeMessage("never finished", break_after_events=3))
    client = anthropic.Anthropic(api_key=FAKE_API_KEY, base_url=server.base_url, max_retries=0)
    with (
        pytest.raises(anthropic.APIStatusError) as failure,
        client.messages.stream(**body()) as stream,
    ):
        stream.get_final_message()
    assert failure.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    client.close()


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}]},
            "max_tokens: Field required",
        ),
        (body(temperature=0.5), "temperature: Extra inputs are not permitted"),
        (
            body(messages=[{"role": "user", "content": [{"type": "text", "text": ""}]}]),
            "must be non-empty",
        ),
        (
            body(
                messages=[
                    {"role": "user", "content": "go"},
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t1", "name": "a", "input": {}}],
                    },
                    {"role": "user", "content": "no result"},
                ]
            ),
            "`tool_use` ids were found without `tool_result` blocks immediately after: t1",
        ),
        (
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "t9", "content": "x"}],
                    }
                ]
            ),
            "unexpected `tool_use_id` found in `tool_result` blocks: t9",
        ),
        (
            body(
                system=[{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}] * 3,
                tools=[
                    {"name": n, "input_schema": {}, "cache_control": {"type": "ephemeral"}}
                    for n in "ab"
                ],
            ),
            "A maximum of 4 blocks with cache_control may be provided. Found 5.",
        ),
        (body(tools=[{"name": "bad name!", "input_schema": {}}]), "tools.0.custom.name"),
    ],
    ids=[
        "max_tokens",
        "temperature",
        "empty-text",
        "missing-result",
        "orphan-result",
        "breakpoints",
        "tool-name",
    ],
)
def test_invalid_requests_get_the_real_400(
    server: FakeAnthropicServer, payload: Any, fragment: str
) -> None:
    status, text = post(server, payload)
    assert status == 400
    error = json.loads(text)["error"]
    assert error["type"] == "invalid_request_error" and fragment in error["message"]


def test_temperature_is_still_accepted_under_the_old_api_version(
    server: FakeAnthropicServer,
) -> None:
    assert post(server, body(temperature=0.5), headers={"anthropic-version": OLD_API})[0] == 200


def test_a_valid_tool_round_trip_is_accepted(server: FakeAnthropicServer) -> None:
    payload = body(
        messages=[
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "a", "input": {}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}],
            },
        ]
    )
    assert post(server, payload)[0] == 200


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"x-api-key": ""}, 401),
        ({"x-api-key": "sk-ant-wrong"}, 401),
        ({"x-api-key": "", "authorization": f"Bearer {FAKE_API_KEY}"}, 200),
    ],
)
def test_authentication_by_either_header(
    server: FakeAnthropicServer, headers: dict[str, str], status: int
) -> None:
    assert post(server, body(), headers=headers)[0] == status


def test_a_missing_version_header_is_rejected(server: FakeAnthropicServer) -> None:
    request = urllib.request.Request(
        server.base_url + "/v1/messages",
        data=json.dumps(body()).encode(),
        headers={"x-api-key": FAKE_API_KEY, "content-type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as failure:
        urllib.request.urlopen(request, timeout=10)
    assert failure.value.code == 400


def test_unknown_paths_are_404(server: FakeAnthropicServer) -> None:
    status, text = post(server, {}, path="/v1/complete")
    assert status == 404 and json.loads(text)["error"]["type"] == "not_found_error"


# ----------------------------------------------------------------------------- programming


def test_reply_precedence_model_queue_then_always_then_any_model(
    server: FakeAnthropicServer,
) -> None:
    server.enqueue(FakeMessage("a-once"), model="claude-a")
    server.always(FakeMessage("a-always"), model="claude-a")
    server.enqueue(FakeMessage("any-once"))
    server.respond_with(lambda r: FakeMessage(f"computed for {r.model}"))

    def text(model: str) -> str:
        return str(json.loads(post(server, body(model=model))[1])["content"][0]["text"])

    assert [text("claude-a"), text("claude-a"), text("claude-b"), text("claude-b")] == [
        "a-once",
        "a-always",
        "any-once",
        "computed for claude-b",
    ]
    server.respond_with(None)
    assert text("claude-b") == "Hello from the fake Messages API."
    assert [r.model for r in server.requests] == [
        "claude-a",
        "claude-a",
        "claude-b",
        "claude-b",
        "claude-b",
    ]


def test_recorded_requests_hold_no_credential(server: FakeAnthropicServer) -> None:
    post(server, body(), headers={"authorization": f"Bearer {FAKE_API_KEY}"})
    (recorded,) = server.requests
    assert recorded.headers["x-api-key"] == "[redacted]"
    assert recorded.headers["authorization"] == "[redacted]"
    assert recorded.api_key_valid is True and recorded.status == 200
    assert FAKE_API_KEY not in repr(server.requests)


def test_wait_for_requests_fails_at_its_deadline(server: FakeAnthropicServer) -> None:
    post(server, body())
    assert len(server.wait_for_requests(1, timeout_s=1)) == 1
    with pytest.raises(AssertionError, match="expected at least 2"):
        server.wait_for_requests(2, timeout_s=0.05)


def test_servers_run_side_by_side_and_stop_cleanly() -> None:
    with FakeAnthropicServer() as one, FakeAnthropicServer() as two:
        assert one.base_url != two.base_url
        assert post(one, body())[0] == 200 and post(two, body())[0] == 200
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(one.base_url + "/v1/messages", timeout=2)


# ----------------------------------------------------------------------------- prompt cache
# The simulated cache, checked directly: what the API documents about breakpoints.


def _text(text: str, mark: bool = False) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": text}
    if mark:
        block["cache_control"] = {"type": "ephemeral"}
    return block


def _body(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": list(blocks)}]}


def test_cache_reads_the_longest_prefix_written_at_an_earlier_breakpoint() -> None:
    from tests.fakes._messages_api import PromptCache, estimate_tokens

    cache = PromptCache()
    a, b, c = "a" * 400, "b" * 400, "c" * 400
    tokens = estimate_tokens(_text(a))
    assert cache.split(_body(_text(a), _text(b, True))) == (1, 2 * tokens, 0)
    # The breakpoint moved forward: the prefix up to the old one is read, the rest written.
    assert cache.split(_body(_text(a), _text(b), _text(c, True))) == (1, tokens, 2 * tokens)
    # Without a breakpoint nothing is cached or read.
    assert cache.split(_body(_text(a), _text(b))) == (2 * tokens, 0, 0)


def test_cache_look_back_is_limited_to_twenty_blocks() -> None:
    from tests.fakes._messages_api import PromptCache

    cache = PromptCache()
    head = [_text(f"block {i} " * 20) for i in range(3)]
    cache.split(_body(*head[:-1], _text(head[-1]["text"], True)))
    near = [_text(f"x{i}") for i in range(19)]
    far = [_text(f"y{i}") for i in range(21)]
    hit = cache.split(_body(*head, *near[:-1], _text(near[-1]["text"], True)))
    miss = cache.split(_body(*head, *far[:-1], _text(far[-1]["text"], True)))
    assert hit[2] > 0 and miss[2] == 0


def test_cache_ignores_prefixes_below_the_minimum_length() -> None:
    from tests.fakes._messages_api import PromptCache

    cache = PromptCache(min_tokens=1024)
    small = _body(_text("short", True))
    assert cache.split(small)[1:] == (0, 0) and cache.split(small)[1:] == (0, 0)
    large = _body(_text("z" * 5000, True))
    assert cache.split(large)[1] > 1024 and cache.split(large)[2] > 1024


def test_count_tokens_counts_what_the_messages_call_bills(server: FakeAnthropicServer) -> None:
    client = anthropic.Anthropic(api_key=FAKE_API_KEY, base_url=server.base_url, max_retries=0)
    messages: Any = [{"role": "user", "content": "hello there, count me"}]
    counted = client.messages.count_tokens(model="claude-x", messages=messages)
    billed = client.messages.create(model="claude-x", max_tokens=10, messages=messages)
    assert counted.input_tokens == billed.usage.input_tokens > 0
    assert [r.path for r in server.requests] == ["/v1/messages/count_tokens", "/v1/messages"]
