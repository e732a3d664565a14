"""MCP servers reached through the official SDK, for real: the test server written with
the SDK (tests/fakes/mcp_server.py) over stdio, confined by bubblewrap, and over
streamable HTTP; and a third-party server from PyPI (`mcp-server-time`) over stdio.
No broker is needed: these drive the tool registry the effect runner executes with.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agents.definitions import McpServer, parse_definitions
from agents.tools import ToolContext, ToolRegistry, ToolSettings, builtin_registry
from agents.tools.mcp import binding_of, load_mcp
from agents.tools.mcp.hub import McpHub

# The fixtures' loop (session scope): servers started by a fixture keep serving.
pytestmark = pytest.mark.asyncio(loop_scope="session")

ROOT = Path(__file__).resolve().parents[2]
FAKES = ROOT / "tests" / "fakes"
SERVER = FAKES / "mcp_server.py"


def stdio_server(**extra: object) -> dict[str, object]:
    return {
        "command": [sys.executable, str(SERVER)],
        "read_only": [str(FAKES)],
        "tools": ["*"],
        **extra,
    }


def agent_file(servers: dict[str, dict[str, object]], tools: list[str] | None = None) -> dict:
    return {
        "agents": {
            "helper": {
                "model": "scripted-small",
                "system_prompt": "You use MCP tools.",
                "tools": tools or [],
                "mcp": servers,
            }
        }
    }


def ctx(tmp_path: Path, call_id: str = "call-1") -> ToolContext:
    return ToolContext("s-mcp", call_id, settings=ToolSettings(sandbox_dir=tmp_path / "sandbox"))


WORKER_SECRETS = {
    # The worker's credentials, which no stdio server may see.
    "ANTHROPIC_API_KEY": "sk-ant-worker-secret-000000",
    "DATABASE_URL": "postgresql://turnlog:hunter2@127.0.0.1/turnlog",
    # A secret the agent file hands to the server by name.
    "FAKE_MCP_TOKEN": "token-for-the-server",
}


@pytest.fixture(scope="module")
def secrets_in_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in WORKER_SECRETS.items():
            mp.setenv(name, value)
        yield


@pytest.fixture(scope="module")
async def bound(
    secrets_in_env: None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[ToolRegistry, dict]]:
    """One stdio server for the tests that only call it (a server start costs seconds);
    its directory is under `root`."""
    root = tmp_path_factory.mktemp("mcp")
    defs, _ = parse_definitions(agent_file({"fake": stdio_server(env=["FAKE_MCP_TOKEN"])}))
    tools = builtin_registry()
    bound_defs, specs = await asyncio.to_thread(load_mcp, defs, tools)
    binding = binding_of(tools)
    assert binding is not None
    try:
        binding.hub.settings = ctx(root).settings
        yield tools, {"definitions": bound_defs, "specs": specs, "hub": binding.hub, "root": root}
    finally:
        await binding.hub.aclose()


async def test_stdio_server_tools_are_discovered_with_their_schemas(
    bound: tuple[ToolRegistry, dict],
) -> None:
    tools, b = bound
    (helper,) = b["definitions"]
    assert "fake__add" in helper.tools and "fake__grow" in helper.tools
    spec = b["specs"]["fake__add"]
    assert spec.description == "Add two integers."
    assert spec.input_schema["properties"]["a"]["description"] == "first"
    assert spec.input_schema["required"] == ["a", "b"]
    assert tools.resolve("fake__add").spec() == spec


async def test_calls_map_text_images_resources_and_errors(bound: tuple[ToolRegistry, dict]) -> None:
    tools, b = bound
    tmp_path = b["root"]
    c = ctx(tmp_path)
    added = await tools.execute("fake__add", '{"a": 2, "b": 3}', c)
    assert (added.ok, added.content) == (True, "5")
    picture = await tools.execute("fake__picture", "{}", c)
    assert picture.content == "[image: image/png, 32 bytes]\na tiny picture"
    doc = await tools.execute("fake__document", "{}", c)
    assert doc.content == "[resource memo://notes/1, text/plain]\nhello"
    broken = await tools.execute("fake__broken", '{"reason": "no"}', c)
    assert broken.ok is False and "broken" in broken.content
    wrong = await tools.execute("fake__add", '{"a": "x"}', c)
    assert wrong.ok is False and "validation" in wrong.content
    not_object = await tools.execute("fake__add", "[1, 2]", c)
    assert not_object.ok is False and not_object.error_kind == "invalid_arguments"


async def test_a_call_carries_the_effect_id_as_idempotency_key(
    bound: tuple[ToolRegistry, dict],
) -> None:
    tools, b = bound
    tmp_path = b["root"]
    c = ToolContext(
        "s-mcp", "call-9", settings=ctx(tmp_path).settings, idempotency_key="s-mcp/effect-9"
    )
    result = await tools.execute("fake__key", "{}", c)
    assert result.content == "s-mcp/effect-9"


async def test_a_stdio_server_runs_without_the_workers_credentials(
    bound: tuple[ToolRegistry, dict],
) -> None:
    tools, b = bound
    tmp_path = b["root"]
    c = ctx(tmp_path)
    env = dict(
        line.split("=", 1)
        for line in (await tools.execute("fake__environment", "{}", c)).content.splitlines()
    )
    assert "ANTHROPIC_API_KEY" not in env and "DATABASE_URL" not in env
    assert env["FAKE_MCP_TOKEN"] == "token-for-the-server"  # named in the agent file
    assert env["HOME"] == str((tmp_path / "mcp" / "fake").resolve())
    # The repository is not there (only the server's read_only directory is), nor the
    # worker's processes: /proc is the sandbox's own.
    peek = await tools.execute("fake__peek", json.dumps({"path": str(ROOT / "pyproject.toml")}), c)
    assert peek.content.startswith("cannot read")
    own = await tools.execute("fake__peek", json.dumps({"path": "/proc/1/environ"}), c)
    assert "sk-ant-worker-secret" not in own.content and "hunter2" not in own.content


async def test_a_cancelled_call_stops_and_the_server_stays_usable(
    bound: tuple[ToolRegistry, dict],
) -> None:
    tools, b = bound
    tmp_path = b["root"]
    c = ctx(tmp_path)
    call = asyncio.create_task(tools.execute("fake__slow", '{"seconds": 60, "marker": "m"}', c))
    marker = tmp_path / "mcp" / "fake" / "m"
    async with asyncio.timeout(30):
        while not marker.exists():
            await asyncio.sleep(0.05)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    again = await tools.execute("fake__add", '{"a": 1, "b": 1}', c)
    assert again.content == "2"


async def test_concurrent_calls_share_one_server(
    bound: tuple[ToolRegistry, dict],
) -> None:
    tools, b = bound
    c = ctx(b["root"])
    results = await asyncio.gather(
        *(tools.execute("fake__add", json.dumps({"a": i, "b": 1000}), c) for i in range(20))
    )
    assert [r.content for r in results] == [str(1000 + i) for i in range(20)]


async def test_a_server_that_dies_mid_call_fails_the_call_and_is_started_again(
    bound: tuple[ToolRegistry, dict],
) -> None:
    tools, b = bound
    c = ctx(b["root"])
    died = await tools.execute("fake__die", "{}", c)
    assert died.ok is False
    assert "whether the tool ran is unknown" in died.content
    b["hub"].changed.clear()
    again = await tools.execute("fake__add", '{"a": 4, "b": 4}', c)
    assert (again.ok, again.content) == (True, "8")
    assert b["hub"].changed.is_set()  # a restarted server is asked for its tools again


async def test_a_call_past_the_tools_timeout_is_stopped(tmp_path: Path) -> None:
    defs, _ = parse_definitions(agent_file({"fake": stdio_server(timeout_s=0.5)}))
    tools = builtin_registry()
    await asyncio.to_thread(load_mcp, defs, tools)
    binding = binding_of(tools)
    assert binding is not None
    try:
        result = await tools.execute("fake__slow", '{"seconds": 30}', ctx(tmp_path))
        assert (result.ok, result.error_kind) == (False, "timeout")
    finally:
        await binding.hub.aclose()


async def test_list_changed_is_noticed_and_rediscovery_sees_the_new_tool(
    bound: tuple[ToolRegistry, dict],
) -> None:
    tools, b = bound
    tmp_path = b["root"]
    hub: McpHub = b["hub"]
    hub.settings = ctx(tmp_path).settings
    assert "double" not in [t.name for t in (await hub.discover())["fake"].tools]
    hub.changed.clear()
    assert (await tools.execute("fake__grow", "{}", ctx(tmp_path))).content == "grown"
    async with asyncio.timeout(10):
        await hub.changed.wait()
    assert "double" in [t.name for t in (await hub.discover())["fake"].tools]


async def test_only_the_allowed_tools_are_offered_and_a_missing_one_says_why() -> None:
    defs, _ = parse_definitions(
        agent_file({"fake": stdio_server(tools=["add", "vanished"], idempotent=["add"])})
    )
    tools = builtin_registry()
    bound_defs, specs = await asyncio.to_thread(load_mcp, defs, tools)
    assert bound_defs[0].tools == ("fake__add", "fake__vanished")
    assert specs["fake__add"].idempotent and not specs["fake__vanished"].idempotent
    assert specs["fake__vanished"].description.startswith("(unavailable)")
    assert "fake__picture" not in tools


async def test_an_unreachable_server_is_offered_as_unavailable() -> None:
    defs, _ = parse_definitions(
        agent_file({"gone": {"url": f"http://127.0.0.1:{free_port()}/mcp", "tools": ["add"]}})
    )
    _, specs = await asyncio.to_thread(load_mcp, defs, builtin_registry(), discovery_timeout_s=20)
    assert specs["gone__add"].description.startswith("(unavailable)")


async def test_a_missing_secret_variable_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    hub = McpHub({"fake": McpServer(**stdio_server(env=["NOT_SET_ANYWHERE"]))})  # type: ignore[arg-type]
    try:
        found = await hub.list_tools("fake")
    finally:
        await hub.aclose()
    assert found.error is not None and "NOT_SET_ANYWHERE" in found.error


# ------------------------------------------------------------------------ HTTP


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "http-server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "--http", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        for _ in range(300):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None:
                pytest.fail(
                    f"the MCP HTTP server exited: {(tmp_path / 'http-server.log').read_text()}"
                )
            import time

            time.sleep(0.05)
        else:
            pytest.fail("the MCP HTTP server did not listen within 15 s")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.kill()
        proc.wait()
        log.close()


async def test_streamable_http_server(
    http_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MCP_BEARER", "t0ken")
    defs, _ = parse_definitions(
        agent_file(
            {
                "remote": {
                    "url": http_server,
                    "tools": ["add", "key", "auth", "grow"],
                    "bearer_token_env": "FAKE_MCP_BEARER",
                }
            }
        )
    )
    tools = builtin_registry()
    _, specs = await asyncio.to_thread(load_mcp, defs, tools)
    binding = binding_of(tools)
    assert binding is not None
    try:
        assert specs["remote__add"].input_schema["required"] == ["a", "b"]
        result = await tools.execute("remote__add", '{"a": 20, "b": 22}', ctx(tmp_path))
        assert (result.ok, result.content) == (True, "42")
        keyed = await tools.execute("remote__key", "{}", ctx(tmp_path, "call-h"))
        assert keyed.content == "call-h"
        sent = await tools.execute("remote__auth", "{}", ctx(tmp_path))
        assert sent.content == "Bearer t0ken"  # read from the worker's environment
        binding.hub.changed.clear()
        assert (await tools.execute("remote__grow", "{}", ctx(tmp_path))).content == "grown"
        async with asyncio.timeout(10):  # tools/list_changed arrives over HTTP too
            await binding.hub.changed.wait()
    finally:
        await binding.hub.aclose()


# ------------------------------------------------------------------- third party


async def test_mcp_server_time_from_pypi_over_stdio(tmp_path: Path, secrets_in_env: None) -> None:
    defs, _ = parse_definitions(
        agent_file({"time": {"command": ["mcp-server-time"], "tools": ["get_current_time"]}})
    )
    tools = builtin_registry()
    bound_defs, specs = await asyncio.to_thread(load_mcp, defs, tools)
    binding = binding_of(tools)
    assert binding is not None
    try:
        assert bound_defs[0].tools == ("time__get_current_time",)
        assert not specs["time__get_current_time"].description.startswith("(unavailable)")
        assert "timezone" in specs["time__get_current_time"].input_schema["properties"]
        result = await tools.execute(
            "time__get_current_time", '{"timezone": "Europe/Paris"}', ctx(tmp_path)
        )
        assert result.ok, result.content
        assert json.loads(result.content)["timezone"] == "Europe/Paris"
    finally:
        await binding.hub.aclose()


# ------------------------------------------------------------------ re-discovery


async def test_a_worker_swaps_in_the_new_tool_set_when_a_server_says_it_changed(
    tmp_path: Path,
) -> None:
    from types import SimpleNamespace

    from agents.registry import AgentRegistry
    from streams.mcp import McpRefresh

    defs, _ = parse_definitions(agent_file({"fake": stdio_server()}))
    tools = builtin_registry()
    bound_defs, specs = await asyncio.to_thread(load_mcp, defs, tools)
    registry = AgentRegistry(bound_defs, specs)
    process = SimpleNamespace(
        worker=SimpleNamespace(registry=registry), effects=SimpleNamespace(registry=registry)
    )
    binding = binding_of(tools)
    assert binding is not None
    binding.hub.settings = ctx(tmp_path).settings
    job = McpRefresh(process, binding, tools, interval_s=3600)
    stop = asyncio.Event()
    running = asyncio.create_task(job(stop))
    try:
        async with asyncio.timeout(30):
            while job.refreshes < 1:  # connected and discovered at start: nothing new
                await asyncio.sleep(0.02)
        assert process.worker.registry is registry
        assert (await tools.execute("fake__grow", "{}", ctx(tmp_path))).content == "grown"
        async with asyncio.timeout(30):
            while process.worker.registry is registry:
                await asyncio.sleep(0.02)
        result = await tools.execute("fake__double", '{"x": 21}', ctx(tmp_path))
        assert result.content == "42"
    finally:
        stop.set()
        await running
    swapped = process.worker.registry
    assert swapped is process.effects.registry
    assert "fake__double" in swapped.get("helper").tools
    before, after = registry.info("helper"), swapped.info("helper")
    assert before.toolset_hash != after.toolset_hash


async def test_the_example_agent_file_loads_with_its_mcp_tools() -> None:
    from turnlog.wiring import load_registry

    registry = await asyncio.to_thread(load_registry, ROOT / "examples" / "mcp_agents.toml")
    info = registry.info("timekeeper")
    assert [t.name for t in info.tools] == ["time__get_current_time", "time__convert_time"]
    assert all(not t.description.startswith("(unavailable)") for t in info.tools)
    assert registry.is_idempotent("time__convert_time")
