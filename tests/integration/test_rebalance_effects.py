"""Effects run once per intention, not once per ownership: a rebalance storm.

Session workers (`python -m streams` subprocesses) join and leave the group every few
seconds (SIGTERM: plain rebalances, no crash) while sessions run a shell command that is
not idempotent. Each run of the command leaves a new file in the sandbox (`mktemp`), so
the side effects are counted where they land, not in the log. What is checked:

- no recorded call ran twice: at most one file per call, whoever owned the partition;
- a call recorded as completed ran exactly once;
- a call whose outcome became unknown (its owner lost the partition mid-call) was not
  run again: the agent says `on_unknown_outcome = "fail"`, so it failed by name;
- every session completed its turns, seqs gap-free, nothing lost;
- rebalances left most partitions in place (workers logged `kept` partitions).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

import pytest
import yaml

from agents.events import (
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    TurnCompleted,
    TurnFailed,
)
from schemas.codec import decode_event
from streams.topics import TopicNames, ensure_topics
from tests.integration.worker_harness import (
    EventLog,
    RequestSender,
    WorkerGroup,
    group_caught_up,
    lost_inputs,
    read_records,
    read_requests,
    seq_problems,
    user_message,
    wait_until,
    worker_env,
)

PARTITIONS = 4
SESSIONS = 60
TURNS = 6

_AGENTS = """
[agents.marker]
description = "Runs one command per message: a side effect that must happen once."
model = "scripted-small"
system_prompt = "You are the marker. Run the command."
tools = ["shell"]
max_iterations = 4
max_tokens = 256

[agents.marker.deadlines]
llm_s = 60
tool_s = 20
on_unknown_outcome = "fail"

[agents.marker.policy]
default = "allow"

