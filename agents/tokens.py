"""The deterministic token estimate the core uses for compaction triggers and budgets.

Rule: an estimate must be a pure function of the text, identical in every process and
every replay, so it is a character count (about four characters per token for English
and code) plus a fixed per-entry overhead for the message framing. It is deliberately
simple; a real tokenizer would tie the log's meaning to a library version.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CHARS_PER_TOKEN", "ENTRY_OVERHEAD", "IMAGE_TOKENS", "blocks_tokens", "estimate_tokens"]

CHARS_PER_TOKEN = 4
ENTRY_OVERHEAD = 4  # role/framing tokens around each content block


def estimate_tokens(text: str) -> int:
    """Estimated tokens of `text` (rounded up), without any overhead."""
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


# An image costs what its pixels cost (Anthropic: width x height / 750, at most about
# 1,600 at the size it scales images to); without decoding it, the core takes the most.
IMAGE_TOKENS = 1600
# A PDF costs per page (text plus a page image); without parsing it, a bytes-per-token
# guess, never less than one image.
PDF_BYTES_PER_TOKEN = 40


def blocks_tokens(blocks: tuple[Any, ...]) -> int:
    """Estimated tokens of an entry's blocks: attachments (an image a fixed amount, a
    document by its size). Thinking blocks count nothing: the API drops the thinking of
    earlier turns from the context (and bills a turn's own as output)."""
    total = 0
    for b in blocks:
        media_type = getattr(b, "media_type", None)
        if media_type is None:  # a thinking block
            continue
        if media_type.startswith("image/") or b.data is None:
            total += IMAGE_TOKENS
        else:
            total += max(IMAGE_TOKENS, len(b.data) * 3 // 4 // PDF_BYTES_PER_TOKEN)
    return total
