"""A rebalance storm with a side effect counted where it lands (shared by the test and
bench/rebalance.py).

Session workers (`python -m turnlog worker session` subprocesses) join and leave the group every 1-2 s
(SIGTERM: plain rebalances; or SIGKILL with `kill=True`) while sessions of the `marker`
agent run a shell command that is not idempotent: each run leaves a new file in the
sandbox (`mktemp -p marks <session>-t<turn>.XXXXXX`), so runs are counted in the sandbox,
not in the log.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from agents.events import Event, ToolCallCompleted, ToolCallFailed, ToolCallRequested
from schemas.codec import decode_event
from streams.topics import TopicNames
from tests.support.harness import (
    EventLog,
    RequestSender,
    WorkerGroup,
    group_caught_up,
    read_records,
    read_requests,
    user_message,
    wait_until,
    worker_env,
)

AGENTS = """
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

SCRIPT = {
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


@dataclass
class StormResult:
    changes: int
    events: list[Event]
    requests: list
    logs: str
    # per call (session, call id): its user text "<session>-t<turn>"
    calls: dict[tuple[str, str], str] = field(default_factory=dict)
    completed: set[tuple[str, str]] = field(default_factory=set)
    failed: dict[tuple[str, str], str] = field(default_factory=dict)
    runs: Counter[str] = field(default_factory=Counter)  # files per "<session>-t<turn>"
    seconds: float = 0.0

    @property
    def twice(self) -> dict[str, int]:
        return {name: n for name, n in self.runs.items() if n > 1}

    @property
    def kept(self) -> int:
        """Assignments that resumed at least one partition in place."""
        return sum(
            1
            for line in self.logs.splitlines()
            if '"partitions.assigned"' in line and '"kept": [' in line and '"kept": []' not in line
        )


async def storm(
    bootstrap: str,
    names: TopicNames,
    prefix: str,
    tmp: Path,
    *,
    sessions: int,
    turns: int,
    max_changes: int = 12,
    seed: int = 1207,
    kill: bool = False,
    max_workers: int = 3,
) -> StormResult:
    rng = random.Random(seed)
    sandbox = tmp / "sandbox"
    (sandbox / "marks").mkdir(parents=True)
    agents = tmp / "agents.toml"
    agents.write_text(AGENTS, encoding="utf-8")
    script = tmp / "marker.script.yaml"
    script.write_text(yaml.safe_dump(SCRIPT, sort_keys=False), encoding="utf-8")
    env = worker_env(
        bootstrap, prefix, agents=agents, script=script, sandbox=sandbox, session_timeout_ms=3000
    )
    ids = [f"storm-{i:03d}" for i in range(sessions)]
    loop = asyncio.get_running_loop()
    started = loop.time()

    async with (
        WorkerGroup(env, tmp) as group,
        RequestSender(bootstrap, names) as send,
        EventLog(bootstrap, names.events) as log,
    ):
        workers = [group.start("w1"), group.start("w2")]
        await workers[0].wait_assigned()
        sent: dict[str, int] = {}
        # Turns released so far: one more round with each change of the group, so the
        # storm outlasts the work however fast the workers are (a run that ended before
        # the group changed would prove nothing); all of them once the storm is over.
        released = [1]

        async def feed() -> None:
            # The next turn of each session as soon as its previous turn ended.
            for s in ids:
                turn = sent.get(s, 0)
                if turn < min(turns, released[0]) and log.turns_ended(s) >= turn:
                    sent[s] = turn + 1
                    await send.request(
                        user_message(
                            s,
                            f"{s}-t{turn + 1}",
                            agent="marker" if turn == 0 else None,
                            turn=turn + 1,
                        )
                    )

        def done() -> bool:
            return all(log.turns_ended(s) >= turns for s in ids)

        joined = 2
        changes = 0
        while changes < max_changes:
            until = loop.time() + rng.uniform(1.0, 2.0)
            while loop.time() < until and not done():
                await log.poll(20)
                await feed()
            if done():
                break
            changes += 1
            released[0] += 1
            alive = [w for w in workers if w.alive]
            if len(alive) >= max_workers or (len(alive) > 1 and rng.random() < 0.5):
                leaving = rng.choice(alive)
                if kill:
                    leaving.kill()
                else:
                    await asyncio.to_thread(leaving.terminate)
            else:
                joined += 1
                workers.append(group.start(f"w{joined}"))

        released[0] = turns

        async def finished() -> bool:
            await log.poll(50)
            await feed()
            return done()

        await wait_until(
            finished,
            300,
            "every session ended its turns",
            interval_s=0,
            diagnose=lambda: (
                group.tails() + "\n" + log.summary([s for s in ids if log.turns_ended(s) < turns])
            ),
        )
        seconds = loop.time() - started
        group_id = names.requests[: -len("turnlog.requests")] + "turnlog-session"
        await wait_until(
            lambda: group_caught_up(bootstrap, group_id, names.requests),
            60,
            "the workers committed every input",
            interval_s=0.25,
        )
        logs = group.logs()

    events = [decode_event(r.value) for r in await read_records(bootstrap, names.events)]
    result = StormResult(
        changes, events, await read_requests(bootstrap, names), logs, seconds=seconds
    )
    per_session: Counter[str] = Counter()
    for e in events:
        p = e.payload
        key = (e.session_id, getattr(p, "call_id", ""))
        if isinstance(p, ToolCallRequested):
            per_session[e.session_id] += 1
            result.calls[key] = f"{e.session_id}-t{per_session[e.session_id]}"
        elif isinstance(p, ToolCallCompleted):
            result.completed.add(key)
        elif isinstance(p, ToolCallFailed):
            result.failed[key] = p.error
    result.runs = Counter(f.name.rsplit(".", 1)[0] for f in (sandbox / "marks").iterdir())
    return result
