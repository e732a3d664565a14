"""Orchestration benchmark: fan-out of N members through delegate_many.

    .venv/bin/python bench/orchestration.py [--members 10,100] [--repeat 3] [--partitions 4]
        [--batch-items 1000] [--batch-concurrency 16,64] [--write]
    .venv/bin/python bench/orchestration.py --kill-items 1000 [--kills 4] [--seed N]

Needs a Kafka broker (KAFKA_BOOTSTRAP_SERVERS, by default the `turnlog dev up` one).
Every run creates topics under a fresh prefix and deletes them afterwards.

The worker is ONE `python -m turnlog worker session` subprocess on the scripted provider
at zero latency. A parent agent's first answer is one tool call: `delegate_many` (mode
all) over N members — each a child session whose one LLM call answers at once — or, as
the baseline, N plain `delegate` calls in the same answer (the parallel delegation that
existed before orchestrations). Per run, from the events (their `occurred_at` is the
worker's clock when it took the input):

- decision → last member started: from the parent's event that started the members
  (OrchestrationStarted, or the first ChildSessionRequested of the baseline) to the
  SessionStarted of the last member's child session;
- decision → combined: to OrchestrationCompleted (baseline: the last ChildSessionCompleted);
- overhead per member: (orchestration's decision → combined − the baseline's) / N: what
  an orchestration adds per member over plain parallel delegation;
- parent log: events and bytes in the parent's log per member.

`--batch-items N` also pushes N work items through a 3-stage pipeline agent (a
sequential team of three members; each item is 4 sessions and 3 LLM calls) with
streams.batch, as `turnlog batch submit` does, at each `--batch-concurrency`, and prints
items/s from the first send to the last item's end (`--members 0`: the batch only).

`--kill-items N` is the kill run (`--stage-limit L`: through a pipeline whose second stage
allows L items at once, run stage by stage by the submitter; the most stage sessions in
flight at once are counted from the events): N items through the 3-stage pipeline while the worker
is SIGKILLed `--kills` times at random moments (each time the submitter dies with it; a
new worker and a new submitter run carry on), then prints the invariants read from the
events topic afresh: no item ran twice (one TurnStarted, one end per item session), no
stage ran twice (one SessionStarted per stage child session), none was lost (every item
ended), none submitted twice (one `:item` request per item on the requests topic), seqs
gap-free, no LLM call completed twice; and the batch in SQL (a projector run into a
scratch database on DATABASE_URL; `--no-sql` skips it): every item started and
completed, at the cost the submitter summed.

Runs alternate (orchestration, baseline) so that drift of the shared machine falls on both;
medians over `--repeat`. Prints the figures; `--write` replaces the "Orchestration"
section of BENCHMARKS.md. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.agentfile import registry_from_file
from agents.context import build_llm_request
from agents.events import (
    ChildSessionCompleted,
    ChildSessionRequested,
    ChildStatus,
    CompleteChildSession,
    CompleteLlmCall,
    Event,
    OrchestrationCompleted,
    OrchestrationStarted,
    Request,
    SendMessage,
    SessionStarted,
    TurnCompleted,
    Usage,
)
from agents.fsm import decide_and_evolve, initial_state
from agents.providers.scripted import ScriptedProvider
from bench._report import write_section
from schemas.codec import encode_event
from streams.batch import Batch
from streams.topics import delete_topics, ensure_topics
from tests.support.harness import (
    EventLog,
    RequestSender,
    WorkerProcess,
    user_message,
    worker_env,
)

AGENTS = """
[agents.fan]
model = "scripted-small"
system_prompt = "You fan out. (bench orchestration)"
tools = ["delegate_many"]
delegates = ["member"]
max_iterations = 2
[agents.fan.deadlines]
llm_s = 600
child_s = 600

[agents.plain]
model = "scripted-small"
system_prompt = "You delegate. (bench orchestration)"
tools = ["delegate"]
delegates = ["member"]
max_iterations = 2
[agents.plain.deadlines]
llm_s = 600
child_s = 600

[agents.member]
model = "scripted-small"
system_prompt = "You are a member."
max_iterations = 1

