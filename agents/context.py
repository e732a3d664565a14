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

import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, Protocol

from agents.errors import ContractError
from agents.events import LlmCallRequested
from agents.guardrails import classifier_rule
from agents.llm import (
    ContentBlock,
    LlmRequest,
    MediaBlock,
    Message,
    TextBlock,
    ThinkingContent,
    ToolResultBlock,
    ToolUseBlock,
    canonical_messages,
    sha256_hex,
)
from agents.pricing import find_model
from agents.registry import AgentInfo, AgentRegistry, toolset_hash
from agents.state import (
    Entry,
    EntryKind,
    History,
    PendingLlm,
    SessionState,
    expand_context,
    find_entry,
)
from agents.variants import with_variant

__all__ = [
    "EMPTY_TOOLSET_HASH",
    "OMITTED_PREAMBLE",
    "SUMMARIZE_SYSTEM",
    "SUMMARIZE_SYSTEM_HASH",
    "SUMMARY_PREFIX",
    "UNANSWERED_RESULT",
    "ContextMemo",
    "HasRequested",
    "LlmCallLike",
    "build_llm_request",
    "build_messages",
    "build_summary_request",
    "entries_for",
    "guard_request",
    "summarize_request",
    "thinking_budget_for",
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


def _add(
    roles: list[str], contents: list[list[ContentBlock]], role: str, blocks: list[ContentBlock]
) -> None:
    """Append a message, merging it into the previous one of the same role. `blocks` is
    a fresh list that nobody else holds."""
    if not blocks:
        return
    if roles and roles[-1] == role:
        contents[-1].extend(blocks)
    else:
        roles.append(role)
        contents.append(blocks)


def _close_step(
    roles: list[str],
    contents: list[list[ContentBlock]],
    step: list[ContentBlock],
    uses: list[str],
    results: dict[str, ToolResultBlock],
) -> None:
    """The open assistant message, then one user message answering its tool uses."""
    _add(roles, contents, "assistant", step)
    if not uses:
        return
    answered: list[ContentBlock] = [
        results.get(cid) or ToolResultBlock(cid, UNANSWERED_RESULT, True) for cid in uses
    ]
    if len(answered) > 1:
        # Results keep their arrival order; synthetic ones go last.
        order = {cid: i for i, cid in enumerate(results)}
        last = len(order)
        answered.sort(key=lambda b: order.get(b.call_id, last))  # type: ignore[union-attr]
    _add(roles, contents, "user", answered)


_ASSISTANT, _TOOL_USE, _TOOL_RESULT, _SUMMARY = (
    EntryKind.ASSISTANT,
    EntryKind.TOOL_USE,
    EntryKind.TOOL_RESULT,
    EntryKind.SUMMARY,
)


class _Built(NamedTuple):
    """build_messages' memo for one window: the entries read so far (up to a point with
    no open assistant message), the messages no later entry can change, and the last
    message's role and blocks, which a later entry of the same role extends."""

    entries: tuple[Entry, ...]
    final: tuple[Message, ...]
    role: str
    blocks: tuple[ContentBlock, ...]
    chars: int  # the entries' text: what the memo's messages (and their JSON) hold


BUILT_WINDOWS = 4096
BUILT_CHARS = 128 * 1024 * 1024


class ContextMemo:
    """What `build_messages` built before, owned by the shell and passed in (the core
    keeps no process-wide state): windows by the id of their first entry (the memo holds
    that entry, so the id stays its own). A session's next call sends the same window
    plus what happened since: its messages are built from the new entries only. Bounded
    in windows and in text; the least recently used window goes first, and a window not
    in the memo is built whole. Without a memo every window is built whole — the same
    messages (a property test checks)."""

    __slots__ = ("_built", "_digests", "chars", "max_chars", "max_windows")

    def __init__(self, max_windows: int = BUILT_WINDOWS, max_chars: int = BUILT_CHARS) -> None:
        self._built: OrderedDict[int, _Built] = OrderedDict()
        # Per window: (canonical head, the final messages hashed, a sha256 that has taken
        # the head and those messages) — a request's digest then hashes only the rest.
        self._digests: dict[int, tuple[str, tuple[Message, ...], Any]] = {}
        self.chars = 0
        self.max_windows = max_windows
        self.max_chars = max_chars

    def __len__(self) -> int:
        return len(self._built)

    def get(self, key: int) -> _Built | None:
        return self._built.get(key)

    def touch(self, key: int) -> None:
        self._built.move_to_end(key)

    def remember(self, key: int, built: _Built) -> None:
        old = self._built.pop(key, None)
        if old is not None:
            self.chars -= old.chars
        self._built[key] = built
        self.chars += built.chars
        while len(self._built) > self.max_windows or (
            self.chars > self.max_chars and len(self._built) > 1
        ):
            gone, dropped = self._built.popitem(last=False)
            self.chars -= dropped.chars
            self._digests.pop(gone, None)

    def digest(self, request: LlmRequest, key: int) -> None:
        """Digest `request`, just built for the window `key`, from the sha256 kept for
        the window's final messages (those no later entry can change), extended by the
        ones final since, so that only the rest is hashed; equal to request.digest()
        computed whole (a property test checks). Every cover is checked: a kept state
        whose head or messages differ is not used."""
        built = self._built.get(key)
        if built is None:
            return
        final, messages = built.final, request.messages
        k = len(final)
        if not k or messages[:k] != final:
            return
        head = request.canonical_head()
        kept = self._digests.get(key)
        if kept is not None and kept[0] == head and final[: len(kept[1])] == kept[1]:
            h, done = kept[2].copy(), len(kept[1])
        else:
            h, done = hashlib.sha256(head.encode()), 0
        if k > done:
            h.update(f"{',' if done else ''}{canonical_messages(final[done:])}".encode())
        self._digests[key] = (head, final, h)
        request.digest_continuing(h, k)


def build_messages(
    entries: Sequence[Entry], memo_store: ContextMemo | None = None
) -> tuple[Message, ...]:
    """Messages-API messages from window entries (rules in the module doc).

    Equal to building them from scratch (a property test checks): the memo is used only
    when the window starts with entries equal to the ones it was built from."""
    memo = memo_store.get(id(entries[0])) if memo_store is not None and entries else None
    n = len(memo.entries) if memo is not None else 0
    if memo is not None and not (n <= len(entries) and tuple(entries[:n]) == memo.entries):
        memo, n = None, 0
    roles: list[str] = []
    contents: list[list[ContentBlock]] = []
    final: tuple[Message, ...] = ()
    if memo is not None:
        final = memo.final
        roles.append(memo.role)
        contents.append(list(memo.blocks))
    step: list[ContentBlock] | None = None  # the open assistant message
    uses: list[str] = []  # its tool use ids, in order (empty while no step is open)
    results: dict[str, ToolResultBlock] = {}
    clean = n  # entries read up to the last point with no open assistant message
    for i, e in enumerate(entries[n:] if n else entries, n + 1):
        kind = e.kind
        if kind == _TOOL_USE:
            if step is None:
                step = []
            step.append(ToolUseBlock(e.call_id, e.name, _tool_input(e.text)))
            uses.append(e.call_id)
            continue
        if kind == _TOOL_RESULT:
            # A result with no open use of that id cannot be sent; compaction never
            # creates one, so this only guards hand-made histories.
            cid = e.call_id
            if cid in uses and cid not in results:
                results[cid] = ToolResultBlock(cid, e.text, e.is_error)
            continue
        if step is not None:
            _close_step(roles, contents, step, uses, results)
            step, uses, results = None, [], {}
        if kind == _ASSISTANT:
            step = [TextBlock(e.text)] if e.text else []
            if e.blocks:  # its thinking comes first, as the model gave it
                step[:0] = [ThinkingContent(b) for b in e.blocks]
            continue
        if kind == _SUMMARY:
            _add(roles, contents, "user", [TextBlock(SUMMARY_PREFIX + e.text)])
        elif e.blocks:  # a user message with attachments: those first, then its text
            media: list[ContentBlock] = [
                MediaBlock(a.media_type, a.sha256, a.data) for a in e.blocks
            ]
            _add(roles, contents, "user", [*media, TextBlock(e.text)])
        else:  # user message
            _add(roles, contents, "user", [TextBlock(e.text)])
        clean = i
        if len(roles) > 1:
            # Every message before the last one is final now: finish those once.
            final += _finish(roles[:-1], contents[:-1], first=not final)
            del roles[:-1], contents[:-1]
    if memo_store is not None and entries and clean > n and roles:
        # roles[0] and contents[0] are still the last message as it was at `clean`:
        # after a user entry only an assistant message (a new one) can follow.
        added = sum(len(e.text) for e in entries[n:clean])
        memo_store.remember(
            id(entries[0]),
            _Built(
                tuple(entries[:clean]),
                final,
                roles[0],
                tuple(contents[0]),
                (memo.chars if memo is not None else 0) + added,
            ),
        )
    elif memo_store is not None and memo is not None:
        memo_store.touch(id(entries[0]))
    if step is not None:
        _close_step(roles, contents, step, uses, results)
    return final + _finish(roles, contents, first=not final)


def _user_order(role: str, blocks: list[ContentBlock]) -> list[ContentBlock]:
    if role == "user" and len(blocks) > 1:
        # the API wants tool results before any text in a message
        return [b for b in blocks if isinstance(b, ToolResultBlock)] + [
            b for b in blocks if not isinstance(b, ToolResultBlock)
        ]
    return blocks


def _finish(
    roles: list[str], contents: list[list[ContentBlock]], *, first: bool
) -> tuple[Message, ...]:
    """Messages from (role, blocks) pairs; `first`: they begin the window, which must
    begin with a user message."""
    messages = []
    if first and (not roles or roles[0] != "user"):
        messages.append(Message("user", (TextBlock(OMITTED_PREAMBLE),)))
    for role, blocks in zip(roles, contents, strict=True):
        messages.append(Message(role, tuple(_user_order(role, blocks))))  # type: ignore[arg-type]
    return tuple(messages)


def turn_request(
    info: AgentInfo,
    entries: Sequence[Entry],
    *,
    model: str,
    max_tokens: int,
    temperature: float,
    memo: ContextMemo | None = None,
) -> LlmRequest:
    """The request of a turn call: the system prompt and tools of the agent version
    `info` (the session's pinned one), then the entries as messages. Extended thinking
    is asked for when the agent has a thinking budget and `model` thinks (catalog)."""
    request = LlmRequest(
        model=model,
        system=info.definition.system_prompt,
        messages=build_messages(entries, memo),
        tools=info.tools,
        max_tokens=max_tokens,
        temperature=temperature,
        cache_prefix=True,
        thinking_budget=thinking_budget_for(info, model, max_tokens),
    )
    if memo is not None and entries:
        memo.digest(request, id(entries[0]))
    return request


def thinking_budget_for(info: AgentInfo, model: str, max_tokens: int) -> int:
    """The agent's thinking budget for a call to `model` with `max_tokens`: 0 when the
    agent sets none, the model does not think, or the budget would not leave room for
    an answer (the API wants budget < max_tokens)."""
    budget = getattr(info.definition, "thinking_budget", 0)
    if not budget or budget >= max_tokens:
        return 0
    found = find_model(model)
    return budget if found is not None and found.thinking else 0


def _render(e: Entry) -> str:
    if e.kind == EntryKind.USER:
        # A summary is text: the attachments are named, so the model knows they were there.
        files = "".join(
            f"\n[attached {a.name or a.sha256[:12]} ({a.media_type})]" for a in e.blocks
        )
        return f"[user]\n{e.text}{files}"
    if e.kind == EntryKind.ASSISTANT:
        return f"[assistant]\n{e.text}"
    if e.kind == EntryKind.TOOL_USE:
        return f"[tool call {e.name} id={e.call_id}]\n{e.text}"
    if e.kind == EntryKind.TOOL_RESULT:
        flag = " error" if e.is_error else ""
        return f"[tool result{flag} id={e.call_id}]\n{e.text}"
    return f"[summary of what came before]\n{e.text}"


def summarize_request(entries: Sequence[Entry], *, model: str, max_tokens: int) -> LlmRequest:
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


def guard_request(
    prompt: str, entries: Sequence[Entry], *, model: str, max_tokens: int
) -> LlmRequest:
    """The request of a classifier guardrail's call: its prompt as the system prompt, the
    recorded text it judges (the user's message or the model's answer) as the message."""
    text = "\n\n".join(e.text for e in entries)
    return LlmRequest(
        model=model,
        system=prompt,
        messages=(Message("user", (TextBlock(text),)),),
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
    state: SessionState,
    call: LlmCallLike,
    registry: AgentRegistry,
    memo: ContextMemo | None = None,
) -> LlmRequest:
    """The exact request of `call` (an LlmCallRequested, the state's PendingLlm, or an
    effect from agents.effects), turn or summarize, rebuilt from `state`."""
    req = _requested(call)
    where = f"session {state.session_id} call {req.call_id}"
    seqs = expand_context(state.history, req.context_ranges)
    entries = entries_for(state.history, seqs, where=where)
    if req.purpose == "summarize":
        return summarize_request(entries, model=req.model, max_tokens=req.max_tokens)
    if req.purpose == "guard":
        pinned = registry.pinned(state.agent, state.definition_hash) or registry.info(state.agent)
        found = classifier_rule(pinned.definition.guardrails, req.call_id)
        # No such rule: an empty prompt, and the digest check says the request differs.
        prompt = found[1].prompt or "" if found is not None else ""
        return guard_request(prompt, entries, model=req.model, max_tokens=req.max_tokens)
    # The version the session is pinned to; a registry that cannot serve it rebuilds with
    # the served one, and the digest check then says the request differs.
    info = registry.pinned(state.agent, state.definition_hash) or registry.info(state.agent)
    info = with_variant(info, state.variant)  # the session's A/B variant (agents.variants)
    return turn_request(
        info,
        entries,
        model=req.model,
        max_tokens=req.max_tokens,
        temperature=req.temperature,
        memo=memo,
    )


def build_summary_request(
    state: SessionState,
    call: LlmCallLike,
    registry: AgentRegistry,
    memo: ContextMemo | None = None,
) -> LlmRequest:
    """Same as build_llm_request (a summarize call is an LLM call with that purpose)."""
    return build_llm_request(state, call, registry, memo)


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
