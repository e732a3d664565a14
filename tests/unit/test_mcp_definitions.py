"""MCP servers in agent files: validation, names and specs, result rendering (no IO)."""

from __future__ import annotations

import base64

import mcp_types as types
import pytest

from agents.definitions import definition_hash, parse_definitions
from agents.errors import AgentDefinitionError
from agents.registry import AgentRegistry, toolset_hash
from agents.tools import builtin_registry
from agents.tools.mcp._content import render_result
from agents.tools.mcp.bind import bind_mcp, offered_name, servers_of
from agents.tools.mcp.hub import Discovered, McpHub


def agent(**fields: object) -> dict[str, object]:
    return {"agents": {"a": {"model": "scripted-small", "system_prompt": "x", **fields}}}


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ({"tools": ["x"]}, "give either command (stdio) or url"),
        ({"command": ["x"], "url": "http://h/mcp", "tools": ["x"]}, "give either command"),
        ({"url": "ftp://h/mcp", "tools": ["x"]}, "is not an http(s) URL"),
        ({"url": "http://h/mcp", "tools": ["x"], "env": ["A"]}, "for stdio servers only"),
        ({"command": ["x"], "tools": ["x"], "bearer_token_env": "T"}, "for HTTP servers only"),
        ({"command": ["x"], "tools": []}, "mcp.s.tools"),
        ({"command": ["x"], "tools": ["x"], "env": ["not a name"]}, "mcp.s.env.0"),
        ({"command": ["x"], "tools": ["x"], "api_key": "x"}, "looks like a credential"),
        ({"command": ["x"], "tools": ["a"], "idempotent": ["b"]}, "idempotent: b not among"),
    ],
)
def test_a_bad_server_declaration_names_the_agent_and_field(
    server: dict[str, object], message: str
) -> None:
    with pytest.raises(AgentDefinitionError) as err:
        parse_definitions(agent(mcp={"s": server}))
    assert "agent 'a'" in str(err.value) and message in str(err.value)


def test_a_server_name_must_be_lower_case_without_underscores() -> None:
    with pytest.raises(AgentDefinitionError, match=r"mcp.my_server: server names must match"):
        parse_definitions(agent(mcp={"my_server": {"command": ["x"], "tools": ["*"]}}))


def test_an_agent_without_servers_keeps_its_hash() -> None:
    (plain,), _ = parse_definitions(agent())
    assert "mcp" not in plain.model_dump(exclude_defaults=True)
    (again,), _ = parse_definitions(agent(mcp={}))
    assert definition_hash(plain) == definition_hash(again)
    (with_mcp,), _ = parse_definitions(agent(mcp={"s": {"command": ["x"], "tools": ["*"]}}))
    assert definition_hash(with_mcp) != definition_hash(plain)


def test_one_server_name_is_one_server() -> None:
    data = agent(mcp={"s": {"command": ["x"], "tools": ["*"]}})
    data["agents"]["b"] = {  # type: ignore[index]
        "model": "scripted-small",
        "system_prompt": "y",
        "mcp": {"s": {"command": ["y"], "tools": ["*"]}},
    }
    defs, _ = parse_definitions(data)
    with pytest.raises(AgentDefinitionError, match="declared differently by agent 'a'"):
        servers_of(defs, "agents.toml")


def test_offered_names_are_what_every_provider_accepts() -> None:
    assert offered_name("time", "get_current_time") == "time__get_current_time"
    assert offered_name("fs", "read.file/v2") == "fs__read_file_v2"
    assert len(offered_name("s", "x" * 100)) == 64


def _tool(name: str, schema: dict[str, object]) -> types.Tool:
    return types.Tool(name=name, description=f"does {name}", input_schema=schema)


def test_binding_adds_tools_and_a_changed_schema_changes_the_toolset_hash() -> None:
    defs, _ = parse_definitions(
        agent(tools=["calculator"], mcp={"s": {"command": ["x"], "tools": ["add", "gone"]}})
    )
    schema_v1 = {"type": "object", "properties": {"a": {"type": "integer"}}}
    schema_v2 = {"type": "object", "properties": {"a": {"type": "number"}}}
    tools = builtin_registry()
    hub = McpHub({})

    def registry(schema: dict[str, object]) -> AgentRegistry:
        found = {"s": Discovered("s", (_tool("add", schema), _tool("other", schema)))}
        bound, specs = bind_mcp(defs, found, hub, tools)
        return AgentRegistry(bound, specs)

    one, two = registry(schema_v1), registry(schema_v2)
    assert one.get("a").tools == ("calculator", "s__add", "s__gone")
    assert one.tool("s__add").input_schema == schema_v1  # type: ignore[union-attr]
    assert one.tool("s__gone").description.startswith("(unavailable)")  # type: ignore[union-attr]
    assert "s__other" not in one.tools  # not allowed by the agent file
    assert one.definition_hash("a") == two.definition_hash("a")  # the file did not change
    assert one.info("a").toolset_hash != two.info("a").toolset_hash
    assert two.info("a").toolset_hash == toolset_hash(two.tool_specs("a"))
    assert tools.resolve("s__add").spec().input_schema == schema_v2  # replaced in place


def test_star_offers_whatever_the_server_lists() -> None:
    defs, _ = parse_definitions(agent(mcp={"s": {"command": ["x"], "tools": ["*"]}}))
    found = {"s": Discovered("s", (_tool("b", {"type": "object"}), _tool("a", {"type": "object"})))}
    bound, specs = bind_mcp(defs, found, McpHub({}), builtin_registry())
    assert bound[0].tools == ("s__b", "s__a")
    assert set(specs) == {"s__a", "s__b"}


def test_results_are_rendered_as_text() -> None:
    png = base64.b64encode(b"\x89PNG" + b"\0" * 6).decode()
    result = types.CallToolResult(
        content=[
            types.TextContent(type="text", text="hello"),
            types.ImageContent(type="image", data=png, mime_type="image/png"),
            types.EmbeddedResource(
                type="resource",
                resource=types.BlobResourceContents(uri="file:///x.bin", blob=png),
            ),
            types.ResourceLink(type="resource_link", uri="file:///y.txt", name="y"),
        ]
    )
    ok, text = render_result(result)
    assert ok
    assert text.splitlines() == [
        "hello",
        "[image: image/png, 10 bytes]",
        "[resource file:///x.bin: application/octet-stream, 10 bytes]",
        "[resource link: file:///y.txt y]",
    ]
    structured = types.CallToolResult(content=[], structured_content={"b": 1, "a": 2})
    assert render_result(structured) == (True, '{"a": 2, "b": 1}')
    failed = types.CallToolResult(content=[], is_error=True)
    assert render_result(failed)[0] is False