[agents.pipe3]
model = "scripted-small"
system_prompt = "Three stages."
[agents.pipe3.team]
members = ["member", "member", "member"]
mode = "sequential"
"""

# The kill run's limited pipeline (--stage-limit): three stage agents, the second limited.
LIMITED = """
[agents.stage1]
model = "scripted-small"
system_prompt = "You are a member (stage 1)."
max_iterations = 1

[agents.stage2]
model = "scripted-small"
system_prompt = "You are a member (stage 2)."
max_iterations = 1

[agents.stage3]
model = "scripted-small"
system_prompt = "You are a member (stage 3)."
max_iterations = 1

[agents.pipe3l]
model = "scripted-small"
system_prompt = "Three stages, the second limited."
[agents.pipe3l.team]
members = ["stage1", "stage2", "stage3"]
mode = "sequential"
[agents.pipe3l.team.limits.stage2]
max_concurrency = {limit}
"""


def _script(n: int) -> dict[str, Any]:
    many = {"mode": "all", "agents": ["member"] * n, "task": "Say hi."}
    plain = [{"name": "delegate", "arguments": {"agent": "member", "task": "Say hi."}}] * n
    return {
        "defaults": {"latency_ms": 0, "chunks": 1},
        "rules": [
            {
                "name": "combined",
                "when": {"system_contains": "bench orchestration", "last": "tool_result"},
                "respond": {"text": "done"},
            },
            {
                "name": "fan",
                "when": {"system_contains": "You fan out"},
                "respond": {
                    "text": "fanning out",
                    "tool_calls": [{"name": "delegate_many", "arguments": many}],
                },
            },
            {
                "name": "plain",
                "when": {"system_contains": "You delegate"},
                "respond": {"text": "delegating", "tool_calls": plain},
            },
            {"name": "member", "when": {"system_contains": "a member"}, "respond": {"text": "hi"}},
        ],
    }


def _ms(a: Any, b: Any) -> float:
    return float((b - a).total_seconds() * 1000)


def _measure(parent: str, events: list[Event], n: int) -> dict[str, float]:
    mine = [e for e in events if e.session_id == parent]
    starts = [e for e in mine if isinstance(e.payload, ChildSessionRequested)]
    started = [e for e in mine if isinstance(e.payload, OrchestrationStarted)]
    decision = (started[0] if started else starts[0]).occurred_at
    children = {e.payload.child_session_id for e in starts}  # type: ignore[union-attr]
    child_starts = [
        e.occurred_at
        for e in events
        if e.session_id in children and isinstance(e.payload, SessionStarted)
    ]
    combined = [e for e in mine if isinstance(e.payload, OrchestrationCompleted)] or [
        e for e in mine if isinstance(e.payload, ChildSessionCompleted)
    ]
    return {
        "last_started_ms": _ms(decision, max(child_starts)),
        "combined_ms": _ms(decision, max(e.occurred_at for e in combined)),
        "parent_events_per_member": len(mine) / n,
        "parent_bytes_per_member": sum(len(encode_event(e)) for e in mine) / n,
    }


async def _run(bootstrap: str, partitions: int, n: int, tmp: Path, agent: str) -> dict[str, float]:
    prefix = f"bench{secrets.token_hex(3)}."
    names = (await ensure_topics(bootstrap, prefix, partitions=partitions)).names
    agents = tmp / "agents.toml"
    agents.write_text(AGENTS, encoding="utf-8")
    script = tmp / f"script-{n}.yaml"
    script.write_text(json.dumps(_script(n)), encoding="utf-8")  # JSON is YAML
    env = worker_env(
        bootstrap, prefix, partitions=partitions, agents=agents, script=script, sandbox=tmp
    )
    worker = WorkerProcess("bench", env, tmp / f"worker-{prefix}log").start()
    parent = f"{agent}-{secrets.token_hex(3)}"
    try:
        await worker.wait_assigned(at_least=partitions)
        async with (
            RequestSender(bootstrap, names) as send,
            EventLog(bootstrap, names.events) as log,
        ):
            await send.requests([user_message(parent, "go", agent=agent)])
            deadline = time.monotonic() + 300
            while not log.of(parent, TurnCompleted):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{parent} did not finish:\n{worker.tail()}")
                await log.poll(100)
            return _measure(parent, list(log.events), n)
    finally:
        worker.terminate()
        await delete_topics(bootstrap, prefix)


def _core_ms(tmp: Path, n: int, agent: str, repeat: int = 5) -> float:
    """CPU time of the pure core (decide + evolve) for the parent's whole turn — the
    answer that fans out, N member outcomes, the final answer — best of `repeat`."""
    registry = registry_from_file(tmp / "agents.toml")
    provider = ScriptedProvider.from_dict(_script(n))
    best = float("inf")
    for _ in range(repeat):
        now = datetime(2026, 1, 1, tzinfo=UTC)
        state = initial_state("p")
        spent = 0.0

        def send(payload: Any, agent_name: str | None = None) -> list[Event]:
            nonlocal state, spent, now
            now += timedelta(milliseconds=1)
            req = Request(f"r{state.last_seq}", "p", now, payload, agent=agent_name)
            t0 = time.process_time()
            events, state = decide_and_evolve(state, req, registry)
            spent += time.process_time() - t0
            return events

        send(SendMessage("go"), agent)
        for _round in range(2):
            llm = state.turn.llm if state.turn else None
            if llm is None:
                break
            req = build_llm_request(state, llm.request, registry)
            answer = provider.respond(req)
            events = send(
                CompleteLlmCall(
                    call_id=llm.request.call_id,
                    model="scripted-small",
                    text=answer.text,
                    tool_uses=answer.tool_uses,
                    usage=Usage(10, 10),
                )
            )
            for ev in events:
                if isinstance(ev.payload, ChildSessionRequested):
                    p = ev.payload
                    send(
                        CompleteChildSession(
                            p.call_id,
                            p.child_session_id,
                            ChildStatus.COMPLETED,
                            "hi",
                            Usage(1, 1),
                            1,
                        )
                    )
        if state.phase.value != "idle" or state.turns != 1:
            raise RuntimeError(f"the {agent} turn did not end: {state.phase}")
        best = min(best, spent * 1000)
    return best


async def _batch_run(
    bootstrap: str, partitions: int, items: int, concurrency: int, tmp: Path
) -> dict[str, float]:
    """`items` work items through the 3-stage pipeline agent with `concurrency` in
    flight (streams.batch, as `turnlog batch submit` runs it): items/s from the first
    send to the last item's end, as the submitter sees it."""
    prefix = f"bench{secrets.token_hex(3)}."
    names = (await ensure_topics(bootstrap, prefix, partitions=partitions)).names
    agents = tmp / "agents.toml"
    agents.write_text(AGENTS, encoding="utf-8")
    script = tmp / "script-batch.yaml"
    script.write_text(json.dumps(_script(1)), encoding="utf-8")
    env = worker_env(
        bootstrap, prefix, partitions=partitions, agents=agents, script=script, sandbox=tmp
    )
    worker = WorkerProcess("bench", env, tmp / f"worker-{prefix}log").start()
    try:
        await worker.wait_assigned(at_least=partitions)
        batch = Batch(
            bootstrap=bootstrap,
            topics=names,
            partitions=partitions,
            batch_id=f"b{secrets.token_hex(3)}",
            agent="pipe3",
            items=[f"item {i}" for i in range(items)],
            concurrency=concurrency,
        )
        t0 = time.monotonic()
        summary = await batch.run()
        elapsed = time.monotonic() - t0
        if summary.completed != items:
            raise RuntimeError(f"{summary} \n{worker.tail()}")
        return {"items_per_s": items / elapsed, "seconds": elapsed}
    finally:
        worker.terminate()
        await delete_topics(bootstrap, prefix)


