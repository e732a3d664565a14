"""The scripted provider: deterministic answers from a script, and the demo script."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.llm import (
    LlmRequest,
    LlmResponse,
    Message,
    TextBlock,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
)
from agents.providers import (
    ErrorType,
    ProviderConfigError,
    ProviderError,
    ScriptedProvider,
    make_provider,
    provider_from_spec,
)
from agents.providers._script import ScriptError
from agents.providers.scripted import split_chunks

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.script.yaml"
TOOLS = (
    ToolSpec("calculator", "Evaluate arithmetic.", {"type": "object"}),
    ToolSpec("shell", "Run a command.", {"type": "object"}),
    ToolSpec("delegate", "Hand a task to another agent.", {"type": "object"}),
)


def user(text: str) -> Message:
    return Message("user", (TextBlock(text),))


def request(
    *messages: Message, system: str = "You are the assistant.", model: str = "m1"
) -> LlmRequest:
    return LlmRequest(
        model=model,
        system=system,
        messages=tuple(messages),
        tools=TOOLS,
        max_tokens=512,
        temperature=0.0,
    )


def assistant_of(response: LlmResponse) -> Message:
    blocks: list[TextBlock | ToolUseBlock] = [TextBlock(response.text)] if response.text else []
    blocks += [ToolUseBlock(t.call_id, t.name, t.arguments_json) for t in response.tool_uses]
    return Message("assistant", tuple(blocks))


def results(response: LlmResponse, content: str, is_error: bool = False) -> Message:
    return Message(
        "user", tuple(ToolResultBlock(t.call_id, content, is_error) for t in response.tool_uses)
    )


@pytest.fixture(scope="module")
def demo() -> ScriptedProvider:
    return ScriptedProvider.from_file(DEMO)


async def no_sleep(_: float) -> None:
    return None


# ----------------------------------------------------------------------------- the demo


async def test_demo_turn_1_calculator_then_answer(demo: ScriptedProvider) -> None:
    history = [user("what is 17*23?")]
    first = demo.respond(request(*history))
    assert first.stop_reason == "tool_use"
    assert [(t.name, json.loads(t.arguments_json)) for t in first.tool_uses] == [
        ("calculator", {"expression": "17*23"})
    ]
    history += [assistant_of(first), results(first, "391")]
    second = demo.respond(request(*history))
    assert second.tool_uses == ()
    assert second.stop_reason == "end_turn"
    assert "391" in second.text


async def test_demo_turn_2_shell_answer_and_denial(demo: ScriptedProvider) -> None:
    history = [user("what is 17*23?")]
    first = demo.respond(request(*history))
    history += [assistant_of(first), results(first, "391")]
    history += [assistant_of(demo.respond(request(*history))), user("Please list the files here")]
    call = demo.respond(request(*history))
    assert [(t.name, json.loads(t.arguments_json)) for t in call.tool_uses] == [
        ("shell", {"command": "ls -la"})
    ]
    approved = demo.respond(request(*history, assistant_of(call), results(call, "README.md")))
    assert "README.md" in approved.text and not approved.tool_uses
    denied = demo.respond(
        request(*history, assistant_of(call), results(call, "denied by alice", is_error=True))
    )
    assert "could not" in denied.text and "denied by alice" in denied.text


async def test_demo_turn_3_delegates_and_researcher_answers(demo: ScriptedProvider) -> None:
    history = [user("Please research who created Apache Kafka.")]
    call = demo.respond(request(*history))
    (delegation,) = call.tool_uses
    assert delegation.name == "delegate"
    arguments = json.loads(delegation.arguments_json)
    assert arguments["agent"] == "researcher"
    # The child session sees only the task, under the researcher's own system prompt.
    child = demo.respond(request(user(arguments["task"]), system="You are the researcher."))
    assert "LinkedIn" in child.text and not child.tool_uses
    final = demo.respond(request(*history, assistant_of(call), results(call, child.text)))
    assert "LinkedIn" in final.text and not final.tool_uses


async def test_demo_script_streams_deltas_that_add_up_to_the_text(demo: ScriptedProvider) -> None:
    demo_fast = ScriptedProvider(demo.script, sleep=no_sleep)
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    response = await demo_fast.complete(request(user("hello there")), on_delta=on_delta)
    assert len(deltas) > 1
    assert "".join(deltas) == response.text
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0


# ----------------------------------------------------------------------------- determinism


texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(prompt=texts, result=texts, model=st.sampled_from(["m1", "m2"]))
def test_same_request_same_response_and_tool_ids_unique(
    prompt: str, result: str, model: str
) -> None:
    provider = ScriptedProvider.tool_then_answer(
        "calculator", {"expression": "1+1"}, "It is {{tool_result}}"
    )
    first_request = request(user(prompt), model=model)
    first = provider.respond(first_request)
    # A re-issued call (a fresh provider, as after a restart) gets the very same answer.
    again = ScriptedProvider(provider.script).respond(first_request)
    assert again == first
    second = provider.respond(
        request(user(prompt), assistant_of(first), results(first, result), user(prompt))
    )
    ids = [t.call_id for t in first.tool_uses + second.tool_uses]
    assert len(ids) == 2 and len(set(ids)) == 2
    answer = provider.respond(request(user(prompt), assistant_of(first), results(first, result)))
    assert answer.text == f"It is {result}" and answer.tool_uses == ()


def test_tool_ids_differ_between_calls_in_one_response() -> None:
    provider = ScriptedProvider.from_dict(
        {"otherwise": {"tool_calls": [{"name": "a"}, {"name": "a"}, {"name": "b"}]}}
    )
    response = provider.respond(request(user("go")))
    assert len({t.call_id for t in response.tool_uses}) == 3


@pytest.mark.parametrize(
    ("text", "chunks"), [("one two three four five", 3), ("single", 4), ("a  b ", 2), ("", 3)]
)
def test_split_chunks_roundtrips(text: str, chunks: int) -> None:
    pieces = split_chunks(text, chunks)
    assert "".join(pieces) == text
    assert len(pieces) <= chunks


# ----------------------------------------------------------------------------- matching


def test_steps_follow_the_number_of_model_answers() -> None:
    provider = ScriptedProvider.from_dict({"steps": [{"text": "first"}, {"text": "second"}]})
    first = provider.respond(request(user("hi")))
    second = provider.respond(request(user("hi"), assistant_of(first), user("again")))
    assert (first.text, second.text) == ("first", "second")
    with pytest.raises(Exception) as failure:
        provider.respond(
            request(user("hi"), assistant_of(first), user("a"), assistant_of(second), user("b"))
        )
    assert getattr(failure.value, "error_type", None) == ErrorType.NO_SCRIPTED_RESPONSE


def test_rule_conditions_turn_iteration_model_and_tools() -> None:
    provider = ScriptedProvider.from_dict(
        {
            "rules": [
                {"when": {"model": "m2"}, "respond": {"text": "from m2"}},
                {"when": {"turn": 2, "iteration": 0}, "respond": {"text": "turn two"}},
                {"when": {"has_tool": "nope"}, "respond": {"text": "never"}},
            ],
            "otherwise": {"text": "other"},
        }
    )
    assert provider.respond(request(user("x"), model="m2")).text == "from m2"
    first = provider.respond(request(user("x")))
    assert first.text == "other"
    assert provider.respond(request(user("x"), assistant_of(first), user("y"))).text == "turn two"


def test_explicit_usage_and_stop_reason_are_returned() -> None:
    provider = ScriptedProvider.from_dict(
        {
            "otherwise": {
                "text": "t",
                "stop_reason": "max_tokens",
                "usage": {"input_tokens": 7, "output_tokens": 3, "cache_read_tokens": 5},
            }
        }
    )
    response = provider.respond(request(user("x")))
    assert response.stop_reason == "max_tokens"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (7, 3)
    assert response.usage.cache_read_tokens == 5


# ----------------------------------------------------------------------------- failures


async def test_scripted_overload_falls_back_to_the_next_model() -> None:
    provider = ScriptedProvider.from_dict(
        {
            "rules": [{"when": {"model": "big"}, "respond": {"error": {"type": "overloaded"}}}],
            "otherwise": {"text": "small answered"},
        },
        sleep=no_sleep,
    )
    response = await provider.complete(request(user("x"), model="big"), fallbacks=["small"])
    assert (response.model, response.text, response.fallback_used) == (
        "small",
        "small answered",
        True,
    )
    assert response.attempts == 2


async def test_scripted_non_retryable_error_raises_provider_error() -> None:
    provider = ScriptedProvider.from_dict(
        {"otherwise": {"error": {"type": "invalid_request", "message": "Bad.", "retryable": False}}}
    )
    with pytest.raises(ProviderError) as failure:
        await provider.complete(request(user("x")), fallbacks=["other"])
    assert failure.value.error_type == "invalid_request"
    assert failure.value.attempts == 1 and failure.value.retryable is False


async def test_latency_longer_than_the_deadline_times_out() -> None:
    provider = ScriptedProvider.from_dict(
        {"defaults": {"latency_ms": 5000}, "otherwise": {"text": "late"}}
    )
    with pytest.raises(ProviderError) as failure:
        await provider.complete(request(user("x")), timeout_s=0.05)
    assert failure.value.error_type == "timeout" and failure.value.retryable is True


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (
            {"rules": [{"when": {"user_contain": "x"}, "respond": {"text": "y"}}]},
            "rules.0.when.user_contain",
        ),
        ({"rules": [{"when": {"user_matches": "("}, "respond": {}}]}, "not a regular expression"),
        ({}, "no rules, no steps and no otherwise"),
        (["not", "a", "mapping"], "must be a mapping"),
    ],
)
def test_invalid_scripts_name_the_field(data: object, fragment: str) -> None:
    with pytest.raises(ScriptError) as failure:
        ScriptedProvider.from_dict(data, source="bad.yaml")
    assert "bad.yaml" in str(failure.value) and fragment in str(failure.value)


def test_factory_builds_scripted_providers_and_rejects_unknown_kinds(tmp_path: Path) -> None:
    assert isinstance(provider_from_spec(f"scripted:{DEMO}"), ScriptedProvider)
    script = tmp_path / "s.json"
    script.write_text(json.dumps({"otherwise": {"text": "json script"}}))
    assert (
        make_provider("scripted", script=script).respond(request(user("x"))).text == "json script"
    )  # type: ignore[attr-defined]
    with pytest.raises(ProviderConfigError):
        provider_from_spec("scripted")
    with pytest.raises(ProviderConfigError, match="Unknown provider kind"):
        provider_from_spec("openai")
    with pytest.raises(ScriptError, match="cannot read"):
        provider_from_spec(f"scripted:{tmp_path / 'missing.yaml'}")


def test_demo_summaries_go_to_the_summarizer_model(demo: ScriptedProvider) -> None:
    # The text being summarized mentions everything; the model decides, not the text.
    summary = demo.respond(
        request(user("please research and list files"), model="scripted-summarizer")
    )
    assert summary.text.startswith("Summary") and not summary.tool_uses


def test_providers_satisfy_the_protocol_and_errors_survive_pickling() -> None:
    import pickle

    from agents.providers import Provider

    assert isinstance(ScriptedProvider.tool_then_answer("calculator"), Provider)
    error = ProviderError(
        "It failed.", error_type="overloaded", attempts=3, retryable=True, circuits_opened=["p/m"]
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.error_type, copy.attempts, copy.retryable, copy.circuits_opened, str(copy)) == (
        "overloaded",
        3,
        True,
        ("p/m",),
        "It failed.",
    )
