"""Rebuilding the exact LLM request of a call from the session state.

Rule: an LLM request is a pure function of (the entries its call refers to by seq, the
agent definition, the call's parameters). `LlmCallRequested` stores only the seqs,
hashes and the request digest; the executor calls `build_llm_request` on the state as it
was right after the call was requested (or any later state of the same session — the
entries a call refers to never change) and checks the digest before sending.

How entries become Messages-API messages:

- user message / summary → a user text block (a summary is introduced as such);
- assistant text and the tool uses that follow it → one assistant message;
- tool results → one user message right after that assistant message, in the order the
  results arrived; a tool use without a result (its turn was cancelled, or the session
  was forked mid-step) gets a synthetic error result, because the API rejects a
  tool use that is not answered;
- a tool use whose arguments are not a JSON object (it was denied for that) is sent
  with `{}` as its input, since the API accepts nothing else;
- consecutive user content merges into one message (tool results first); an assistant
  message with no content is dropped; a window that starts with an assistant message
  (after compaction) gets a fixed one-line user preamble.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Protocol

from agents.errors import ContractError
from agents.events import LlmCallRequested
from agents.llm import (
    ContentBlock,
    LlmRequest,
    Message,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    sha256_hex,
)
from agents.registry import AgentRegistry, toolset_hash
from agents.state import (
    Entry,
    EntryKind,
    History,
    PendingLlm,
    SessionState,
    expand_context,
    find_entry,
)

__all__ = [
    "EMPTY_TOOLSET_HASH",
    "OMITTED_PREAMBLE",
    "SUMMARIZE_SYSTEM",
    "SUMMARIZE_SYSTEM_HASH",
    "SUMMARY_PREFIX",
    "UNANSWERED_RESULT",
    "HasRequested",
    "LlmCallLike",
    "build_llm_request",
    "build_messages",
    "build_summary_request",
    "entries_for",
    "summarize_request",
    "turn_request",
    "verify_llm_request",
]

OMITTED_PREAMBLE = "(Earlier messages of this conversation were removed to fit the context window.)"
UNANSWERED_RESULT = "This tool call did not complete: the turn ended before it had a result."
SUMMARY_PREFIX = "Summary of the earlier conversation:\n\n"
SUMMARIZE_SYSTEM = (
    "You compress conversations. Write a concise summary of the conversation you are "
    "given that keeps every fact, decision, open question, file name, number and tool "
    "result the assistant needs in order to continue. Plain prose; do not address the "
    "user; do not invent anything."
)
SUMMARIZE_INSTRUCTION = "Summarize this conversation:\n\n"
SUMMARIZE_SYSTEM_HASH = sha256_hex(SUMMARIZE_SYSTEM)
EMPTY_TOOLSET_HASH = toolset_hash(())


def entries_for(history: History, seqs: Iterable[int], *, where: str = "") -> list[Entry]:
    """The entries at `seqs`, in that order; ContractError naming the missing seq."""
    out: list[Entry] = []
    for s in seqs:
        e = find_entry(history, s)
        if e is None:
            raise ContractError(f"{where}: context refers to seq {s}, which holds no entry.")
        out.append(e)
    return out


def _tool_input(arguments_json: str) -> str:
    # The API needs a JSON object as a tool use's input. The log keeps what the model
    # sent; a call whose arguments are not an object was denied for it, and is shown to
    # the model as a call with no arguments.
    try:
        value = json.loads(arguments_json or "{}")
    except ValueError:
        return "{}"
    return arguments_json if isinstance(value, dict) else "{}"


def _result_block(e: Entry) -> ToolResultBlock:
    return ToolResultBlock(e.call_id, e.text, e.is_error)


def build_messages(entries: Sequence[Entry]) -> tuple[Message, ...]:
    """Messages-API messages from window entries (rules in the module doc)."""
    out: list[tuple[str, list[ContentBlock]]] = []

    def add(role: str, blocks: list[ContentBlock]) -> None:
        if not blocks:
            return
        if out and out[-1][0] == role:
            out[-1][1].extend(blocks)
        else:
            out.append((role, list(blocks)))

    step: list[ContentBlock] | None = None  # the open assistant message
    uses: list[str] = []  # its tool use ids, in order
    results: dict[str, ToolResultBlock] = {}

    def close_step() -> None:
        nonlocal step, uses, results
        if step is not None:
            add("assistant", step)
            answered: list[ContentBlock] = [
                results.get(cid) or ToolResultBlock(cid, UNANSWERED_RESULT, True) for cid in uses
            ]
            # Results keep their arrival order; synthetic ones go last.
            order = {cid: i for i, cid in enumerate(results)}
            answered.sort(key=lambda b: order.get(b.call_id, len(order)))  # type: ignore[union-attr]
            add("user", answered)
        step, uses, results = None, [], {}

    for e in entries:
        kind = e.kind
        if kind == EntryKind.ASSISTANT:
            close_step()
            step = [TextBlock(e.text)] if e.text else []
        elif kind == EntryKind.TOOL_USE:
            if step is None:
                step = []
            step.append(ToolUseBlock(e.call_id, e.name, _tool_input(e.text)))
            uses.append(e.call_id)
        elif kind == EntryKind.TOOL_RESULT:
            # A result with no open use of that id cannot be sent; compaction never
            # creates one, so this only guards hand-made histories.
            if e.call_id in uses and e.call_id not in results:
                results[e.call_id] = _result_block(e)
        elif kind == EntryKind.SUMMARY:
            close_step()
            add("user", [TextBlock(SUMMARY_PREFIX + e.text)])
        else:  # user message
            close_step()
            add("user", [TextBlock(e.text)])
    close_step()
    if not out or out[0][0] != "user":
        out.insert(0, ("user", [TextBlock(OMITTED_PREAMBLE)]))
    messages = []
    for role, blocks in out:
        if role == "user":  # the API wants tool results before any text in a message
            blocks = [b for b in blocks if isinstance(b, ToolResultBlock)] + [
                b for b in blocks if not isinstance(b, ToolResultBlock)
            ]
        messages.append(Message(role, tuple(blocks)))  # type: ignore[arg-type]
    return tuple(messages)


def turn_request(
    registry: AgentRegistry,
    agent: str,
    entries: Sequence[Entry],
    *,
    model: str,
    max_tokens: int,
    temperature: float,
) -> LlmRequest:
    info = registry.info(agent)
    return LlmRequest(
        model=model,
        system=info.definition.system_prompt,
        messages=build_messages(entries),
        tools=info.tools,
        max_tokens=max_tokens,
        temperature=temperature,
        cache_prefix=True,
    )


def _render(e: Entry) -> str:
    if e.kind == EntryKind.USER:
        return f"[user]\n{e.text}"
    if e.kind == EntryKind.ASSISTANT:
        return f"[assistant]\n{e.text}"
    if e.kind == EntryKind.TOOL_USE:
        return f"[tool call {e.name} id={e.call_id}]\n{e.text}"
    if e.kind == EntryKind.TOOL_RESULT:
        flag = " error" if e.is_error else ""
        return f"[tool result{flag} id={e.call_id}]\n{e.text}"
    return f"[summary of what came before]\n{e.text}"


def summarize_request(
    entries: Sequence[Entry], *, model: str, max_tokens: int
) -> LlmRequest:
    """The request of a summarize compaction: the entries as a transcript, no tools."""
    transcript = "\n\n".join(_render(e) for e in entries)
    return LlmRequest(
        model=model,
        system=SUMMARIZE_SYSTEM,
        messages=(Message("user", (TextBlock(SUMMARIZE_INSTRUCTION + transcript),)),),
        tools=(),
        max_tokens=max_tokens,
        temperature=0.0,
        cache_prefix=False,
    )


class HasRequested(Protocol):
    """Anything carrying the LlmCallRequested it executes (the effects of agents.effects)."""

    @property
    def requested(self) -> LlmCallRequested: ...


LlmCallLike = LlmCallRequested | PendingLlm | HasRequested


def _requested(call: LlmCallLike) -> LlmCallRequested:
    if isinstance(call, LlmCallRequested):
        return call
    if isinstance(call, PendingLlm):
        return call.request
    return call.requested


def build_llm_request(
    state: SessionState, call: LlmCallLike, registry: AgentRegistry
) -> LlmRequest:
    """The exact request of `call` (an LlmCallRequested, the state's PendingLlm, or an
    effect from agents.effects), turn or summarize, rebuilt from `state`."""
    req = _requested(call)
    where = f"session {state.session_id} call {req.call_id}"
    seqs = expand_context(state.history, req.context_ranges)
    entries = entries_for(state.history, seqs, where=where)
    if req.purpose == "summarize":
        return summarize_request(entries, model=req.model, max_tokens=req.max_tokens)
    return turn_request(
        registry,
        state.agent,
        entries,
        model=req.model,
        max_tokens=req.max_tokens,
        temperature=req.temperature,
    )


def build_summary_request(
    state: SessionState, call: LlmCallLike, registry: AgentRegistry
) -> LlmRequest:
    """Same as build_llm_request (a summarize call is an LLM call with that purpose)."""
    return build_llm_request(state, call, registry)


def verify_llm_request(
    state: SessionState, call: LlmCallLike, registry: AgentRegistry
) -> LlmRequest:
    """build_llm_request, then prove it is the request that was recorded: ContractError
    naming the session, the call and what differs when it is not."""
    req = _requested(call)
    built = build_llm_request(state, call, registry)
    where = f"Session {state.session_id}, LLM call {req.call_id}"
    if sha256_hex(built.system) != req.system_prompt_hash:
        raise ContractError(f"{where}: the system prompt differs from the one recorded.")
    if toolset_hash(built.tools) != req.toolset_hash:
        raise ContractError(f"{where}: the tool set differs from the one recorded.")
    digest = built.digest()
    if digest != req.request_digest:
        raise ContractError(
            f"{where}: the rebuilt request digest {digest[:12]} differs from the "
            f"recorded {req.request_digest[:12]}."
        )
    return built

