"""What the model reads of an MCP tool result: its content blocks as text.

Rule: every block becomes text the model can act on, and nothing of it is lost
silently. Text is kept as is; an image or audio block is named with its type and size
(the session log holds text, and a base64 payload would fill the context for nothing);
an embedded text resource is shown with its URI, a binary one named; a resource link is
listed; `structured_content` is shown as JSON when the server sent no content blocks
for it. A result the server marked as an error is a failed call whose text is the
server's message.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import mcp_types as types

__all__ = ["render_result"]


def _size(data: str) -> int:
    try:
        return len(base64.b64decode(data, validate=False))
    except (binascii.Error, ValueError):
        return len(data)


def _block(block: Any) -> str:
    if isinstance(block, types.TextContent):
        return block.text
    if isinstance(block, types.ImageContent):
        return f"[image: {block.mime_type}, {_size(block.data)} bytes]"
    if isinstance(block, types.AudioContent):
        return f"[audio: {block.mime_type}, {_size(block.data)} bytes]"
    if isinstance(block, types.EmbeddedResource):
        res = block.resource
        if isinstance(res, types.TextResourceContents):
            kind = f", {res.mime_type}" if res.mime_type else ""
            return f"[resource {res.uri}{kind}]\n{res.text}"
        if isinstance(res, types.BlobResourceContents):
            kind = res.mime_type or "application/octet-stream"
            return f"[resource {res.uri}: {kind}, {_size(res.blob)} bytes]"
    if isinstance(block, types.ResourceLink):
        described = f" ({block.description})" if block.description else ""
        return f"[resource link: {block.uri} {block.name}{described}]"
    kind = getattr(block, "type", type(block).__name__)
    return f"[{kind} content]"


def render_result(result: types.CallToolResult) -> tuple[bool, str]:
    """(ok, text) of one tools/call result."""
    parts = [_block(b) for b in result.content]
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False, sort_keys=True))
    text = "\n".join(parts)
    if result.is_error:
        return False, text or "The MCP tool reported an error without a message."
    return True, text
