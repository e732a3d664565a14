"""An MCP server written with the official SDK, for the tests: stdio by default,
streamable HTTP with `--http PORT`. Standalone (imports only the SDK): it runs confined,
where the repository is not importable.

Its tools show what a client must handle: a plain result (`add`), images and embedded
resources, a tool error, a slow call (cancellation), the `_meta` a call carried
(idempotency key), what the process can see (environment, files), and a tool list that
changes (`grow`, with `notifications/tools/list_changed`). MCP_FAKE_VARIANT=2 changes
`add`'s schema (a server upgraded under a running session).
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import EmbeddedResource, ImageContent, TextContent, TextResourceContents
from pydantic import Field

server = MCPServer("turnlog-test-mcp")
VARIANT = os.environ.get("MCP_FAKE_VARIANT", "1")

if VARIANT == "2":

    @server.tool()
    def add(a: int, b: int, c: int = 0) -> int:
        """Add two or three integers."""
        return a + b + c

else:

    @server.tool()
    def add(
        a: Annotated[int, Field(description="first")],
        b: Annotated[int, Field(description="second")],
    ) -> int:
        """Add two integers."""
        return a + b


@server.tool()
def picture() -> list[ImageContent | TextContent]:
    """A small PNG and a caption."""
    data = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 24).decode()
    return [
        ImageContent(type="image", data=data, mime_type="image/png"),
        TextContent(type="text", text="a tiny picture"),
    ]


@server.tool()
def document() -> EmbeddedResource:
    """An embedded text resource."""
    return EmbeddedResource(
        type="resource",
        resource=TextResourceContents(uri="memo://notes/1", mime_type="text/plain", text="hello"),
    )


@server.tool()
def broken(reason: str) -> str:
    """Always fails with `reason`."""
    raise ValueError(reason)


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


@server.tool()
async def slow(seconds: float, marker: str = "") -> str:
    """Sleep, then answer. Writes `marker` into HOME before sleeping when given."""
    if marker:
        path = os.path.join(os.environ.get("HOME", "/tmp"), marker)
        await asyncio.to_thread(_write, path, str(os.getpid()))
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
async def key(ctx: Context) -> str:
    """The idempotency key the call carried in its _meta."""
    meta = ctx.request_context.meta or {}
    return str(dict(meta).get("io.turnlog/idempotency-key", "<none>"))


@server.tool()
async def auth(ctx: Context) -> str:
    """The Authorization header of the HTTP request that carried this call."""
    request = ctx.request_context.request
    headers = getattr(request, "headers", None)
    return str(headers.get("authorization", "<none>")) if headers is not None else "<stdio>"


@server.tool()
def die() -> str:
    """The server process exits in the middle of the call."""
    os._exit(3)


@server.tool()
def environment() -> str:
    """The names and values of this process's environment, one per line."""
    return "\n".join(f"{k}={v}" for k, v in sorted(os.environ.items()))


@server.tool()
def peek(path: str) -> str:
    """The first 200 bytes of a file, or why it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(200).decode("utf-8", errors="replace")
    except OSError as exc:
        return f"cannot read: {type(exc).__name__}"


@server.tool()
async def grow(ctx: Context) -> str:
    """Add a tool `double` and tell the client the list changed."""
    server.add_tool(lambda x: x * 2, name="double", description="Double x.")
    await ctx.request_context.session.send_tool_list_changed()
    return "grown"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
