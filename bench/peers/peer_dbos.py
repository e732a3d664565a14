"""The agent loop in DBOS with PostgreSQL (runs in bench/peers/.venvs/dbos).

    <venv>/bin/python bench/peers/peer_dbos.py load|bytes|recover URL ...

As DBOS's documentation builds a durable agent: one workflow per session that waits for
the user's messages (`DBOS.recv`), runs each LLM call and tool call as a step (its output
checkpointed in the system database before the workflow goes on) and publishes each
answer as a workflow event (`DBOS.set_event`); the caller sends with `DBOS.send` and
waits with `DBOS.get_event`
(https://docs.dbos.dev/python/tutorials/workflow-tutorial,
https://docs.dbos.dev/python/tutorials/workflow-communication,
https://docs.dbos.dev/python/tutorials/step-tutorial). The conversation is the
workflow's local state: it is rebuilt by recovery, which re-runs the workflow from its
recorded step outputs and messages (https://docs.dbos.dev/architecture, "How Workflow
Recovery Works"); recovery of this executor's pending workflows starts at `DBOS.launch()`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _drive import EXPRESSION, FIRST_TEXT, answer_text, calculate, main, user_text
from dbos import DBOS, DBOSConfig, SetWorkflowID

MARKS: dict[str, list[float]] = {}
# Turn number each session's workflow waits for next (set before each recv): recovery
# has rebuilt a session once its workflow waits for the turn after the last recorded one.
WAITING: dict[str, int] = {}


def _mark(sid: str) -> None:
    if sid in MARKS:
        MARKS[sid].append(time.monotonic())


@DBOS.step()
async def llm_step(sid: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    # The scripted model, zero latency: a user message gets one calculator call, the
    # calculator's result gets the answer.
    last = messages[-1]
    if last["role"] == "tool":
        reply: dict[str, Any] = {"role": "assistant", "content": answer_text(last["content"])}
    else:
        reply = {
            "role": "assistant",
            "content": FIRST_TEXT,
            "tool_calls": [
                {
                    "id": f"call-{len(messages)}",
                    "name": "calculator",
                    "arguments": {"expression": EXPRESSION},
                }
            ],
        }
    _mark(sid)
    return reply


@DBOS.step()
async def calculator_step(sid: str, expression: str) -> str:
    result = calculate(expression)
    _mark(sid)
    return result


@DBOS.workflow()
async def session_workflow(sid: str) -> int:
    messages: list[dict[str, Any]] = []
    turn = 0
    while True:
        WAITING[sid] = turn + 1
        text = await DBOS.recv_async("user", timeout_seconds=24 * 3600)
        if text is None:
            return turn
        turn += 1
        messages.append({"role": "user", "content": text})
        call = await llm_step(sid, messages)
        messages.append(call)
        result = await calculator_step(sid, call["tool_calls"][0]["arguments"]["expression"])
        messages.append({"role": "tool", "content": result})
        answer = await llm_step(sid, messages)
        messages.append(answer)
        await DBOS.set_event_async(f"turn-{turn}", answer["content"])


class DbosPeer:
    def __init__(self) -> None:
        self.marks = MARKS

    async def open(self, url: str) -> None:
        config: DBOSConfig = {
            "name": "peers-bench",
            "system_database_url": url,
            "log_level": "WARNING",
        }
        DBOS(config=config)
        DBOS.launch()
        logging.getLogger("dbos").setLevel(logging.WARNING)

    async def close(self) -> None:
        DBOS.destroy(destroy_registry=False)

    async def start(self, sid: str) -> None:
        with SetWorkflowID(f"session-{sid}"):
            await DBOS.start_workflow_async(session_workflow, sid)

    async def turn(self, sid: str, n: int) -> None:
        self.marks.setdefault(sid, [])
        await DBOS.send_async(f"session-{sid}", user_text(n), topic="user")
        answer = await DBOS.get_event_async(f"session-{sid}", f"turn-{n}", timeout_seconds=120)
        assert answer == answer_text(calculate(EXPRESSION)), answer

    async def rebuild(self, sid: str, turns: int) -> int:
        """Recovery started at launch: wait until the workflow is back at its recv for the
        turn after the last recorded one."""
        deadline = time.monotonic() + 600
        while WAITING.get(sid, 0) < turns + 1:
            if time.monotonic() > deadline:
                raise RuntimeError(f"recovery of {sid} did not reach turn {turns + 1}")
            await asyncio.sleep(0.001)  # polling the workflow's own progress marker
        return 4 * turns


if __name__ == "__main__":

    def factory(args: argparse.Namespace) -> DbosPeer:
        return DbosPeer()

    main(factory)
