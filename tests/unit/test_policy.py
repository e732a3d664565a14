"""The policy engine: ordered rules, first match wins, argument predicates, default."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from agents.events import PolicyAction
from agents.policy import ArgPredicate, Policy, PolicyDecision

ALLOW, DENY, ASK = PolicyAction.ALLOW, PolicyAction.DENY, PolicyAction.REQUIRE_APPROVAL


def policy(*rules: dict[str, Any], default: str = "allow") -> Policy:
    return Policy.model_validate({"default": default, "rules": list(rules)})


def test_first_match_wins_and_default_applies_otherwise() -> None:
    p = policy(
        {
            "name": "deny-rm",
            "tool": "shell",
            "action": "deny",
            "when": [{"arg": "command", "op": "prefix", "value": "rm "}],
        },
        {"name": "ask-shell", "tool": "shell", "action": "require_approval"},
        {"name": "allow-all-shell", "tool": "shell", "action": "allow"},
        default="deny",
    )
    assert p.evaluate("shell", {"command": "rm -rf /"}) == PolicyDecision(DENY, "deny-rm", None)
    assert p.evaluate("shell", {"command": "ls"}) == PolicyDecision(ASK, "ask-shell", None)
    assert p.evaluate("calculator", {}) == PolicyDecision(DENY, None, None)


def test_tool_glob_is_case_sensitive_fnmatch() -> None:
    p = policy({"name": "files", "tool": "*_file", "action": "require_approval"})
    assert p.evaluate("write_file", {}).action is ASK
    assert p.evaluate("read_file", {}).action is ASK
    assert p.evaluate("READ_FILE", {}).action is ALLOW
    assert p.evaluate("file_reader", {}).action is ALLOW


@pytest.mark.parametrize(
    "pred,args,expected",
    [
        ({"arg": "mode", "value": "fast"}, {"mode": "fast"}, True),
        ({"arg": "mode", "value": "fast"}, {"mode": "slow"}, False),
        ({"arg": "mode", "value": "fast"}, {}, False),
        ({"arg": "mode", "op": "not_equals", "value": "fast"}, {}, True),
        ({"arg": "n", "value": 1}, {"n": True}, False),  # JSON true is not 1
        ({"arg": "flag", "value": True}, {"flag": True}, True),
        ({"arg": "n", "op": "in", "value": [1, 2]}, {"n": 2}, True),
        ({"arg": "n", "op": "in", "value": [1, 2]}, {"n": 3}, False),
        ({"arg": "n", "op": "not_in", "value": [1, 2]}, {}, True),
        ({"arg": "opts.level", "op": "equals", "value": 3}, {"opts": {"level": 3}}, True),
        ({"arg": "paths.1", "op": "prefix", "value": "/etc"}, {"paths": ["/tmp", "/etc/x"]}, True),
        ({"arg": "paths.5", "op": "prefix", "value": "/etc"}, {"paths": ["/tmp"]}, False),
        (
            {"arg": "url", "op": "glob", "value": "https://*.example.com/*"},
            {"url": "https://api.example.com/v1"},
            True,
        ),
        ({"arg": "cmd", "op": "regex", "value": r"\bsudo\b"}, {"cmd": "echo; sudo ls"}, True),
        ({"arg": "cmd", "op": "regex", "value": r"\bsudo\b"}, {"cmd": 7}, False),
        ({"arg": "cmd", "op": "prefix", "value": "ls"}, {"cmd": ["ls"]}, False),
        ({"arg": "token", "op": "exists"}, {"token": None}, True),
        ({"arg": "token", "op": "exists", "value": False}, {}, True),
        ({"arg": "token", "op": "exists", "value": False}, {"token": 1}, False),
    ],
)
def test_predicates(pred: dict[str, Any], args: dict[str, Any], expected: bool) -> None:
    assert ArgPredicate.model_validate(pred).matches(args) is expected


def test_all_predicates_of_a_rule_must_hold() -> None:
    p = policy(
        {
            "name": "big-writes",
            "tool": "write_file",
            "action": "deny",
            "when": [
                {"arg": "path", "op": "prefix", "value": "/etc/"},
                {"arg": "force", "value": True},
            ],
        }
    )
    assert p.evaluate("write_file", {"path": "/etc/passwd", "force": True}).action is DENY
    assert p.evaluate("write_file", {"path": "/etc/passwd"}).action is ALLOW


@pytest.mark.parametrize(
    "rules,message",
    [
        ([{"name": "a", "action": "allow"}, {"name": "a", "action": "deny"}], "used twice"),
        ([{"name": "@engine", "action": "deny"}], "should match pattern"),
        ([{"name": "r", "action": "maybe"}], "Input should be"),
        (
            [{"name": "r", "action": "deny", "when": [{"arg": "x", "op": "in", "value": 1}]}],
            "needs a list",
        ),
        (
            [{"name": "r", "action": "deny", "when": [{"arg": "x", "op": "regex", "value": "("}]}],
            "invalid regex",
        ),
        (
            [{"name": "r", "action": "deny", "when": [{"arg": "x", "op": "prefix", "value": 3}]}],
            "needs a string",
        ),
        ([{"name": "r", "action": "deny", "unknown": 1}], "Extra inputs"),
    ],
)
def test_invalid_policies_are_refused(rules: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Policy.model_validate({"rules": rules})
