"""The built-ins' model-facing specs (pure core, `agents.toolspecs`) and the input models
that validate their arguments (`agents.tools`) must describe the same arguments."""

from __future__ import annotations

import pytest

from agents.tools import BUILTIN_NAMES, BUILTIN_TOOLS, builtin_registry
from agents.toolspecs import BUILTIN_TOOL_SPECS


def test_every_core_spec_has_an_implementation_and_vice_versa() -> None:
    assert set(BUILTIN_NAMES) == set(BUILTIN_TOOL_SPECS)


def test_the_registry_tells_the_model_exactly_the_core_specs() -> None:
    registry = builtin_registry()
    assert {s.name: s for s in registry.specs()} == dict(BUILTIN_TOOL_SPECS)
    assert registry.spec_map(["shell", "calculator"]) == {
        "shell": BUILTIN_TOOL_SPECS["shell"],
        "calculator": BUILTIN_TOOL_SPECS["calculator"],
    }


@pytest.mark.parametrize("name", sorted(BUILTIN_TOOL_SPECS))
def test_core_schema_and_validating_model_agree(name: str) -> None:
    core = BUILTIN_TOOL_SPECS[name].input_schema
    mine = BUILTIN_TOOLS[name].generated_schema()
    assert core["type"] == mine["type"] == "object"
    assert core.get("additionalProperties") is False
    assert mine.get("additionalProperties") is False
    assert set(core["properties"]) == set(mine["properties"]), name
    assert set(core.get("required", [])) == set(mine.get("required", [])), name
    for prop, core_prop in core["properties"].items():
        my_prop = mine["properties"][prop]
        # An optional argument may also accept null on our side (anyOf [T, null]).
        branches = my_prop.get("anyOf", [my_prop])
        for keyword, value in core_prop.items():
            if keyword == "description":
                continue
            assert any(b.get(keyword) == value for b in branches), (
                f"{name}.{prop}: the core says {keyword}={value!r}, the model says {my_prop}"
            )


def test_only_shell_declares_a_default_action() -> None:
    assert builtin_registry().default_actions() == {"shell": "require_approval"}
