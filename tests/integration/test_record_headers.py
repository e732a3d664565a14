"""The headers a real session worker's records carry are exactly those streams._headers
documents: the trace context on each input's first event only, `turnlog.input.next` on
a transaction's last event, a traceparent on every request; no `event_type`. Its events
are compact (schemas.codec: without the derivable event_id)."""

from __future__ import annotations

from pathlib import Path

from schemas import codec
from schemas.codec import decode_event, decode_request
from streams._headers import EVENT_HEADERS, REQUEST_HEADERS
from streams.logread import INPUT_NEXT_HEADER
from streams.topics import TopicNames
from streams.tracing import TRACEPARENT, new_traceparent
from tests.support.harness import (
    EventLog,
    InProcessWorker,
    RequestSender,
    read_records,
    trace_id,
    user_message,
)


async def test_a_workers_records_carry_exactly_the_documented_headers(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    traceparent = new_traceparent()
    async with (
        InProcessWorker(kafka_bootstrap, names, sandbox=tmp_path),
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
    for rec in events:
        ev = decode_event(rec.value)
        names_ = [k for k, _ in rec.headers]
        assert len(names_) == len(set(names_)), f"seq {ev.seq}: a header twice: {names_}"
        assert set(names_) <= EVENT_HEADERS, f"seq {ev.seq} carries {names_}"
        by_input.setdefault(ev.causation_id, []).append((ev.seq, set(names_)))
    # The calc turn: the user's input and three effect outcomes, each one transaction.
    assert len(by_input) == 4, by_input
    for cause, evs in by_input.items():
        (first, first_names), *rest = evs
        assert TRACEPARENT in first_names, f"{cause}: first event seq {first} has no traceparent"
        assert all(TRACEPARENT not in n for _, n in rest), f"{cause}: {evs}"
    # Each input was its own transaction here: its last event says where inputs resume.
    assert all(INPUT_NEXT_HEADER in evs[-1][1] for evs in by_input.values())
    assert all(INPUT_NEXT_HEADER not in n for evs in by_input.values() for _, n in evs[:-1])
    # The first input's events are in the client's trace.
    first_input = next(iter(by_input.values()))
    rec = next(r for r in events if decode_event(r.value).seq == first_input[0][0])
    assert trace_id(dict(rec.headers)[TRACEPARENT].decode()) == trace_id(traceparent)

    # The events are compact (schemas.codec: no event_id, which readers derive).
    compact = codec.MAGIC + bytes.fromhex(codec.schema_fingerprint(codec.compact_event_schema()))
    assert {r.value[: codec.HEADER_SIZE] for r in events} == {compact}

    assert len(requests) == 4
    for rec in requests:
        req = decode_request(rec.value)
        got = {k for k, _ in rec.headers}
        assert TRACEPARENT in got and got <= REQUEST_HEADERS, f"{req.request_id}: {got}"
