"""Effect outcomes handed over in process (streams._partition.OwnedPartition.hand_over).

An effect that finishes in the process that owns its session's partition gives its
outcome straight to that partition's loop, which writes it to the requests topic in the
transaction that decides it, marked `turnlog.applied`. Checked on the real broker:

- every outcome of a turn went that way, is on the requests topic exactly once with the
  mark, and caused its events; `replay --verify` re-decides the session without a
  difference;
- a worker that restores the partitions reads the marked records and decides none of
  them again (no duplicate, no rejection), and goes on with the next turn;
- an outcome whose transaction does not commit (its event is refused as too large) is
  handed back and sent the plain way: it is on the requests topic once, unmarked, and
  the worker sets it aside in the DLQ as it would any input whose events are refused.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
import yaml

from agents.agentfile import registry_from_file
from agents.events import (
    CompleteLlmCall,
    CompleteToolCall,
    RequestRejected,
    TurnCompleted,
)
from agents.registry import AgentRegistry
from schemas.codec import decode_request
from streams._partition import APPLIED_HEADER
from streams.partitioning import partition_for
from streams.topics import (
    TOPIC_SPECS,
    TopicNames,
    _admin,
    _alter_configs,
    ensure_topics,
    expected_configs,
)
from tests.support.harness import (
    DATA,
    EventLog,
    InProcessWorker,
    RequestSender,
    lost_inputs,
    read_records,
    read_requests,
    seq_problems,
    user_message,
    wait_until,
)
from turnlog.replay_verify import verify_session

PARTITIONS = 2
SESSIONS = ["ho-a", "ho-b", "ho-c"]


@pytest.fixture
async def names(kafka_bootstrap: str, unique_prefix: str) -> TopicNames:
    return (await ensure_topics(kafka_bootstrap, unique_prefix, partitions=PARTITIONS)).names


def _marked(headers: object) -> bool:
    return any(key == APPLIED_HEADER for key, _ in headers or ())  # type: ignore[attr-defined]


async def test_outcomes_are_decided_in_process_written_once_and_never_decided_again(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    async with (
        RequestSender(kafka_bootstrap, names) as send,
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        async with InProcessWorker(
            kafka_bootstrap, names, partitions=PARTITIONS, sandbox=tmp_path
        ) as process:
            await send.requests(user_message(s, "what is 6*7?", agent="calc") for s in SESSIONS)
            await log.wait_for(
                lambda: all(log.turns_completed(s) == 1 for s in SESSIONS),
                30,
                "every first turn completed",
                diagnose=log.summary,
            )
            handed = process.worker.stats["handed_over"]
        # Two LLM answers and a tool result per turn, all taken in process.
        assert handed == 3 * len(SESSIONS)

        records = await read_records(kafka_bootstrap, names.requests)
        outcomes = [r for r in records if _marked(r.headers)]
        assert len(outcomes) == 3 * len(SESSIONS)
        kinds = sorted(type(decode_request(r.value).payload).__name__ for r in outcomes)
        assert kinds == sorted(["CompleteLlmCall"] * 6 + ["CompleteToolCall"] * 3)
        # (Request ids are unique per session: the scripted tool-call id is not.)
        ids = [
            (decode_request(r.value).session_id, decode_request(r.value).request_id)
            for r in records
        ]
        assert len(ids) == len(set(ids)), "an input written twice"
        for r in outcomes:  # each on its session's partition, which decided it
            assert r.partition == partition_for(decode_request(r.value).session_id, PARTITIONS)
        assert all(
            not _marked(r.headers)
            for r in records
            if not isinstance(decode_request(r.value).payload, CompleteLlmCall | CompleteToolCall)
        )

        # A worker that restores the partitions skips what was decided, and goes on.
        async with InProcessWorker(
            kafka_bootstrap, names, partitions=PARTITIONS, sandbox=tmp_path
        ) as again:
            await send.requests(user_message(s, "and 6*7?", turn=2) for s in SESSIONS)
            await log.wait_for(
                lambda: all(log.turns_completed(s) == 2 for s in SESSIONS),
                30,
                "every second turn completed",
                diagnose=log.summary,
            )
            assert again.worker.stats["handed_over"] == 3 * len(SESSIONS)

    events = log.events
    assert [e for e in events if isinstance(e.payload, RequestRejected)] == []
    assert seq_problems(events) == []
    assert lost_inputs(await read_requests(kafka_bootstrap, names), events) == []
    assert sum(isinstance(e.payload, TurnCompleted) for e in events) == 2 * len(SESSIONS)
    registry: AgentRegistry = registry_from_file(DATA / "agents.toml")
    for s in SESSIONS:
        report = await verify_session(kafka_bootstrap, names, s, registry)
        assert report.divergence is None, report.divergence


async def test_an_outcome_whose_transaction_fails_is_handed_back_and_sent_the_plain_way(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    # The model answers with text the requests topic takes and the events topic, shrunk
    # by an operator, refuses (incompressible: the broker's limit is on the compressed
    # batch): the transaction of the answer's hand-over fails.
    spec = next(s for s in TOPIC_SPECS if s.key == "events")
    admin = _admin(kafka_bootstrap, 30_000)
    await admin.start()
    try:
        shrunk = {**expected_configs(spec), "max.message.bytes": str(256 * 1024)}
        await _alter_configs(admin, names.events, shrunk, 30.0)
    finally:
        await admin.close()
    script = yaml.safe_load((DATA / "calc.script.yaml").read_text(encoding="utf-8"))
    script["rules"][0]["respond"] = {
        "text": base64.b64encode(os.urandom(300_000)).decode(),
        "usage": {"input_tokens": 10, "output_tokens": 10},
    }
    path = tmp_path / "huge.script.yaml"
    path.write_text(yaml.safe_dump(script, sort_keys=False), encoding="utf-8")
    async with (
        RequestSender(kafka_bootstrap, names) as send,
        InProcessWorker(
            kafka_bootstrap, names, partitions=PARTITIONS, sandbox=tmp_path, script=path
        ) as process,
    ):
        await send.request(user_message("ho-huge", "what is 6*7?", agent="calc"))
        await wait_until(lambda: _dead_lettered(kafka_bootstrap, names), 60, "a DLQ record")
        assert process.worker.stats["handed_over"] == 1

    records = await read_records(kafka_bootstrap, names.requests)
    answers = [r for r in records if isinstance(decode_request(r.value).payload, CompleteLlmCall)]
    # Once, unmarked: the marked copy was in the transaction that did not commit.
    assert len(answers) == 1 and not _marked(answers[0].headers)
    dead = await read_records(kafka_bootstrap, names.dlq)
    assert [decode_request(r.value).request_id for r in dead if r.value] == [
        decode_request(answers[0].value).request_id
    ]


async def _dead_lettered(bootstrap: str, names: TopicNames) -> bool:
    return bool(await read_records(bootstrap, names.dlq))
