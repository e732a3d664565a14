"""The headers a real session worker's records carry are exactly those streams._headers
documents: the trace context on each input's first event only, `turnlog.input.next` on
a transaction's last event, a traceparent on every request; no `event_type`. Its events
are compact (schemas.codec: without the derivable event_id). The calculator is an
inline tool (agents.tools.Tool.inline): its call, its result and the next LLM call are one
transaction — the next LLM call's answer too, once the first call has timed the scripted
model (TURNLOG_INLINE_LLM_MS) —, their outcomes never go through the requests topic, and
`replay --verify` re-decides them from the events they caused."""

from __future__ import annotations

from pathlib import Path

from agents.agentfile import registry_from_file
from agents.events import LlmCallCompleted, ToolCallCompleted, ToolCallRequested
from schemas import codec
from schemas.codec import decode_event, decode_request
from streams._headers import EVENT_HEADERS, REQUEST_HEADERS
from streams.logread import INPUT_NEXT_HEADER
from streams.topics import TopicNames
from streams.tracing import TRACEPARENT, new_traceparent
from tests.support.harness import (
    DATA,
    EventLog,
    InProcessWorker,
    RequestSender,
    read_records,
    trace_id,
    user_message,
)
from turnlog.replay_verify import verify_session


async def test_a_workers_records_carry_exactly_the_documented_headers(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    traceparent = new_traceparent()
    async with (
        # (a budget no scheduling delay overruns: the second LLM call runs inline)
        InProcessWorker(kafka_bootstrap, names, sandbox=tmp_path, inline_llm_ms=1000),
        RequestSender(kafka_bootstrap, names) as send,
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        await send.request(
            user_message("hdr", "what is 6*7?", agent="calc"), traceparent=traceparent
        )
        await log.wait_for(lambda: log.turns_completed("hdr") == 1, 30, "the turn")
    events = await read_records(kafka_bootstrap, names.events)
    requests = await read_records(kafka_bootstrap, names.requests)

    by_input: dict[str | None, list[tuple[int, set[str]]]] = {}
    offsets: dict[int, int] = {}
    decoded = {}
    for rec in events:
        ev = decode_event(rec.value)
        decoded[ev.seq] = ev
        offsets[ev.seq] = rec.offset
        names_ = [k for k, _ in rec.headers]
        assert len(names_) == len(set(names_)), f"seq {ev.seq}: a header twice: {names_}"
        assert set(names_) <= EVENT_HEADERS, f"seq {ev.seq} carries {names_}"
        by_input.setdefault(ev.causation_id, []).append((ev.seq, set(names_)))
    # The calc turn: the user's input and three effect outcomes (the second LLM call's
    # decided inline, as the calculator's: the first call timed the scripted model).
    assert len(by_input) == 4, by_input
    call = next(e for e in decoded.values() if isinstance(e.payload, ToolCallRequested))
    done = next(e for e in decoded.values() if isinstance(e.payload, ToolCallCompleted))
    assert done.payload.result == "42"
    inline_cause = done.causation_id
    assert inline_cause == f"{call.payload.call_id}:outcome:1"
    # The inline call's outcome went out in the transaction that decided the call: its
    # events follow the call's at the next offsets (no commit marker between them).
    call_input = by_input[call.causation_id]
    inline_seqs = [seq for seq, _ in by_input[inline_cause]]
    assert inline_seqs[0] == call_input[-1][0] + 1
    assert offsets[inline_seqs[0]] == offsets[call_input[-1][0]] + 1
    # Each input's first event carries the trace context (the inline outcome's too); a
    # transaction's last says where inputs resume.
    for cause, evs in by_input.items():
        (first, first_names), *rest = evs
        assert TRACEPARENT in first_names, f"{cause}: first event seq {first} has no traceparent"
        assert all(TRACEPARENT not in n for _, n in rest), f"{cause}: {evs}"
    answer = next(
        e
        for e in decoded.values()
        if isinstance(e.payload, LlmCallCompleted) and e.payload.text == "The answer is 42."
    )
    assert answer.causation_id == f"{answer.payload.call_id}:outcome:1"
    assert by_input[answer.causation_id][0][0] == inline_seqs[-1] + 1
    mid_txn = (call.causation_id, inline_cause)
    txn_last = [evs[-1][1] for c, evs in by_input.items() if c not in mid_txn]
    assert len(txn_last) == 2 and all(INPUT_NEXT_HEADER in names_ for names_ in txn_last)
    assert INPUT_NEXT_HEADER not in call_input[-1][1]
    assert INPUT_NEXT_HEADER not in by_input[inline_cause][-1][1]
    # The first input's events are in the client's trace.
    first_input = next(iter(by_input.values()))
    rec = next(r for r in events if decode_event(r.value).seq == first_input[0][0])
    assert trace_id(dict(rec.headers)[TRACEPARENT].decode()) == trace_id(traceparent)

    # The events are compact (schemas.codec: no event_id, which readers derive).
    compact = codec.MAGIC + bytes.fromhex(codec.schema_fingerprint(codec.compact_event_schema()))
    assert {r.value[: codec.HEADER_SIZE] for r in events} == {compact}

    # The user's message and the first LLM outcome; no record of the inline outcomes.
    assert len(requests) == 2
    recorded = {decode_request(r.value).request_id for r in requests}
    assert inline_cause not in recorded and answer.causation_id not in recorded
    for rec in requests:
        req = decode_request(rec.value)
        got = {k for k, _ in rec.headers}
        assert TRACEPARENT in got and got <= REQUEST_HEADERS, f"{req.request_id}: {got}"

    # replay --verify re-decides all four inputs, the inline outcomes rebuilt from their
    # events.
    report = await verify_session(
        kafka_bootstrap, names, "hdr", registry_from_file(DATA / "agents.toml")
    )
    assert report.ok, report.as_dict()
    assert (report.decisions_checked, report.unverified_events) == (4, 0)
    assert report.events_matched == len(decoded)
