"""Agent definitions: loading TOML/YAML, validation messages naming agent and field,
secret-freedom, the definition hash, and the registry."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from agents.agentfile import load_definitions, registry_from_file
from agents.definitions import AgentDefinition, definition_hash
from agents.errors import AgentDefinitionError, ContractError
from agents.events import PolicyAction
from agents.registry import AgentRegistry
from agents.toolspecs import BUILTIN_TOOL_SPECS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "agents.toml"

MINIMAL = """
[agents.helper]
model = "claude-sonnet-4-5"
system_prompt = "Help."
"""


def write(tmp_path: Path, text: str, name: str = "agents.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str, name: str = "agents.toml") -> str:
    with pytest.raises(AgentDefinitionError) as info:
        registry_from_file(write(tmp_path, text, name))
    return str(info.value)


def test_the_example_file_loads() -> None:
    registry = registry_from_file(EXAMPLES)
    assert registry.names() == ("assistant", "researcher")
    assistant = registry.get("assistant")
    assert assistant.tools == ("calculator", "shell", "delegate")
    assert assistant.delegates == ("researcher",)
    assert assistant.policy.evaluate("shell", {"command": "ls"}).action is (
        PolicyAction.REQUIRE_APPROVAL
    )
    assert assistant.policy.evaluate("shell", {"command": "cd /; rm -rf x"}).action is (
        PolicyAction.DENY
    )
    assert registry.get("researcher").model.startswith("scripted-")
    assert [t.name for t in registry.tool_specs("assistant")] == list(assistant.tools)


def test_defaults_of_a_minimal_definition(tmp_path: Path) -> None:
    (d,), tools = load_definitions(write(tmp_path, MINIMAL))
    assert tools == {}
    assert (d.name, d.max_iterations, d.max_tokens, d.temperature) == ("helper", 10, 1024, 0.0)
    assert (
        d.policy.default is PolicyAction.ALLOW and d.compaction.strategy.value == "sliding_window"
    )


def test_yaml_is_the_same_shape(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        agents:
          helper:
            model: claude-haiku-4-5
            fallbacks: [claude-3-5-haiku]
            system_prompt: Help.
            tools: [calculator]
            budget: {turn_usd: 0.25}
        """,
        "agents.yaml",
    )
    (d,), _ = load_definitions(path)
    assert d.fallbacks == ("claude-3-5-haiku",) and d.budget.turn_nanos == 250_000_000


@pytest.mark.parametrize(
    "body,message",
    [
        (
            (
                'model = "claude-sonnet-4-5"\nsystem_prompt = "x"\n[agents.researcher.budget]\n'
                "session_usd = 0"
            ),
            "agent 'researcher': budget.session_usd: must be > 0",
        ),
        (
            'model = "claude-sonnet-4-5"\nsystem_prompt = "x"\nmax_iterations = 0',
            "agent 'researcher': max_iterations: must be >= 1",
        ),
        (
            'model = "gpt-4"\nsystem_prompt = "x"',
            "agent 'researcher': model: unknown model 'gpt-4'",
        ),
        ('model = "claude-sonnet-4-5"', "agent 'researcher': system_prompt: is required"),
        (
            'model = "claude-sonnet-4-5"\nsystem_prompt = "x"\ncolour = "red"',
            "agent 'researcher': colour: is not a known field",
        ),
        (
            'model = "claude-3-haiku"\nsystem_prompt = "x"\nmax_tokens = 5000',
            "agent 'researcher': max_tokens: must be <= 4096",
        ),
        (
            'model = "claude-sonnet-4-5"\nsystem_prompt = "x"\ntools = ["delegate"]',
            "agent 'researcher': tools: the 'delegate' tool needs at least one agent in delegates",
        ),
        (
            (
                'model = "claude-sonnet-4-5"\nsystem_prompt = "x"\n[agents.researcher.compaction]\n'
                "trigger_ratio = 0.4"
            ),
            "compaction.target_ratio: must be < compaction.trigger_ratio",
        ),
        (
            (
                'model = "claude-sonnet-4-5"\nsystem_prompt = "x"\n[agents.researcher.compaction]\n'
                'strategy = "forget"'
            ),
            "agent 'researcher': compaction.strategy:",
        ),
        (
            'model = "claude-sonnet-4-5"\nsystem_prompt = "x"\ntools = ["teleport"]',
            "agent 'researcher': tools: unknown tool 'teleport'",
        ),
        (
            (
                'model = "claude-sonnet-4-5"\nsystem_prompt = "x"\ntools = ["delegate"]\n'
                'delegates = ["ghost"]'
            ),
            "agent 'researcher': delegates: unknown agent 'ghost'",
        ),
        (
            'name = "other"\nmodel = "claude-sonnet-4-5"\nsystem_prompt = "x"',
            "agent 'researcher': name: must equal the table key",
        ),
    ],
)
def test_errors_name_the_agent_and_the_field(tmp_path: Path, body: str, message: str) -> None:
    assert message in load_error(tmp_path, "[agents.researcher]\n" + body)


