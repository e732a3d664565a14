"""The deterministic token estimate the core uses for compaction triggers and budgets.

Rule: an estimate must be a pure function of the text, identical in every process and
every replay, so it is a character count (about four characters per token for English
and code) plus a fixed per-entry overhead for the message framing. It is deliberately
simple; a real tokenizer would tie the log's meaning to a library version.
"""

from __future__ import annotations

__all__ = ["CHARS_PER_TOKEN", "ENTRY_OVERHEAD", "estimate_tokens"]

CHARS_PER_TOKEN = 4
ENTRY_OVERHEAD = 4  # role/framing tokens around each content block


def estimate_tokens(text: str) -> int:
    """Estimated tokens of `text` (rounded up), without any overhead."""
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN
