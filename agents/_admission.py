"""The admission flow of a shared rate limit (agents.ratelimit: `per = "agent"` or
`"client"`), as handlers of the transition table. Nothing here does IO.

A SendMessage for such an agent (idle session, or a new one) is guarded like a queued
message — a blocked text is rejected, a redacted one is recorded redacted — and recorded
as AdmissionRequested instead of starting a turn; the session is `admitting` (no turn;
live, so a worker that takes its partition over restarts the admission effect) and
takes no other message meanwhile. The
admission effect's outcome (CompleteAdmission) is recorded as AdmissionDecided: admitted,
the turn starts with the recorded text; limited, the message ends there with the limit's
name and retry-after in the reason. A CancelTurn or CloseSession while it waits ends it
(AdmissionDecided, not admitted, no limit). An outcome for an admission that is not
pending (a duplicate, one a cancel ended) is rejected and changes nothing.
"""

from __future__ import annotations

from typing import NoReturn

from agents._decision import Decision, Rejected
from agents._turn import guard, start_turn
from agents.events import AdmissionDecided, AdmissionRequested, CancelTurn, CompleteAdmission
from agents.guardrails import check
from agents.ratelimit import RateLimit, admission_key

__all__ = [
    "cancel_admission",
    "on_admission",
    "on_cancel_admission",
    "refuse_while_busy",
    "request_admission",
    "shared_limit",
]


def shared_limit(limit: RateLimit | None) -> RateLimit | None:
    """`limit` when it is counted across sessions (an admission effect decides)."""
    return limit if limit is not None and limit.shared else None


def request_admission(d: Decision, limit: RateLimit, text: str) -> None:
    """Record the message as waiting for admission by `limit` (see the module doc)."""
    s = d.state
    if s.admission is not None:
        raise Rejected(_busy(s.session_id, s.admission.admission_id))
    info = d.agent_info()
    rules = info.definition.guardrails
    verdict = check(rules, "input", text)
    if verdict.blocked is not None:
        b = verdict.blocked
        raise Rejected(
            f"Session {s.session_id}: guardrail {b.rule!r} ({b.kind}) blocked the message: "
            f"{b.detail}."
        )
    text = guard(d, rules, "input", text).text
    p = d.request.payload
    attachments = getattr(p, "attachments", ())
    d.emit(
        AdmissionRequested(
            admission_id=d.request.request_id,
            key=admission_key(limit, s.agent, d.request.client),
            text=text,
            window_ms=max(1, round(limit.window_s * 1000)),
            requests_per_minute=limit.requests_per_minute,
            tokens_per_minute=limit.tokens_per_minute,
            on_limit=limit.on_limit,
            max_wait_ms=round(limit.max_wait_s * 1000) if limit.on_limit == "queue" else 0,
            attachments=attachments,
            client=d.request.client,
        )
    )


def _busy(session_id: str, admission_id: str) -> str:
    return (
        f"Session {session_id}: message {admission_id} is waiting for admission by the "
        "agent's shared rate limit; an agent with a shared limit takes one message at a "
        "time (send this one when that turn ends, or cancel it)."
    )


def refuse_while_busy(d: Decision) -> NoReturn:
    """A message to a session of a shared-limit agent while a turn runs: it would start
    its turn unadmitted from the queue, so it is rejected instead."""
    s = d.state
    raise Rejected(
        f"Session {s.session_id} has a turn in progress ({s.phase.value}); an agent with "
        "a shared rate limit (per agent or client) does not queue messages: send it when "
        "the turn ends."
    )


def on_admission(d: Decision, p: CompleteAdmission) -> None:
    s = d.state
    adm = s.admission
    if adm is None or adm.admission_id != p.admission_id:
        raise Rejected(
            f"Session {s.session_id}: admission {p.admission_id} is not pending (unknown, "
            "already decided, or ended by a cancel); this outcome is ignored."
        )
    d.emit(
        AdmissionDecided(
            admission_id=p.admission_id,
            admitted=p.admitted,
            limit=p.limit,
            reason=p.reason,
            retry_after_ms=p.retry_after_ms,
            waited_ms=p.waited_ms,
        )
    )
    if p.admitted:
        start_turn(d, adm.text, attachments=adm.attachments, guarded=True)


def cancel_admission(d: Decision, reason: str) -> None:
    """End a pending admission (a cancel, a close): the message does not start."""
    adm = d.state.admission
    if adm is not None:
        d.emit(AdmissionDecided(admission_id=adm.admission_id, admitted=False, reason=reason))


def on_cancel_admission(d: Decision, p: CancelTurn) -> None:
    """CancelTurn on an idle session: only a message waiting for admission can go."""
    s = d.state
    if s.admission is None:
        raise Rejected(f"Session {s.session_id} has no turn in progress; nothing to cancel.")
    cancel_admission(d, p.reason or "The message was cancelled while it waited for admission.")
