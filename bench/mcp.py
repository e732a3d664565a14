"""MCP tool call overhead: an MCP tool over stdio (confined by bubblewrap) and over
streamable HTTP, against a built-in tool, through the tool registry the effect runner
executes with (argument validation, timeout, result rendering included).

    .venv/bin/python bench/mcp.py [--calls 300] [--warmup 20]

The MCP server is the SDK-written test server (tests/fakes/mcp_server.py), its `add`
tool; the built-in is `calculator` ("2+3"). Calls run one at a time on a warm
connection (the worker keeps one per server); the first call, which starts the stdio
server or opens the HTTP session, is reported apart. Prints a Markdown table: p50 and
p99 latency per call, and the overhead over the built-in at p50.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# This file is named like the SDK's package: keep bench/ off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from agents.definitions import parse_definitions
from agents.tools import ToolContext, ToolRegistry, ToolSettings, builtin_registry
from agents.tools.mcp import binding_of, load_mcp

SERVER = ROOT / "tests" / "fakes" / "mcp_server.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _measure(
    tools: ToolRegistry, name: str, args: str, ctx: ToolContext, calls: int, warmup: int
) -> tuple[float, list[float]]:
    started = time.perf_counter()
    first = await tools.execute(name, args, ctx)
    first_ms = (time.perf_counter() - started) * 1000
    assert first.ok, first.content
    for _ in range(warmup):
        await tools.execute(name, args, ctx)
    samples: list[float] = []
    for _ in range(calls):
        t0 = time.perf_counter()
        result = await tools.execute(name, args, ctx)
        samples.append((time.perf_counter() - t0) * 1000)
        assert result.ok, result.content
    return first_ms, samples


async def main(calls: int, warmup: int, port: int) -> None:
    for _ in range(400):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        await asyncio.sleep(0.05)
    data = {
        "agents": {
            "bench": {
                "model": "scripted-small",
                "system_prompt": "bench",
                "tools": ["calculator"],
                "mcp": {
                    "local": {
                        "command": [sys.executable, str(SERVER)],
                        "read_only": [str(SERVER.parent)],
                        "tools": ["add"],
                    },
                    "remote": {"url": f"http://127.0.0.1:{port}/mcp", "tools": ["add"]},
                },
            }
        }
    }
    defs, _ = parse_definitions(data)
    tools = builtin_registry()
    await asyncio.to_thread(load_mcp, defs, tools)
    binding = binding_of(tools)
    assert binding is not None
    with tempfile.TemporaryDirectory() as sandbox:
        ctx = ToolContext("bench", "call", settings=ToolSettings(sandbox_dir=Path(sandbox)))
        rows = []
        for label, name, args in (
            ("built-in (calculator)", "calculator", '{"expression": "2+3"}'),
            ("MCP stdio, bubblewrap", "local__add", '{"a": 2, "b": 3}'),
            ("MCP streamable HTTP", "remote__add", '{"a": 2, "b": 3}'),
        ):
            first, samples = await _measure(tools, name, args, ctx, calls, warmup)
            rows.append((label, first, _pct(samples, 0.5), _pct(samples, 0.99)))
        await binding.hub.aclose()
    base = rows[0][2]
    print(f"{calls} calls each after {warmup} warm-up calls, one at a time\n")
    print("| tool | first call (ms) | p50 (ms) | p99 (ms) | p50 over built-in (ms) |")
    print("|---|---:|---:|---:|---:|")
    for label, first, p50, p99 in rows:
        print(f"| {label} | {first:.1f} | {p50:.3f} | {p99:.3f} | {p50 - base:+.3f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    ns = parser.parse_args()
    port = _free_port()
    http = subprocess.Popen(
        [sys.executable, str(SERVER), "--http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        asyncio.run(main(ns.calls, ns.warmup, port))
    finally:
        http.kill()
        http.wait()