@pytest.mark.parametrize(
    "extra,field",
    [
        ('api_key = "abc"', "api_key"),
        ('[agents.helper.budget]\npassword = "x"', "budget.password"),
        ('[agents.helper.deadlines]\nauth_token = "x"', "deadlines.auth_token"),
        ('description = "use sk-ant-api03-AAAAAAAAAAAAAAAAAAAA"', "description: contains"),
    ],
)
def test_credentials_are_refused(tmp_path: Path, extra: str, field: str) -> None:
    message = load_error(
        tmp_path, MINIMAL.replace('system_prompt = "Help."', 'system_prompt = "Help."\n' + extra)
    )
    assert f"agent 'helper': {field}" in message and "credential" in message


def test_file_level_errors(tmp_path: Path) -> None:
    assert "not valid TOML" in load_error(tmp_path, "[agents.x\n")
    assert "not valid YAML" in load_error(tmp_path, "agents: [unclosed", "a.yaml")
    assert "end in .toml, .yaml or .yml" in load_error(tmp_path, MINIMAL, "agents.json")
    assert "needs an [agents.<name>] table" in load_error(tmp_path, "[agents]\n")
    assert "unknown top-level key(s) extra" in load_error(tmp_path, "extra = 1\n" + MINIMAL)
    assert "agent 'Bad Name': name: must match" in load_error(
        tmp_path, MINIMAL.replace("helper", '"Bad Name"')
    )


def test_custom_tool_specs(tmp_path: Path) -> None:
    registry = registry_from_file(
        write(
            tmp_path,
            MINIMAL.replace(
                'system_prompt = "Help."', 'system_prompt = "Help."\ntools = ["lookup"]'
            )
            + """
[tools.lookup]
description = "Look a word up."
input_schema = { type = "object", properties = { word = { type = "string" } } }
""",
        )
    )
    spec = registry.tool_specs("helper")[0]
    assert spec.name == "lookup" and spec.input_schema["properties"]["word"]["type"] == "string"


def test_definition_hash_is_stable_and_sensitive() -> None:
    base = AgentDefinition(name="a", model="claude-sonnet-4-5", system_prompt="x")
    same = AgentDefinition.model_validate(
        {"system_prompt": "x", "model": "claude-sonnet-4-5", "name": "a"}
    )
    assert definition_hash(base) == definition_hash(same)
    assert len(definition_hash(base)) == 64
    for change in ({"system_prompt": "y"}, {"temperature": 0.5}, {"tools": ("calculator",)}):
        assert definition_hash(base.model_copy(update=change)) != definition_hash(base)


def test_definitions_are_frozen() -> None:
    d = AgentDefinition(name="a", model="claude-sonnet-4-5", system_prompt="x")
    with pytest.raises(ValidationError, match="frozen"):
        d.model = "claude-haiku-4-5"  # type: ignore[misc]


def test_registry_lookups_list_the_known_agents() -> None:
    registry = registry_from_file(EXAMPLES)
    with pytest.raises(
        ContractError, match=r"Unknown agent 'ghost' \(known agents: assistant, researcher\)"
    ):
        registry.get("ghost")
    assert registry.find("ghost") is None and "assistant" in registry and len(registry) == 2
    info = registry.info("assistant")
    assert info.prefix_tokens > 0 and len(info.toolset_hash) == 64
    assert registry.tool("shell") is BUILTIN_TOOL_SPECS["shell"]


def test_duplicate_agents_are_refused() -> None:
    d = AgentDefinition(name="a", model="claude-sonnet-4-5", system_prompt="x")
    with pytest.raises(AgentDefinitionError, match="defined twice"):
        AgentRegistry([d, d])


def test_builtin_tool_specs_are_json_schema_objects() -> None:
    assert set(BUILTIN_TOOL_SPECS) == {
        "calculator",
        "current_time",
        "read_file",
        "write_file",
        "http_get",
        "shell",
        "delegate",
        "delegate_many",
        "handoff",
    }
    for spec in BUILTIN_TOOL_SPECS.values():
        schema = spec.input_schema
        assert schema["type"] == "object" and set(schema["required"]) <= set(schema["properties"])
    assert BUILTIN_TOOL_SPECS["delegate"].input_schema["required"] == ["agent", "task"]
