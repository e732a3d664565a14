"""The shape of the projection rows, and how changes to them merge. Pure: no IO.

Rule: `projections.fold` describes what each event changes as rows and *patches*
(`Changes`); this module fixes their columns and the merge rules, which the store's SQL
(projections._staging) and the in-memory model of the unit tests both follow:

- a patch names the columns an event sets; None means "leave as is", so several events
  touching one row (in one batch or in many) merge into the same final row;
- `increments` are added to the stored value, `appends` extend a text[] in event order;
- `sticky` rules keep a value that a later, less specific one would overwrite.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

__all__ = [
    "ENTRY_COLUMNS",
    "EVENT_COLUMNS",
    "PATCH_TABLES",
    "SESSION_COLUMNS",
    "Changes",
    "PatchTable",
    "SessionRow",
]


@dataclass(slots=True)
class SessionRow:
    """Working copy of one `sessions` row; field order is the table's column order."""

    session_id: str
    agent: str
    definition_hash: str | None
    status: str
    phase: str
    parent_session_id: str | None
    parent_call_id: str | None
    forked_from_session_id: str | None
    forked_at_seq: int | None
    created_at: datetime
    updated_at: datetime
    turns: int
    turns_completed: int
    turns_failed: int
    turns_cancelled: int
    first_seq: int
    last_seq: int
    last_entry_seq: int | None
    llm_calls: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_nanos: int
    closed_reason: str | None
    turns_refused: int = 0
    queued: int = 0
    # The unresolved tool calls of the current step, 'status:call_id' (agents.phases):
    # with `phase`, all the core needs to say the phase after the next event.
    pending_calls: list[str] = field(default_factory=list)
    # The model a SetModel switched the session to (None: its agent's own).
    model: str | None = None
    # The prompt variant the session was assigned (SessionStarted.variant).
    variant: str | None = None
    # The requester identity it started with (SessionStarted.client).
    client: str | None = None

    def as_tuple(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in SESSION_COLUMNS)


SESSION_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(SessionRow))


@dataclass(frozen=True, slots=True)
class PatchTable:
    """A keyed projection table written by patches. `increments` are added to the stored
    value, `appends` are text[] columns extended in event order; every other column is
    set when the patch names it."""

    name: str
    key: tuple[str, ...]
    columns: tuple[str, ...]
    increments: tuple[str, ...] = ()
    appends: tuple[str, ...] = ()
    # (column, kept, over): a `kept` value is not replaced by `over` (a denied tool call
    # stays denied when the ToolCallFailed that reports the denial follows).
    sticky: tuple[tuple[str, str, str], ...] = ()

    def keeps(self, column: str, old: Any, new: Any) -> bool:
        return any(c == column and old == k and new == o for c, k, o in self.sticky)


PATCH_TABLES: dict[str, PatchTable] = {
    t.name: t
    for t in (
        PatchTable(
            "llm_calls",
            ("session_id", "call_id"),
            (
                "status",
                "purpose",
                "iteration",
                "model_requested",
                "fallbacks",
                "max_tokens",
                "temperature",
                "context_entries",
                "request_digest",
                "reserved_tokens",
                "reserved_nanos",
                "requested_seq",
                "requested_at",
                "deadline_at",
                "turn_id",
                "model",
                "fallback_used",
                "attempts",
                "stop_reason",
                "input_tokens",
                "output_tokens",
                "cache_read_tokens",
                "cache_write_tokens",
                "reasoning_tokens",
                "cost_nanos",
                "latency_ms",
                "tool_calls",
                "completed_seq",
                "completed_at",
                "error_type",
                "error_message",
                "discarded",
                "cached_from",
                "superseded_seq",
                "superseded_at",
            ),
            increments=(
                "reissues",
                "superseded_answers",
                "superseded_input_tokens",
                "superseded_output_tokens",
                "superseded_cache_read_tokens",
                "superseded_cache_write_tokens",
                "superseded_cost_nanos",
            ),
            appends=("circuits_opened",),
        ),
        PatchTable(
            "tool_calls",
            ("session_id", "call_id"),
            (
                "llm_call_id",
                "name",
                "arguments_json",
                "decision",
                "rule",
                "status",
                "requested_seq",
                "requested_at",
                "deadline_at",
                "turn_id",
                "child_session_id",
                "result_seq",
                "completed_at",
                "latency_ms",
            ),
            increments=("reissues",),
            sticky=(("status", "denied", "failed"),),
        ),
        PatchTable(
            "approvals",
            ("session_id", "call_id"),
            (
                "tool_name",
                "outcome",
                "requested_seq",
                "requested_at",
                "expires_at",
                "decided_by",
                "reason",
                "decided_seq",
                "decided_at",
            ),
        ),
        PatchTable(
            "queued_messages",
            ("session_id", "request_id"),
            (
                "queued_seq",
                "position",
                "content",
                "status",
                "queued_at",
                "started_turn_id",
                "ended_seq",
                "ended_at",
                "reason",
            ),
        ),
        PatchTable(
            "compactions",
            ("session_id", "compaction_id"),
            (
                "strategy",
                "entry_seqs",
                "tokens_before",
                "context_window",
                "requested_seq",
                "requested_at",
                "removed_seqs",
                "tokens_after",
                "model",
                "input_tokens",
                "output_tokens",
                "cache_read_tokens",
                "cache_write_tokens",
                "cost_nanos",
                "completed_seq",
                "completed_at",
            ),
        ),
        # Orchestrations (agents.orchestration; migration 0016).
        PatchTable(
            "orchestrations",
            ("session_id", "call_id"),
            (
                "turn_id",
                "mode",
                "quorum",
                "combine",
                "members",
                "member_timeout_ms",
                "status",
                "started_seq",
                "started_at",
                "winner_call_id",
                "completed_members",
                "failed_members",
                "cancelled_members",
                "result",
                "completed_seq",
                "completed_at",
            ),
        ),
        PatchTable(
            "orchestration_members",
            ("session_id", "member_call_id"),
            (
                "call_id",
                "position",
                "agent",
                "task",
                "child_session_id",
                "status",
                "started_seq",
                "started_at",
                "stopped",
                "stop_seq",
                "stop_reason",
                "winner",
                "answer",
                "input_tokens",
                "output_tokens",
                "cache_read_tokens",
                "cache_write_tokens",
                "cost_nanos",
                "completed_seq",
                "completed_at",
            ),
        ),
        # Guardrail trips and structured answers (migration 0017).
        PatchTable(
            "guardrail_trips",
            ("session_id", "event_id"),
            (
                "seq",
                "turn_id",
                "agent",
                "rule",
                "kind",
                "action",
                "stage",
                "detail",
                "call_id",
                "tripped_at",
            ),
        ),
        PatchTable(
            "structured_outputs",
            ("session_id", "call_id"),
            ("turn_id", "agent", "valid", "attempt", "result", "error", "seq", "recorded_at"),
        ),
        # Budget alerts, once per threshold per scope (migration 0019).
        PatchTable(
            "budget_alerts",
            ("scope", "scope_key", "period", "unit", "threshold"),
            (
                "fraction",
                "spent",
                "budget_limit",
                "session_id",
                "event_id",
                "seq",
                "agent",
                "alerted_at",
            ),
        ),
        PatchTable(
            "budget_limits",
            ("session_id", "scope", "scope_key", "period"),
            ("unit", "budget_limit", "spent", "until", "seq", "agent", "reached_at"),
        ),
    )
}

