"""Text that PostgreSQL cannot store, made storable. Pure: no IO.

Rule: PostgreSQL `text` holds no U+0000 and no lone surrogate (they are not UTF-8), but
an event may carry either — a user message from before the worker rejected NUL, a tool's
output. The projector stores such a character as U+FFFD (the replacement character) in
every projection column, the audit log's columns included, and nowhere else: the event
itself, its canonical JSON and its digest stay exactly what the log holds (the audit
log's `content` spells a NUL as the JSON escape \\u0000, which is plain ASCII). The
replacement is per character and depends on nothing else, so an incremental projection
and a rebuild store identical rows.

A json/jsonb column (none today; the rule is in place for the first) refuses the JSON
escape \\u0000 as well: in JSON text stored there, that escape becomes \\ufffd.

Why replace rather than reject: the log is the source of truth and already holds the
event; the projection must show what it can of it, and the audit log's content keeps
the exact original. Why U+FFFD rather than dropping the character: the text keeps its
length and a reader sees that something was there.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = ["REPLACEMENT", "clean_json_text", "clean_row", "clean_text", "needs_cleaning"]

REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# A \u0000 escape whose backslash is not itself escaped: preceded by an even number
# (0, 2, …) of backslashes.
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def needs_cleaning(canonical: str) -> bool:
    """Whether an event whose canonical JSON is `canonical` may hold a NUL: it is spelled
    \\u0000 there (a user who typed that escape gives a false positive, which only costs
    a cleaning pass). A lone surrogate shows itself when the text is encoded to UTF-8
    (the projector does that for the digest anyway), so it is not searched for here."""
    return "\\u0000" in canonical


def clean_text(text: str) -> str:
    """`text` with every NUL and lone surrogate replaced by U+FFFD."""
    return _UNSTORABLE.sub(REPLACEMENT, text)


def clean_json_text(text: str) -> str:
    """JSON text that jsonb accepts: `clean_text`, and each \\u0000 escape made \\ufffd
    (still valid JSON, decoding to U+FFFD as clean_text would give)."""
    return _NUL_ESCAPE.sub(r"\1\\ufffd", clean_text(text))


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):  # text[] columns
        return [_clean(v) for v in value]
    return value


def clean_row(row: Sequence[Any], json_columns: frozenset[int] = frozenset()) -> tuple[Any, ...]:
    """A row with its text values (and text-array elements) cleaned; the values at
    `json_columns` (indexes of json/jsonb columns) cleaned as JSON text."""
    return tuple(
        clean_json_text(v) if i in json_columns and isinstance(v, str) else _clean(v)
        for i, v in enumerate(row)
    )
