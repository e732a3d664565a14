"""The shell's single doorway into the pure core and the IO adapters.

Rule: streams/ calls the core only through the names here, so the seam between the
imperative shell and the functional core is one screen long.
"""

from __future__ import annotations

from typing import Any

from agents.context import build_llm_request, build_summary_request
from agents.effects import (
    cancel_requests,
    child_report,
    failure_outcome,
    next_deadline,
    outcome_request_id,
    pending_effects,
)
from agents.fsm import (
    decide,
    decide_and_evolve,
    decide_built,
    evolve,
    fork_base,
    fork_source,
    initial_state,
)
from agents.providers.base import BILLED, STREAM_RESTART, BilledSoFar, ProviderError
from agents.snapshots import (
    RESTORE_POINT_KEY,
    SNAPSHOT_EVERY,
    is_live,
    restore_point,
    snapshot_of,
    state_of,
)
from agents.state_codec import READABLE_FORMATS, STATE_FORMAT

__all__ = [
    "BILLED",
    "READABLE_FORMATS",
    "RESTORE_POINT_KEY",
    "SNAPSHOT_EVERY",
    "STATE_FORMAT",
    "STREAM_RESTART",
    "BilledSoFar",
    "build_llm_request",
    "build_summary_request",
    "cancel_requests",
    "child_report",
    "decide",
    "decide_and_evolve",
    "decide_built",
    "evolve",
    "failure_outcome",
    "fork_base",
    "fork_source",
    "initial_state",
    "is_live",
    "is_provider_error",
    "next_deadline",
    "outcome_request_id",
    "pending_effects",
    "restore_point",
    "snapshot_of",
    "state_of",
    "tool_context",
]


def is_provider_error(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError)


def tool_context(settings: Any, session_id: str, effect: Any) -> Any:
    from agents.tools import ToolContext, ToolSettings

    return ToolContext(
        session_id=session_id,
        call_id=effect.effect_id,
        settings=settings if settings is not None else ToolSettings(),
        # The effect id names the intention: every attempt (a re-issue after a crash or a
        # partition move) carries the same key, so the other side can act once.
        idempotency_key=effect.effect_id,
    )