[[agents.marker.policy.rules]]
name = "marks-run"
tool = "shell"
action = "allow"
"""

_SCRIPT = {
    "defaults": {"latency_ms": 20, "chunks": 1},
    "rules": [
        {
            "name": "mark",
            "when": {"last": "user"},
            "respond": {
                "text": "Marking.",
                # The user text is "<session>-t<turn>": one file per run of that call.
                "tool_calls": [
                    {"name": "shell", "arguments": {"command": "mktemp -p marks {{user}}.XXXXXX"}}
                ],
                "usage": {"input_tokens": 50, "output_tokens": 5},
            },
        },
        {
            "name": "done",
            "when": {"last": "tool_result"},
            "respond": {"text": "Marked.", "usage": {"input_tokens": 60, "output_tokens": 3}},
        },
    ],
    "otherwise": {"text": "?"},
}


@pytest.fixture
async def names(kafka_bootstrap: str, unique_prefix: str) -> TopicNames:
    return (await ensure_topics(kafka_bootstrap, unique_prefix, partitions=PARTITIONS)).names


async def test_a_rebalance_storm_runs_each_side_effect_at_most_once(
    kafka_bootstrap: str, names: TopicNames, unique_prefix: str, tmp_path: Path
) -> None:
    rng = random.Random(1207)
    sandbox = tmp_path / "sandbox"
    (sandbox / "marks").mkdir(parents=True)
    agents = tmp_path / "agents.toml"
    agents.write_text(_AGENTS, encoding="utf-8")
    script = tmp_path / "marker.script.yaml"
    script.write_text(yaml.safe_dump(_SCRIPT, sort_keys=False), encoding="utf-8")
    env = worker_env(kafka_bootstrap, unique_prefix, agents=agents, script=script,
                     sandbox=sandbox, session_timeout_ms=3000)
    sessions = [f"storm-{i:02d}" for i in range(SESSIONS)]

    async with (
        WorkerGroup(env, tmp_path) as group,
        RequestSender(kafka_bootstrap, names) as send,
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        workers = [group.start("w1"), group.start("w2")]
        await workers[0].wait_assigned()
        sent: dict[str, int] = {}

        async def feed() -> None:
            # The next turn of each session as soon as its previous turn ended.
            for s in sessions:
                turn = sent.get(s, 0)
                if turn < TURNS and log.turns_ended(s) >= turn:
                    sent[s] = turn + 1
                    await send.request(
                        user_message(s, f"{s}-t{turn + 1}", agent="marker" if turn == 0 else None,
                                     turn=turn + 1)
                    )

        def done() -> bool:
            return all(log.turns_ended(s) >= TURNS for s in sessions)

        # The storm: every 1-2 s a worker joins or one leaves, under load, until the
        # sessions are done (at most 12 changes).
        joined = changes = 0
        joined = 2
        while changes < 12:
            until = asyncio.get_running_loop().time() + rng.uniform(1.0, 2.0)
            while asyncio.get_running_loop().time() < until and not done():
                await log.poll(20)
                await feed()
            if done():
                break
            changes += 1
            alive = [w for w in workers if w.alive]
            if len(alive) > 2 or (len(alive) > 1 and rng.random() < 0.5):
                await asyncio.to_thread(rng.choice(alive).terminate)
            else:
                joined += 1
                workers.append(group.start(f"w{joined}"))

        async def finished() -> bool:
            await log.poll(50)
            await feed()
            return done()

        await wait_until(finished, 150, "every session ended its turns", interval_s=0,
                         diagnose=lambda: group.tails() + "\n" + log.summary(
                             [s for s in sessions if log.turns_ended(s) < TURNS]))
        group_id = names.requests[: -len("turnlog.requests")] + "turnlog-session"
        await wait_until(lambda: group_caught_up(kafka_bootstrap, group_id, names.requests),
                         60, "the workers committed every input", interval_s=0.25)
        logs = group.logs()

    events = [decode_event(r.value) for r in await read_records(kafka_bootstrap, names.events)]
    requests = await read_requests(kafka_bootstrap, names)
    assert seq_problems(events) == []
    assert lost_inputs(requests, events) == []
    assert [e for e in events if isinstance(e.payload, TurnFailed)] == []
    ended = Counter(e.session_id for e in events if isinstance(e.payload, TurnCompleted))
    assert {s: ended[s] for s in sessions} == {s: TURNS for s in sessions}

    calls = {(e.session_id, e.payload.call_id): e.payload for e in events
             if isinstance(e.payload, ToolCallRequested)}
    # The command names its file after the user text, which names session and turn.
    turn_of_call: dict[tuple[str, str], str] = {}
    for e in events:
        if isinstance(e.payload, ToolCallRequested):
            n = sum(1 for k in turn_of_call if k[0] == e.session_id) + 1
            turn_of_call[(e.session_id, e.payload.call_id)] = f"{e.session_id}-t{n}"
    runs = Counter(p.name.rsplit(".", 1)[0] for p in (sandbox / "marks").iterdir())
    completed = {(e.session_id, e.payload.call_id) for e in events
                 if isinstance(e.payload, ToolCallCompleted)}
    failed = {(e.session_id, e.payload.call_id): e.payload.error for e in events
              if isinstance(e.payload, ToolCallFailed)}
    assert len(calls) == SESSIONS * TURNS
    assert set(completed) | set(failed) == set(calls)
    twice = {name: n for name, n in runs.items() if n > 1}
    assert twice == {}, f"side effects run more than once: {twice}"
    for key in completed:
        assert runs[turn_of_call[key]] == 1, f"{key} completed but ran {runs[turn_of_call[key]]}x"
    for key, error in failed.items():
        assert "unknown" in error, f"{key} failed for another reason: {error}"
    assert sum(runs.values()) <= len(calls)
    print(f"storm: {changes} membership changes, {len(calls)} calls, {sum(runs.values())} runs, "
          f"{len(failed)} failed as unknown")
    # Plain rebalances kept partitions in place instead of restoring them.
    kept = sum(line.count('"partitions.assigned"') for line in logs.splitlines()
               if '"kept": [' in line and '"kept": []' not in line)
    assert kept > 0, "no rebalance kept a partition in place"
