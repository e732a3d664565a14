"""Custom tools an agent file names by import path: the shell imports them into the tool
registry the effect runner executes with, and the core sees them under their own names
(turnlog.wiring.load_registry, agents.tools.registry.bind_agent_tools)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.errors import AgentDefinitionError
from agents.events import PolicyAction
from agents.tools import builtin_registry
from turnlog.wiring import load_registry

REPO = Path(__file__).resolve().parents[2]
WORDS = REPO / "tests" / "data" / "words.toml"

AGENT = """
[agents.words]
model = "scripted-small"
system_prompt = "Count words."
tools = {tools}
"""


def _agent_file(tmp_path: Path, tools: str) -> Path:
    path = tmp_path / "agents.toml"
    path.write_text(AGENT.format(tools=tools), encoding="utf-8")
    return path


async def test_an_import_path_tool_is_listed_under_its_own_name_and_runs() -> None:
    tools = builtin_registry()
    registry = load_registry(WORDS, tools=tools)
    info = registry.info("words")
    assert info.definition.tools == ("calculator", "word_count")
    assert [t.name for t in info.tools] == ["calculator", "word_count"]
    assert registry.tool("word_count") is not None
    # the executor's registry holds the imported code under the name the model calls
    assert tools.resolve("word_count").source == "examples.custom_tools:word_count"
    from agents.tools import ToolContext

    result = await tools.execute(
        "word_count", '{"text": "to be or not to be"}', ToolContext(session_id="s", call_id="c")
    )
    assert (result.ok, result.content) == (True, '{"words": 6, "characters": 18}')


def test_a_policy_rule_naming_the_import_path_applies_to_the_tool() -> None:
    policy = load_registry(WORDS).get("words").policy
    assert policy.evaluate("word_count", {"text": "x" * 300}).action is PolicyAction.DENY
    assert policy.evaluate("word_count", {"text": "short"}).action is PolicyAction.ALLOW


def test_the_same_file_gives_the_same_definition_hash_each_time() -> None:
    # replay --verify loads the file again: the hashes must match the worker's
    assert load_registry(WORDS).definition_hash("words") == load_registry(
        WORDS, tools=builtin_registry()
    ).definition_hash("words")


@pytest.mark.parametrize(
    ("tool", "problem"),
    [
        ("examples.custom_tools:nope", "'examples.custom_tools' has no attribute 'nope'"),
        ("examples.no_such_module:count", "module 'examples.no_such_module' was not found"),
        ("examples.custom_tools:_FACTORS", "cannot be a tool"),
    ],
)
def test_a_tool_that_cannot_be_imported_names_the_file_agent_tool_and_problem(
    tmp_path: Path, tool: str, problem: str
) -> None:
    path = _agent_file(tmp_path, f'["calculator", "{tool}"]')
    with pytest.raises(AgentDefinitionError) as caught:
        load_registry(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: agent 'words': tools: the custom tool {tool!r}")
    assert problem in message


def test_a_custom_tool_listed_twice_under_its_two_names_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "agents.toml"
    path.write_text(
        AGENT.format(tools='["word_count", "examples.custom_tools:word_count"]')
        + '\n[tools.word_count]\ndescription = "Counts."\n',
        encoding="utf-8",
    )
    with pytest.raises(AgentDefinitionError, match="'word_count' is listed twice"):
        load_registry(path)


def test_a_custom_tool_whose_name_is_a_builtin_is_refused(tmp_path: Path) -> None:
    module = tmp_path / "clash_tools.py"
    module.write_text(
        "def calculator(expression: str) -> str:\n    '''Not the built-in.'''\n"
        "    return expression\n",
        encoding="utf-8",
    )
    path = _agent_file(tmp_path, '["clash_tools:calculator"]')
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(AgentDefinitionError, match="already registered"):
            load_registry(path)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("clash_tools", None)
