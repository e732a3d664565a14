"""Replay benchmark: `turnlog replay` of a 10,000-event session, read from Kafka.

    .venv/bin/python bench/replay.py [--events 10000] [--noise 10000] [--runs 5]

Needs Kafka (KAFKA_BOOTSTRAP_SERVERS, by default the `turnlog dev up` broker). It makes
its own topics (prefix `bench-replay-<random>.`) and deletes them afterwards.

1. The session is REAL: a loop drives the pure FSM (agents.fsm) with the assistant agent
   of examples/agents.toml, answering every effect the way the worker's executors do
   (scripted LLM answers with a calculator tool call every turn, tool results, summaries
   when the context fills up, so compactions happen), until the session has `--events`
   events. Its events and its inputs are produced the way the worker and the clients
   write them: events in committed transactions, keyed by session id; `--noise` events of
   other sessions share its partition (a replay must skip them).
2. Timed, each `--runs` times (median and best printed): reading the session from Kafka
   (read_committed, key-filtered, decoded), folding it into the timeline, rendering the
   timeline as `turnlog replay` prints it, and `--verify` (reading the inputs and
   re-deciding all of them, rebuilding every LLM request's digest). Then the whole
   command as a user runs it (`turnlog replay SESSION`, a new process, output to a pipe).

Prints the figures; BENCHMARKS.md ("Replay") records them. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import secrets
import statistics
import subprocess
import sys
import time
from contextlib import redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.context import ContextMemo
from agents.definitions import parse_definitions
from agents.effects import (
    CompactionEffect,
    LlmCallEffect,
    ToolCallEffect,
    outcome_request_id,
    pending_effects,
)
from agents.events import (
    CompleteCompaction,
    CompleteLlmCall,
    CompleteToolCall,
    Event,
    LlmCallRequested,
    Request,
    RequestPayload,
    SendMessage,
    SessionStarted,
    ToolUse,
    TurnStarted,
    Usage,
    event_id_for,
)
from agents.fsm import decide_and_evolve, initial_state
from agents.registry import AgentRegistry
from agents.state import SessionState

PARTITIONS = 8

# examples/agents.toml's assistant, with budgets that a 1,000-turn session stays within.
BENCH_AGENTS = """
[agents.assistant]
model = "scripted-small"
system_prompt = "You are a careful, concise assistant. Use the calculator for arithmetic."
tools = ["calculator", "shell"]
max_iterations = 8
max_tokens = 512
[agents.assistant.budget]
turn_usd = 1.0
session_usd = 1000.0
session_tokens = 1000000000
[agents.assistant.compaction]
strategy = "summarize"
trigger_ratio = 0.75
keep_last = 6
summarize_model = "scripted-summarizer"
"""

# The shell's memo of built messages, as the session worker keeps one (agents.context).
MEMO = ContextMemo()


def registry() -> AgentRegistry:
    import tomllib

    definitions, tools = parse_definitions(tomllib.loads(BENCH_AGENTS), "bench")
    return AgentRegistry(definitions, tools)


_FILLER = ("Kafka keeps the log; the worker folds it; the projector writes Postgres. ") * 40


def _text(base: str, chars: int) -> str:
    """`base`, padded with filler to about `chars` characters (message sizes matter:
    they decide how many entries a context window holds, hence how many seqs each
    LlmCallRequested lists)."""
    return base if len(base) >= chars else f"{base} {_FILLER[: chars - len(base) - 1]}"


def _answer(effect: object, n: int, chars: int) -> RequestPayload:
    if isinstance(effect, CompactionEffect):
        return CompleteCompaction(
            effect.effect_id,
            f"Summary {n}: numbers were multiplied.",
            "scripted-summarizer",
            Usage(800, 40),
            30,
        )
    if isinstance(effect, LlmCallEffect):
        first = effect.requested.iteration == 1
        if first:
            use = ToolUse(f"toolu_{n:08d}", "calculator", f'{{"expression": "{n}*7"}}')
            return CompleteLlmCall(
                effect.effect_id,
                "scripted-small",
                _text("Let me calculate that.", chars // 4),
                (use,),
                "tool_use",
                Usage(400, 12, 300, 0),
                41,
            )
        return CompleteLlmCall(
            effect.effect_id,
            "scripted-small",
            _text(f"{n} × 7 = {n * 7}.", chars),
            (),
            "end_turn",
            Usage(420, 9, 300, 0),
            38,
        )
    assert isinstance(effect, ToolCallEffect)
    a, b = effect.arguments_json.split('"')[3].split("*")  # {"expression": "N*7"}
    return CompleteToolCall(effect.effect_id, str(int(a) * int(b)), 2)


def build_session(
    session_id: str, n_events: int, reg: AgentRegistry, *, chars: int = 400
) -> tuple[list[Event], list[Request]]:
    """A real session of at least n_events events, and the inputs that produced it."""
    state: SessionState = initial_state(session_id)
    clock = datetime(2026, 1, 1, tzinfo=UTC)
    events: list[Event] = []
    requests: list[Request] = []
    turn = 0
    while len(events) < n_events:
        turn += 1
        clock += timedelta(seconds=5)
        pending: list[Request] = [
            Request(
                f"{session_id}:u{turn}",
                session_id,
                clock,
                SendMessage(_text(f"what is {turn}*7?", chars)),
                agent="assistant" if turn == 1 else None,
            )
        ]
        while pending:
            req = pending.pop(0)
            new, state = decide_and_evolve(state, req, reg, memo=MEMO)
            assert new, f"request {req.request_id} decided nothing"
            events.extend(new)
            requests.append(req)
            for effect in pending_effects(state):
                clock += timedelta(milliseconds=50)
                pending.append(
                    Request(
                        outcome_request_id(effect),
                        session_id,
                        clock,
                        _answer(effect, turn, chars),
                        causation_id=effect.effect_id,
                    )
                )
    return events, requests


def noise_events(n: int, prefix: str) -> list[Event]:
    """Small sessions (started, one turn started) sharing the partition."""
    out: list[Event] = []
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(n // 2):
        sid = f"{prefix}{i}"
        out.append(
            Event(
                event_id_for(sid, 1), sid, 1, at, "assistant", SessionStarted("assistant", "0" * 64)
            )
        )
        out.append(
            Event(
                event_id_for(sid, 2), sid, 2, at, "assistant", TurnStarted(1), turn_id=f"{sid}:t1"
            )
        )
    return out


async def produce(
    bootstrap: str,
    topics: object,
    session: list[Event],
    requests: list[Request],
    noise: list[Event],
    partition: int,
) -> None:
    from aiokafka import AIOKafkaProducer

    from schemas.codec import encode_event, encode_request

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=512 * 1024,
        transactional_id=f"bench-replay-{secrets.token_hex(4)}",
    )
    await producer.start()
    try:
        # Interleave the noise with the session, 500 events per transaction (as the
        # session worker commits a poll batch).
        mixed: list[Event] = []
        step = max(1, len(session) // max(1, len(noise)))
        it = iter(noise)
        for i, e in enumerate(session):
            mixed.append(e)
            if i % step == 0:
                mixed.extend(x for x in (next(it, None),) if x is not None)
        mixed.extend(it)
        for start in range(0, len(mixed), 500):
            async with producer.transaction():
                for e in mixed[start : start + 500]:
                    await producer.send(
                        topics.events,
                        encode_event(e),  # type: ignore[attr-defined]
                        key=e.session_id.encode(),
                        partition=partition,
                    )
        async with producer.transaction():
            for r in requests:
                await producer.send(
                    topics.requests,
                    encode_request(r),  # type: ignore[attr-defined]
                    key=r.session_id.encode(),
                    partition=partition,
                )
    finally:
        await producer.stop()


def _timed(fn: object, runs: int) -> tuple[list[float], object]:
    """`runs` timed calls after one untimed warm-up (imports, first connections)."""
    times, result = [], fn()  # type: ignore[operator]
    for _ in range(runs):
        began = time.perf_counter()
        result = fn()  # type: ignore[operator]
        times.append(time.perf_counter() - began)
    return times, result


def _fmt(times: list[float]) -> str:
    return f"median {statistics.median(times) * 1000:7.1f} ms   best {min(times) * 1000:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description="turnlog replay benchmark")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument(
        "--noise", type=int, default=10_000, help="events of other sessions in the same partition"
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--chars",
        type=int,
        default=400,
        help="size of user messages and answers (small sizes = many "
        "entries per context window = long seq lists per LLM call)",
    )
    args = parser.parse_args()

    from streams.partitioning import partition_for
    from streams.topics import delete_topics, ensure_topics
    from turnlog.cli.replay import _print_timeline, _print_totals
    from turnlog.replay import load_session_log, replay
    from turnlog.replay_verify import read_session_requests, verify_log
    from turnlog.settings import load_settings

    bootstrap = load_settings().kafka_bootstrap_servers
    prefix = f"bench-replay-{secrets.token_hex(3)}."
    reg = registry()
    session_id = "s-bench-replay"
    began = time.perf_counter()
    events, requests = build_session(session_id, args.events, reg, chars=args.chars)
    built = time.perf_counter() - began
    compactions = sum(type(e.payload).__name__ == "ContextCompacted" for e in events)
    seqs = [e.payload.context_entries for e in events if isinstance(e.payload, LlmCallRequested)]
    print(
        f"session: {len(events)} events, {len(requests)} inputs, {compactions} "
        f"compactions, messages of ~{args.chars} chars, {statistics.mean(seqs):.0f} "
        f"context entries per LLM call on average (built through the FSM in {built:.2f} s)"
    )
    partition = partition_for(session_id, PARTITIONS)
    noise = noise_events(args.noise, "s-noise-")
    try:
        topics = asyncio.run(ensure_topics(bootstrap, prefix, PARTITIONS)).names
        asyncio.run(produce(bootstrap, topics, events, requests, noise, partition))
        print(
            f"produced to {topics.events} partition {partition} with {len(noise)} events "
            f"of {len(noise) // 2} other sessions interleaved\n"
        )

        def load() -> object:
            return asyncio.run(
                load_session_log(bootstrap, topics, session_id, partitions=PARTITIONS)
            )

        load_t, log = _timed(load, args.runs)
        fold_t, result = _timed(lambda: replay(log), args.runs)  # type: ignore[arg-type]

        def render() -> None:
            with redirect_stdout(io.StringIO()):
                _print_timeline(result)
                _print_totals(result)

        render_t, _ = _timed(render, args.runs)

        def full() -> None:
            lg = asyncio.run(load_session_log(bootstrap, topics, session_id, partitions=PARTITIONS))
            res = replay(lg)
            with redirect_stdout(io.StringIO()):
                _print_timeline(res)
                _print_totals(res)

        full_t, _ = _timed(full, args.runs)

        def verify() -> object:
            reqs = asyncio.run(
                read_session_requests(bootstrap, topics, session_id, partitions=PARTITIONS)
            )
            return verify_log(log, reqs, reg)  # type: ignore[arg-type]

        verify_t, report = _timed(verify, max(1, args.runs // 3))
        assert getattr(report, "ok", False), report

        env = {**os.environ, "TURNLOG_TOPIC_PREFIX": prefix, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}

        def command() -> None:
            subprocess.run(
                [sys.executable, "-m", "turnlog", "replay", session_id],
                env=env,
                cwd=ROOT,
                check=True,
                stdout=subprocess.PIPE,
            )

        cmd_t, _ = _timed(command, max(1, args.runs // 3))

        def startup() -> None:
            subprocess.run(
                [sys.executable, "-m", "turnlog", "replay", "--help"],
                env=env,
                cwd=ROOT,
                check=True,
                stdout=subprocess.PIPE,
            )

        start_t, _ = _timed(startup, max(1, args.runs // 3))
        n = len(events)
        print(f"read from Kafka + decode ({n} of {n + len(noise)} records)  {_fmt(load_t)}")
        print(f"fold through the FSM + timeline rows          {_fmt(fold_t)}")
        print(f"render the timeline text                      {_fmt(render_t)}")
        print(
            f"replay, all three (the command's work)        {_fmt(full_t)}   "
            f"= {n / statistics.median(full_t):,.0f} events/s"
        )
        print(f"verify: read inputs + re-decide {len(requests)} + digests {_fmt(verify_t)}")
        print(f"`turnlog replay` as a new process, to a pipe  {_fmt(cmd_t)}")
        print(f"  of which interpreter + imports (--help)     {_fmt(start_t)}")
    finally:
        asyncio.run(delete_topics(bootstrap, prefix))


if __name__ == "__main__":
    main()
