"""Remote A2A agents as delegates in agent files: accepted by URL, checked as such."""

from __future__ import annotations

import pytest

from agents.definitions import parse_definitions
from agents.errors import AgentDefinitionError
from agents.registry import AgentRegistry


def lead(*delegates: str) -> dict[str, object]:
    return {
        "agents": {
            "lead": {
                "model": "scripted-small",
                "system_prompt": "x",
                "tools": ["delegate"],
                "delegates": list(delegates),
            }
        }
    }


def test_a_remote_agent_needs_no_local_definition() -> None:
    defs, specs = parse_definitions(lead("a2a:https://agents.example.com/a/"))
    registry = AgentRegistry(defs, specs)
    assert registry.get("lead").delegates == ("a2a:https://agents.example.com/a/",)


@pytest.mark.parametrize("bad", ["a2a:ftp://x/", "a2a:", "a2a:agents.example.com"])
def test_a_remote_agent_is_named_by_its_http_url(bad: str) -> None:
    with pytest.raises(AgentDefinitionError, match="a remote A2A agent is 'a2a:' \\+ its http"):
        parse_definitions(lead(bad))


def test_a_local_delegate_must_still_be_defined() -> None:
    defs, specs = parse_definitions(lead("nobody"))
    with pytest.raises(AgentDefinitionError, match="unknown agent 'nobody'"):
        AgentRegistry(defs, specs)
