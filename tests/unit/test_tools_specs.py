"""The built-ins' model-facing specs (pure core, `agents.toolspecs`) and the input models
that validate their arguments (`agents.tools`) must describe the same arguments."""

from __future__ import annotations

import pytest

from agents.tools import BUILTIN_NAMES, BUILTIN_TOOLS, as_tool, builtin_registry
from agents.toolspecs import BUILTIN_IDEMPOTENT, BUILTIN_TOOL_SPECS


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


def test_idempotency_declarations_agree_with_the_cores_copy() -> None:
    """Reading and computing are idempotent; a command, a write and a delegation are not.
    The core learns it from each spec (`ToolSpec.idempotent`, never shown to the model)."""
    registry = builtin_registry()
    assert (
        registry.idempotent_tools()
        == BUILTIN_IDEMPOTENT
        == {"calculator", "current_time", "read_file", "http_get"}
    )
    for name, spec in registry.spec_map(BUILTIN_NAMES).items():
        assert spec.idempotent == BUILTIN_TOOLS[name].idempotent == (name in BUILTIN_IDEMPOTENT)
        assert "idempotent" not in spec.to_dict()


def test_a_custom_tool_is_not_idempotent_unless_it_says_so() -> None:
    def lookup(q: str) -> str:
        """Look something up."""
        return q

    assert as_tool(lookup).spec().idempotent is False
    assert as_tool(lookup, idempotent=True).spec().idempotent is True
    # A re-declared built-in tells the core its own declaration.
    assert as_tool(BUILTIN_TOOLS["shell"], idempotent=True).spec().idempotent is True


def test_the_worker_hands_every_call_its_effect_id_as_idempotency_key() -> None:
    from types import SimpleNamespace

    from streams.effects import tool_context

    effect = SimpleNamespace(effect_id="sess-1:e7", attempt=2)
    ctx = tool_context(None, "sess-1", effect)  # type: ignore[arg-type]
    assert (ctx.call_id, ctx.idempotency_key) == ("sess-1:e7", "sess-1:e7")
