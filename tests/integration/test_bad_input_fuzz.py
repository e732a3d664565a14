"""Bad input on the live platform: 1,000 random and corrupted messages on the requests
topic, every one accounted for, while a valid session runs alongside.

What is produced (hypothesis, derandomized: the same 1,000 messages on every run):

* bytes that are not a request — random bytes (some behind a valid magic), tombstones,
  an EVENT sent to the requests topic, truncated and bit-flipped valid encodings;
* valid envelopes with invalid content — an unknown session, an unknown agent, an
  approval for an unknown call, a duplicate request id, an input illegal in the
  session's phase, an outcome for an effect that is not pending.

Each message must end in exactly one place: the DLQ (with headers naming the error, the
source topic, partition and offset), a RequestRejected on its session's log, or — for a
corrupted encoding that happens to still decode into a legal request — an accepted input
(events caused by its request id). dlq + rejected + accepted == produced. The worker task
never dies (so never restarts); the sessions the garbage was aimed at are unchanged
afterwards (the parked approval still works, the idle session takes a new turn); and a
valid session running alongside completes.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from agents.errors import DecodeError
from agents.events import (
    ApprovalGranted,
    ApprovalRequested,
    CancelTurn,
    ChildStatus,
    CloseSession,
    CompleteChildSession,
    CompleteCompaction,
    CompleteLlmCall,
    CompleteToolCall,
    DecideApproval,
    Event,
    FailLlmCall,
    FailToolCall,
    ForkSession,
    LlmCallCompleted,
    Request,
    RequestPayload,
    RequestRejected,
    SendMessage,
    SessionStarted,
    Tick,
    ToolCallCompleted,
    ToolUse,
    TurnCompleted,
    TurnStarted,
    Usage,
    event_id_for,
)
from schemas.codec import decode_request, encode_event, encode_request
from streams.partitioning import partition_for
from streams.topics import TopicNames
from tests.support.harness import seq_problems
from tests.support.live import (
    PARTITIONS,
    Live,
    live_platform,
    load_agents,
    load_script,
    new_session_id,
    payloads,
)

N_MESSAGES = 1000
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
KNOWN_AGENTS = load_agents().names()

CORRUPT = ("random_bytes", "tombstone", "wrong_envelope", "truncated", "bit_flipped")
INVALID = (
    "unknown_session",
    "unknown_agent",
    "unknown_call",
    "duplicate_request",
    "illegal_in_phase",
    "unknown_effect",
)


@dataclass(frozen=True)
class Spec:
    """What hypothesis draws for one message; `materialize` turns it into bytes."""

    kind: str
    blob: bytes
    fraction: float
    bits: tuple[int, ...]
    variant: int
    text: str
    magic: bool
    header: bytes | None


specs = st.builds(
    Spec,
    kind=st.sampled_from(CORRUPT + INVALID),
    blob=st.binary(max_size=200),
    fraction=st.floats(0.0, 1.0, allow_nan=False),
    bits=st.lists(st.integers(0, 1 << 20), min_size=1, max_size=4).map(tuple),
    variant=st.integers(0, 1 << 16),
    text=st.text(max_size=30),
    magic=st.booleans(),
    header=st.none() | st.binary(max_size=40),
)


def draw_specs(n: int) -> list[Spec]:
    """`n` specs from hypothesis, derandomized (the same list on every run)."""
    drawn: list[Spec] = []

    @settings(
        max_examples=n,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(specs)
    def collect(spec: Spec) -> None:
        drawn.append(spec)

    collect()
    return drawn


@dataclass
class Targets:
    """Sessions set up before the flood, so invalid content has something to hit."""

    parked: str  # awaiting approval of `parked_call`
    parked_call: str
    idle: str  # one completed turn
    idle_handled: tuple[str, ...]  # request ids the idle session already handled


@dataclass
class Message:
    index: int
    kind: str
    value: bytes | None
    key: bytes | None
    partition: int
    headers: list[tuple[str, bytes]]
    request: Request | None  # what the bytes decode to (None: they do not)
    reason_has: tuple[str, ...] = ()  # for INVALID kinds: the rejection must say these
    offset: int = -1


def _req(
    i: int,
    session: str,
    payload: RequestPayload,
    agent: str | None = None,
    request_id: str | None = None,
) -> Request:
    return Request(
        request_id=request_id or f"fz-{i}",
        session_id=session,
        occurred_at=T0,
        payload=payload,
        agent=agent,
    )


def _base_request(i: int, spec: Spec) -> Request:
    """A valid request for an otherwise unused session, to be corrupted."""
    session = f"fuzz-{i}-base"
    choice = spec.variant % 4
    if choice == 0:
        return _req(i, session, SendMessage(text=spec.text or "hello"), agent="echo")
    if choice == 1:
        return _req(i, session, DecideApproval(call_id=f"c{i}", approved=True, decided_by="z"))
    if choice == 2:
        return _req(
            i,
            session,
            CompleteLlmCall(
                call_id=f"{session}/llm/4",
                model="scripted-small",
                text=spec.text,
                tool_uses=(ToolUse(f"t{i}", "calculator", '{"expression": "1+1"}'),),
                usage=Usage(10, 20, 3, 4),
                latency_ms=5,
            ),
        )
    return _req(i, session, FailToolCall(call_id=f"t{i}", error=spec.text or "boom"))


def _flip(data: bytes, bits: tuple[int, ...]) -> bytes:
    out = bytearray(data)
    for b in bits:
        pos = b % (len(out) * 8)
        out[pos // 8] ^= 1 << (pos % 8)
    return bytes(out)


def _invalid(i: int, spec: Spec, t: Targets) -> tuple[Request, tuple[str, ...]]:
    """A decodable request with invalid content, and what its rejection must say."""
    v = spec.variant
    if spec.kind == "unknown_session":
        sid = f"fuzz-{i}-nobody"
        options: list[tuple[RequestPayload, tuple[str, ...]]] = [
            (
                DecideApproval(call_id="c1", approved=True, decided_by="mallory"),
                ("does not exist",),
            ),
            (CancelTurn(reason=spec.text), ("does not exist",)),
            (CompleteToolCall(call_id="t1", result=spec.text), ("does not exist",)),
            (CloseSession(), ("does not exist",)),
            (Tick(), ("does not exist",)),
            (ForkSession(source_session_id=f"fuzz-{i}-ghost", at_seq=1 + v % 9), ("fork",)),
        ]
        payload, says = options[v % len(options)]
        return _req(i, sid, payload), (sid, *says)
    if spec.kind == "unknown_agent":
        sid = f"fuzz-{i}-agentless"
        agent = None if v % 5 == 0 else f"nobody-{v % 97}"
        says = ("known agents", *KNOWN_AGENTS) + (() if agent is None else (agent,))
        return _req(i, sid, SendMessage(text=spec.text or "hi"), agent=agent), says
    if spec.kind == "unknown_call":
        call = f"no-such-call-{i}"
        payload = DecideApproval(call_id=call, approved=v % 2 == 0, decided_by="mallory")
        return _req(i, t.parked, payload), (t.parked, call, "not pending")
    if spec.kind == "duplicate_request":
        rid = t.idle_handled[v % len(t.idle_handled)]
        payload = (
            SendMessage(text="again")
            if v % 2
            else CompleteLlmCall(call_id=f"{t.idle}/llm/4", model="scripted-small", text="again")
        )
        return _req(i, t.idle, payload, request_id=rid), (t.idle, rid, "duplicate request id")
    if spec.kind == "illegal_in_phase":
        phase_options: list[tuple[str, RequestPayload, str | None, tuple[str, ...]]] = [
            # (A plain message during a turn is queued, not rejected; one for another
            # agent is still refused.)
            (t.parked, SendMessage(text="interrupt"), "echo", ("belongs to agent",)),
            (t.idle, ForkSession(source_session_id=t.parked, at_seq=2), None, ("already exists",)),
            (
                t.idle,
                CompleteCompaction(compaction_id="k", summary="s", model="scripted-small"),
                None,
                ("is idle", "not accepted"),
            ),
            (
                t.idle,
                DecideApproval(call_id="c", approved=True, decided_by="m"),
                None,
                ("is idle", "not accepted"),
            ),
            (
                t.idle,
                SendMessage(text="x", parent_session_id="p", parent_call_id="c"),
                None,
                ("new session",),
            ),
            (t.idle, SendMessage(text="hello"), "approver", ("belongs to agent",)),
            (t.idle, SendMessage(text="   "), None, ("empty",)),
            (
                t.parked,
                CompleteCompaction(compaction_id="k", summary="s", model="scripted-small"),
                None,
                ("awaiting_approval", "not accepted"),
            ),
        ]
        sid, payload, agent, says = phase_options[v % len(phase_options)]
        return _req(i, sid, payload, agent=agent), (sid, *says)
    assert spec.kind == "unknown_effect"
    ghost = f"ghost-{i}"
    effect_options: list[tuple[RequestPayload, tuple[str, ...]]] = [
        (CompleteToolCall(call_id=ghost, result="late"), (ghost, "not pending")),
        (FailToolCall(call_id=ghost, error="late"), (ghost, "not pending")),
        (
            CompleteChildSession(
                call_id=ghost, child_session_id=f"{ghost}/c", status=ChildStatus.COMPLETED
            ),
            (ghost, "not pending"),
        ),
        (CompleteLlmCall(call_id=ghost, model="scripted-small", text="late"), ("ignored",)),
        (FailLlmCall(call_id=ghost, error_type="x", message="late"), ("ignored",)),
    ]
    payload, says = effect_options[v % len(effect_options)]
    return _req(i, t.parked, payload), (t.parked, *says)


def materialize(i: int, spec: Spec, t: Targets, names: TopicNames) -> Message:
    headers: list[tuple[str, bytes]] = []
    if spec.header is not None:
        # A traceparent that is garbage must not matter either.
        headers.append(("traceparent", spec.header))
    partition = spec.variant % PARTITIONS
    key = spec.blob[:16] or None
    says: tuple[str, ...] = ()
    value: bytes | None
    if spec.kind == "random_bytes":
        value = (b"\xc3\x01" + spec.blob) if spec.magic else spec.blob
    elif spec.kind == "tombstone":
        value = None
        key = key or b"tombstone"  # Kafka needs a key or a value
    elif spec.kind == "wrong_envelope":
        # A perfectly valid EVENT, produced to the requests topic by mistake.
        sid = f"fuzz-{i}-event"
        value = encode_event(
            Event(
                event_id_for(sid, 1),
                sid,
                1,
                T0,
                "echo",
                SessionStarted(agent="echo", definition_hash="h"),
            )
        )
    elif spec.kind in ("truncated", "bit_flipped"):
        base = _base_request(i, spec)
        encoded = encode_request(base)
        partition = partition_for(base.session_id, PARTITIONS)
        key = base.session_id.encode()
        if spec.kind == "truncated":
            value = encoded[: int(spec.fraction * (len(encoded) - 1))]
        else:
            value = _flip(encoded, spec.bits)
    else:
        request, says = _invalid(i, spec, t)
        value = encode_request(request)
        partition = partition_for(request.session_id, PARTITIONS)
        key = request.session_id.encode()
    try:
        decoded: Request | None = decode_request(value)  # type: ignore[arg-type]
    except DecodeError:
        decoded = None
    if spec.kind in INVALID:
        assert decoded is not None
    return Message(i, spec.kind, value, key, partition, headers, decoded, says)


# --------------------------------------------------------------------------- the test


async def _set_up_targets(live: Live) -> Targets:
    parked = new_session_id("fuzz-parked")
    await live.client.send(parked, SendMessage("approval-pair please"), agent="approver")
    asked = await live.log.wait_for_type(parked, ApprovalRequested)
    await live.log.wait_for_type(parked, ToolCallCompleted)  # only the approval is left
    idle = new_session_id("fuzz-idle")
    start = await live.client.send(idle, SendMessage("hello there"), agent="echo")
    await live.log.wait_for_type(idle, TurnCompleted)
    llm_done = live.log.of_type(idle, LlmCallCompleted)[0]
    return Targets(parked, asked.call_id, idle, (start.request_id, f"{llm_done.call_id}:outcome:1"))


def _outcomes(
    live: Live,
) -> tuple[Counter[tuple[str, str]], dict[tuple[str, str], list[str]], set[tuple[str, str]]]:
    """(rejection counts, rejection reasons, accepted) keyed by (session, request id)."""
    rejected: Counter[tuple[str, str]] = Counter()
    reasons: dict[tuple[str, str], list[str]] = {}
    accepted: set[tuple[str, str]] = set()
    for sid, events in list(live.log.by_session.items()):
        for e in events:
            if isinstance(e.payload, RequestRejected):
                k = (sid, e.payload.request_id)
                rejected[k] += 1
                reasons.setdefault(k, []).append(e.payload.reason)
            elif e.causation_id is not None:
                accepted.add((sid, e.causation_id))
    return rejected, reasons, accepted


async def test_a_thousand_random_and_corrupted_requests_all_accounted_for_worker_survives(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    drawn = draw_specs(N_MESSAGES)
    assert len(drawn) == N_MESSAGES
    async with live_platform(
        kafka_bootstrap,
        names,
        registry=load_agents(),
        provider=load_script("script.yaml"),
        sandbox=tmp_path,
    ) as live:
        targets = await _set_up_targets(live)
        messages = [materialize(i, s, targets, names) for i, s in enumerate(drawn)]
        kinds = Counter(m.kind for m in messages)
        assert set(kinds) == set(CORRUPT + INVALID), kinds

        # A valid session starts right before the flood and runs through it.
        valid = new_session_id("fuzz-valid")
        await live.client.send(valid, SendMessage("please add these"), agent="echo")
        producer = live.client._producer
        futures = [
            await producer.send(
                names.requests, value=m.value, key=m.key, partition=m.partition, headers=m.headers
            )
            for m in messages
        ]
        for m, meta in zip(messages, await asyncio.gather(*futures), strict=True):
            assert meta.partition == m.partition
            m.offset = meta.offset
        by_offset = {(m.partition, m.offset): m for m in messages}

        expect_dlq = {(m.partition, m.offset) for m in messages if m.request is None}
        expect_log = Counter(
            (m.request.session_id, m.request.request_id) for m in messages if m.request is not None
        )
        # The requests the duplicates copy were handled (accepted) before the flood.
        handled_before = {(targets.idle, rid) for rid in targets.idle_handled}
        for k in handled_before & set(expect_log):
            expect_log[k] += 1

        def dlq_seen() -> set[tuple[int, int]]:
            return {
                (
                    int(r.headers["turnlog.source.partition"]),
                    int(r.headers["turnlog.source.offset"]),
                )
                for r in live.dlq.records
                if r.headers.get("turnlog.source.topic") == names.requests
            }

        def all_accounted() -> bool:
            rejected, _, accepted = _outcomes(live)
            return expect_dlq <= dlq_seen() and all(
                rejected[k] + (k in accepted) >= n for k, n in expect_log.items()
            )

        try:
            await live.log.wait_until(all_accounted, "every fuzz message accounted for", 120)
        finally:
            live.worker.assert_alive()
        # The DLQ reader may lag the log reader by a poll: wait for it too.
        await live.dlq.wait_until(lambda: expect_dlq <= dlq_seen(), "the DLQ records", 30)

        # --- the DLQ: exactly the undecodable messages, each with the error headers ----
        ours = [
            r for r in live.dlq.records if r.headers.get("turnlog.source.topic") == names.requests
        ]
        assert len(ours) == len(live.dlq.records) == len(expect_dlq)
        for r in ours:
            m = by_offset[
                (
                    int(r.headers["turnlog.source.partition"]),
                    int(r.headers["turnlog.source.offset"]),
                )
            ]
            assert m.request is None, f"message {m.index} ({m.kind}) decodes but was dead-lettered"
            assert r.headers["turnlog.error.type"] == "DecodeError"
            assert r.headers["turnlog.error.message"].strip()
            assert r.value == m.value and r.key == m.key
        assert live.worker.stats["dlq"] == len(expect_dlq)

        # --- the log: every decodable message rejected (with the right reason) or accepted
        rejected, reasons, accepted = _outcomes(live)
        n_rejected = n_accepted = 0
        for m in messages:
            if m.request is None:
                continue
            k = (m.request.session_id, m.request.request_id)
            if m.kind in INVALID:
                assert k not in accepted or k in handled_before, (
                    f"invalid message {m.index} ({m.kind}) was accepted"
                )
                assert any(all(s in r for s in m.reason_has) for r in reasons.get(k, ())), (
                    f"message {m.index} ({m.kind}): no rejection saying {m.reason_has}; "
                    f"got {reasons.get(k)}"
                )
            elif k in accepted:
                # Only a corruption that still decodes into a legal request may pass.
                assert m.kind in ("bit_flipped", "random_bytes"), (m.index, m.kind)
        for k, n in expect_log.items():
            # A request id's first delivery may be accepted; every other is rejected.
            assert rejected[k] + (k in accepted) == n, (k, n, rejected[k], k in accepted)
            n_rejected += rejected[k]
            n_accepted += int(k in accepted)
        n_accepted -= len(handled_before & set(expect_log))
        assert len(expect_dlq) + n_rejected + n_accepted == N_MESSAGES
        print(
            f"\nfuzz: {N_MESSAGES} produced = {len(expect_dlq)} dead-lettered + {n_rejected} "
            f"rejected + {n_accepted} accepted; kinds {dict(sorted(kinds.items()))}; "
            f"worker {live.worker.stats}"
        )

        # Garbage never breaks the log: every session's seqs are still 1..n, once each.
        assert seq_problems(e for evs in live.log.by_session.values() for e in evs) == []

        # --- the valid session completed alongside, and takes another turn ------------
        await live.log.wait_for_type(valid, TurnCompleted)
        await live.client.send(valid, SendMessage("and once more, add"))
        await live.log.wait_for(
            valid, lambda evs: len(payloads(evs, TurnCompleted)) == 2, "the second valid turn"
        )
        assert "42" in live.log.of_type(valid, LlmCallCompleted)[-1].text
        assert not live.log.of_type(valid, RequestRejected)

        # --- the targeted sessions are unchanged: the parked approval still works ------
        await live.client.send(
            targets.parked,
            DecideApproval(call_id=targets.parked_call, approved=True, decided_by="alice"),
        )
        await live.log.wait_for_type(targets.parked, TurnCompleted)
        assert [g.call_id for g in live.log.of_type(targets.parked, ApprovalGranted)] == [
            targets.parked_call
        ]
        await live.client.send(targets.idle, SendMessage("still there?"))
        await live.log.wait_for(
            targets.idle,
            lambda evs: len(payloads(evs, TurnCompleted)) == 2,
            "a second turn of the idle session",
        )
        assert [t.turn_no for t in live.log.of_type(targets.idle, TurnStarted)] == [1, 2]
        live.worker.assert_alive()