# table -> column -> (kept, over): PatchTable.sticky, for the hot path of Changes.patch.
_STICKY: dict[str, dict[str, tuple[str, str]]] = {
    name: {c: (k, o) for c, k, o in t.sticky} for name, t in PATCH_TABLES.items()
}

# Rows of `events` and `entries`, column order of their INSERTs.
EVENT_COLUMNS = (
    "session_id",
    "seq",
    "event_id",
    "event_type",
    "turn_id",
    "occurred_at",
    "causation_id",
    "correlation_id",
    "kafka_partition",
    "kafka_offset",
    "digest",
)
ENTRY_COLUMNS = (
    "session_id",
    "seq",
    "kind",
    "role",
    "call_id",
    "tool_name",
    "content",
    "is_error",
    "parent_session_id",
    "parent_seq",
    "turn_id",
    "occurred_at",
)


@dataclass(slots=True)
class Changes:
    """Everything one batch writes besides the sessions rows, in write-ready form."""

    events: list[tuple[Any, ...]] = field(default_factory=list)
    entries: list[tuple[Any, ...]] = field(default_factory=list)
    links: dict[str, tuple[str, str, str | None]] = field(default_factory=dict)
    patches: dict[str, dict[tuple[str | int, ...], dict[str, Any]]] = field(
        default_factory=lambda: {name: {} for name in PATCH_TABLES}
    )

    def patch(self, table: str, key: tuple[str | int, ...], **columns: Any) -> None:
        sticky = _STICKY[table]
        row = self.patches[table].setdefault(key, {})
        for name, value in columns.items():
            if value is None:
                continue
            rule = sticky.get(name)
            if rule is not None and row.get(name) == rule[0] and value == rule[1]:
                continue  # see PatchTable.sticky
            row[name] = value

    def increment(self, table: str, key: tuple[str, ...], column: str, by: int = 1) -> None:
        row = self.patches[table].setdefault(key, {})
        row[column] = row.get(column, 0) + by

    def append(self, table: str, key: tuple[str, ...], column: str, value: str) -> None:
        row = self.patches[table].setdefault(key, {})
        row.setdefault(column, []).append(value)

    def link(self, child: str, parent: str, call_id: str | None) -> None:
        # Same content whichever side (parent's request, child's start) is seen first.
        self.links.setdefault(child, (child, parent, call_id))

    def patch_rows(self, table: str) -> list[tuple[Any, ...]]:
        """One tuple per patched row: key, then every column (None = unchanged),
        increments (0 = unchanged) and appends ([] = unchanged), in table order."""
        spec = PATCH_TABLES[table]
        rows = []
        for key, patch in self.patches[table].items():
            rows.append(
                key
                + tuple(patch.get(c) for c in spec.columns)
                + tuple(patch.get(c, 0) for c in spec.increments)
                + tuple(patch.get(c, []) for c in spec.appends)
            )
        return rows