async def _batch_in_sql(bootstrap: str, events_topic: str, batch_id: str) -> dict[str, int]:
    """The batch's counts in SQL (streams.batch.progress_sql, what `turnlog batch status`
    runs), from a projector run over the events into a scratch database (DATABASE_URL,
    by default the `turnlog dev up` one, as a superuser), dropped afterwards."""
    import psycopg
    from psycopg import sql

    from projections.migrate import migrate
    from projections.projector import Projector, ProjectorConfig
    from streams.batch import progress_sql
    from turnlog.settings import load_settings

    admin = load_settings().database_url
    name = f"turnlog_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = admin.rsplit("/", 1)[0] + "/" + name
    try:
        migrate(url)
        config = ProjectorConfig(bootstrap, url, events_topic, None, group_id=None)
        await Projector(config).run(until_caught_up=True)
        with psycopg.connect(url) as conn:
            row = conn.execute(progress_sql(), (batch_id,)).fetchone()
        assert row is not None
        keys = ("started", "completed", "failed", "cost_nanos")
        return dict(zip(keys, map(int, row), strict=True))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


async def _kill_run(
    bootstrap: str,
    partitions: int,
    items: int,
    kills: int,
    seed: int,
    tmp: Path,
    database: bool = True,
    stage_limit: int = 0,
) -> dict[str, Any]:
    """The kill run (see the module doc): the invariants and how long it took. With
    `stage_limit`, through the limited pipeline: the submitter runs the stages itself,
    and the most sessions in flight per stage are counted from the events."""
    import random
    from collections import Counter

    from agents.agentfile import registry_from_file
    from agents.events import TurnFailed, TurnStarted
    from schemas.codec import decode_event
    from streams.batch import item_session_id, stage_session_id, stages_of
    from tests.support.harness import (
        group_caught_up,
        llm_completions,
        read_records,
        read_requests,
        seq_problems,
        wait_until,
    )

    rng = random.Random(seed)
    prefix = f"benchkill{secrets.token_hex(3)}."
    names = (await ensure_topics(bootstrap, prefix, partitions=partitions)).names
    agents = tmp / "agents.toml"
    agents.write_text(AGENTS + LIMITED.format(limit=stage_limit or 1), encoding="utf-8")
    agent = "pipe3l" if stage_limit else "pipe3"
    stages = stages_of(registry_from_file(agents).info(agent).definition)
    script = tmp / "script-kill.yaml"
    script.write_text(json.dumps(_script(1)), encoding="utf-8")
    env = worker_env(
        bootstrap, prefix, partitions=partitions, agents=agents, script=script, sandbox=tmp
    )
    batch_id = f"k{secrets.token_hex(3)}"
    texts = [f"item {i}" for i in range(1, items + 1)]

    def batch() -> Batch:
        return Batch(
            bootstrap=bootstrap,
            topics=names,
            partitions=partitions,
            batch_id=batch_id,
            agent=agent,
            items=texts,
            concurrency=32,
            stages=stages,
        )

    # Kill points: after a random number of items ended, plus a random delay.
    points = sorted(rng.sample(range(items // 20, items - items // 20), kills))
    worker = WorkerProcess("kill-0", env, tmp / f"worker-{prefix}log").start()
    t0 = time.monotonic()
    sent_total = 0
    try:
        await worker.wait_assigned(at_least=partitions)
        for k, point in enumerate(points, 1):
            reached = asyncio.Event()

            def progress(
                done: int, completed: int, failed: int, p: int = point, ev: Any = reached
            ) -> None:
                if done >= p:
                    ev.set()

            run = batch()
            task = asyncio.create_task(run.run(progress))
            waiter = asyncio.create_task(reached.wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            await asyncio.sleep(rng.uniform(0, 0.5))
            worker.kill()
            task.cancel()
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            sent_total += run.sent_now
            print(f"kill {k}: SIGKILL after {point}+ items ended ({run.sent_now} sent by this run)")
            worker = WorkerProcess(f"kill-{k}", env, tmp / f"worker-{prefix}log").start()
            await worker.wait_assigned(at_least=partitions)
        final = batch()
        summary = await final.run()
        sent_total += final.sent_now
        elapsed = time.monotonic() - t0
        group = f"{prefix}turnlog-session"
        await wait_until(
            lambda: group_caught_up(bootstrap, group, names.requests),
            120,
            "the session worker committed every input",
            interval_s=0.5,
        )
        events = [decode_event(r.value) for r in await read_records(bootstrap, names.events)]
        requests = await read_requests(bootstrap, names)
        sql = await _batch_in_sql(bootstrap, names.events, batch_id) if database else None
    finally:
        worker.terminate()
        await delete_topics(bootstrap, prefix)
    if stages:  # an item is its stages' sessions; the last one ends it
        runs = {
            n: [stage_session_id(batch_id, n, k, len(stages)) for k in range(1, len(stages) + 1)]
            for n in range(1, items + 1)
        }
    else:  # an item is its session; its stages are child sessions
        runs = {n: [item_session_id(batch_id, n)] for n in range(1, items + 1)}
    item_ids = {sid for ids in runs.values() for sid in ids}
    submitted = Counter(
        r.session_id
        for r in requests
        if r.session_id in item_ids and r.request_id.endswith(":item")
    )
    turns = Counter(e.session_id for e in events if isinstance(e.payload, TurnStarted))
    ends = Counter(
        e.session_id for e in events if isinstance(e.payload, (TurnCompleted, TurnFailed))
    )
    started = Counter(
        e.session_id
        for e in events
        if isinstance(e.payload, SessionStarted)
        and (e.session_id in item_ids if stages else "/child/" in e.session_id)
    )
    most = {f"stage {k}": _most_at_once(events, "of3", k) for k in (1, 2, 3)} if stages else {}
    twice_llm = sum(len(v) > 1 for v in llm_completions(events).values())
    return {
        "items": items,
        "kills": kills,
        "seed": seed,
        "seconds": elapsed,
        "completed": summary.completed,
        "failed": summary.failed,
        "sent_total": sent_total,
        "items_submitted_twice": sum(n > 1 for n in submitted.values()),
        "items_never_submitted": len(item_ids - set(submitted)),
        "items_twice": sum(any(turns[s] > 1 or ends[s] > 1 for s in ids) for ids in runs.values()),
        "items_lost": sum(ends[ids[-1]] == 0 for ids in runs.values()),
        "stages_started": len(started),
        "stages_twice": sum(n > 1 for n in started.values()),
        "stage_limit": stage_limit,
        "most_in_flight": most,
        "llm_calls_completed_twice": twice_llm,
        "seq_problems": len(seq_problems(events)),
        "events": len(events),
        "cost_nanos": summary.cost_nanos,
        "sql": sql,
    }


def _most_at_once(events: list[Event], suffix: str, k: int) -> int:
    """The most stage-k sessions (ids ending `/<k><suffix>`) between TurnStarted and
    their turn's end at one moment, by the events' times (an end before a start)."""
    from agents.events import TurnFailed, TurnStarted

    marks = []
    for e in events:
        if e.session_id.endswith(f"/{k}{suffix}"):
            if isinstance(e.payload, TurnStarted):
                marks.append((e.occurred_at, 1))
            elif isinstance(e.payload, TurnCompleted | TurnFailed):
                marks.append((e.occurred_at, -1))
    now = most = 0
    for _, step in sorted(marks):
        now += step
        most = max(most, now)
    return most


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", default="10,100")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--batch-items", type=int, default=0, help="also a batch of this many")
    ap.add_argument("--batch-concurrency", default="16,64")
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--kill-items", type=int, default=0, help="the kill run, this many items")
    ap.add_argument("--kills", type=int, default=4)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--no-sql", action="store_true", help="kill run: skip the SQL check")
    ap.add_argument(
        "--stage-limit", type=int, default=0, help="kill run: stage 2's max_concurrency"
    )
    args = ap.parse_args()
    if args.kill_items:
        seed = args.seed if args.seed is not None else secrets.randbelow(10**6)
        with tempfile.TemporaryDirectory() as tmpdir:
            r = await _kill_run(
                os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
                args.partitions,
                args.kill_items,
                args.kills,
                seed,
                Path(tmpdir),
                database=not args.no_sql,
                stage_limit=args.stage_limit,
            )
        print(json.dumps(r, indent=2))
        ok = r["items_twice"] == r["items_lost"] == r["stages_twice"] == 0
        ok = ok and r["stages_started"] == 3 * r["items"] and r["seq_problems"] == 0
        ok = ok and r["llm_calls_completed_twice"] == r["items_submitted_twice"] == 0
        in_sql = r["sql"] or {}
        if in_sql:
            ok = ok and in_sql == {
                "started": r["items"],
                "completed": r["completed"],
                "failed": r["failed"],
                "cost_nanos": r["cost_nanos"],
            }
        if args.stage_limit:
            ok = ok and r["most_in_flight"]["stage 2"] <= args.stage_limit
        print(
            f"{r['items']} items, {r['kills']} SIGKILLs (seed {seed}), {r['seconds']:.1f} s: "
            f"{r['completed']} completed, {r['items_twice']} ran twice, {r['items_lost']} lost, "
            f"{r['items_submitted_twice']} submitted twice, "
            f"{r['stages_started']} stage sessions ({r['stages_twice']} started twice), "
            f"{r['llm_calls_completed_twice']} LLM calls completed twice, "
            f"{r['seq_problems']} seq problems; in SQL {in_sql or '(not projected)'}; "
            f"most in flight per stage {r['most_in_flight'] or '(not staged)'}: "
            f"{'INVARIANTS HOLD' if ok else 'BROKEN'}"
        )
        return
    if args.batch_items:
        with tempfile.TemporaryDirectory() as tmpdir:
            for c in (int(x) for x in args.batch_concurrency.split(",")):
                r = await _batch_run(
                    os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
                    args.partitions,
                    args.batch_items,
                    c,
                    Path(tmpdir),
                )
                print(
                    f"batch of {args.batch_items} through 3 stages, concurrency {c}: "
                    f"{r['items_per_s']:.1f} items/s ({r['seconds']:.1f} s)"
                )
        if args.members == "0":
            return
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for n in (int(x) for x in args.members.split(",")):
            orch: list[dict[str, float]] = []
            base: list[dict[str, float]] = []
            for _ in range(args.repeat):
                orch.append(await _run(bootstrap, args.partitions, n, tmp, "fan"))
                base.append(await _run(bootstrap, args.partitions, n, tmp, "plain"))
                print(f"N={n} orchestration {orch[-1]}\n      baseline      {base[-1]}")
            overhead = (_median(orch, "combined_ms") - _median(base, "combined_ms")) / n
            (tmp / "agents.toml").write_text(AGENTS, encoding="utf-8")
            core_orch, core_base = _core_ms(tmp, n, "fan"), _core_ms(tmp, n, "plain")
            print(f"N={n} core: orchestration {core_orch:.1f} ms, baseline {core_base:.1f} ms")
            rows.append(
                f"| {n} | {_median(orch, 'last_started_ms'):.0f} "
                f"| {_median(base, 'last_started_ms'):.0f} "
                f"| {_median(orch, 'combined_ms'):.0f} | {_median(base, 'combined_ms'):.0f} "
                f"| {overhead:+.2f} "
                f"| {_median(orch, 'parent_events_per_member'):.2f} / "
                f"{_median(orch, 'parent_bytes_per_member'):.0f} B "
                f"| {_median(base, 'parent_events_per_member'):.2f} / "
                f"{_median(base, 'parent_bytes_per_member'):.0f} B "
                f"| {core_orch:.1f} / {core_base:.1f} ({(core_orch - core_base) / n * 1000:+.0f} µs"
                " per member) |"
            )
    table = "\n".join(
        [
            "| members | decision → last member started, ms (orchestration) | (baseline: N "
            "delegate calls) | decision → combined, ms (orchestration) | (baseline) "
            "| overhead per member, ms | parent log per member: events / bytes "
            "(orchestration) | (baseline) | core CPU for the turn, ms: orchestration / "
            "baseline |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(table)
    if args.write:
        cmd = f".venv/bin/python bench/orchestration.py --members {args.members} --repeat {args.repeat}"
        write_section(
            "## Orchestration",
            "## Orchestration\n\n"
            f"`{cmd}` — one `turnlog worker session` subprocess ({args.partitions} "
            "partitions), scripted model at zero latency, medians of "
            f"{args.repeat} runs alternating with the baseline; times from the events' "
            "`occurred_at` (the worker's clock). The baseline is the same fan-out as N "
            "plain `delegate` calls in one answer.\n\n"
            f"{table}\n",
        )


if __name__ == "__main__":
    asyncio.run(main())
