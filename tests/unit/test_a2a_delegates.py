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


def test_a_remote_agents_token_is_named_by_a_variable_of_a_listed_delegate() -> None:
    url = "https://agents.example.com/a/"
    data = lead(f"a2a:{url}")
    data["agents"]["lead"]["a2a"] = {url: {"bearer_token_env": "REMOTE_TOKEN"}}  # type: ignore[index]
    (d,), _ = parse_definitions(data)
    assert d.a2a[url].bearer_token_env == "REMOTE_TOKEN"
    data["agents"]["lead"]["a2a"] = {"https://other/": {"bearer_token_env": "T"}}  # type: ignore[index]
    with pytest.raises(AgentDefinitionError, match="has no delegate 'a2a:https://other/'"):
        parse_definitions(data)


def test_a_missing_token_variable_fails_the_child_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streams.a2a import _headers

    url = "https://agents.example.com/a/"
    data = lead(f"a2a:{url}")
    data["agents"]["lead"]["a2a"] = {url: {"bearer_token_env": "REMOTE_TOKEN"}}  # type: ignore[index]
    (d,), _ = parse_definitions(data)
    monkeypatch.delenv("REMOTE_TOKEN", raising=False)
    with pytest.raises(LookupError, match="REMOTE_TOKEN"):
        _headers(d, url)
    monkeypatch.setenv("REMOTE_TOKEN", "t")
    assert _headers(d, url) == {"Authorization": "Bearer t"}
    assert _headers(d, "https://elsewhere/") == {}
