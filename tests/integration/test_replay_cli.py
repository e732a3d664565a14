"""`turnlog replay` against the real stack: timeline, time travel (--to), export and
replay from the file, --verify on real sessions (plain and forked) — and --verify
reporting the divergence when the recorded log is altered (a tampered copy of a real
session's inputs and events, written to scratch topics and replayed from there)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from agents.events import ApprovalRequested, Event, ToolCallCompleted
from schemas.codec import decode_event, encode_event
from streams.partitioning import partition_for
from streams.topics import TopicNames, ensure_topics, topic_names
from tests.integration.test_cli_support import WorkerAll, cli, cli_env, json_lines
from tests.support.harness import read_records

TIMEOUT = "60"


@dataclass
class Stack:
    env: dict[str, str]
    bootstrap: str
    names: TopicNames
    prefix: str


@dataclass
class Session:
    id: str
    events: list[Event]


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str,
    database_url: str,
    topic_prefix: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    prefix = f"{topic_prefix}rp{secrets.token_hex(2)}."
    asyncio.run(ensure_topics(kafka_bootstrap, prefix, partitions=4))
    tmp = tmp_path_factory.mktemp("replay")
    env = cli_env(kafka_bootstrap, prefix, database_url, tmp)
    worker = WorkerAll(env, tmp / "worker-all.log").start()
    try:
        worker.wait_ready()
        yield Stack(env, kafka_bootstrap, topic_names(prefix), prefix)
    finally:
        worker.stop()


def events_of(stack: Stack, session_id: str) -> list[Event]:
    records = asyncio.run(read_records(stack.bootstrap, stack.names.events))
    return sorted(
        (decode_event(r.value) for r in records if r.key == session_id.encode()),
        key=lambda e: e.seq,
    )


def _ok(result: object) -> str:
    out = getattr(result, "output", "")
    assert getattr(result, "exit_code", 1) == 0, out
    return str(out)


@pytest.fixture(scope="module")
def session(stack: Stack) -> Session:
    """Two turns: a calculator call, then a shell call that needs (and gets) approval."""
    out = _ok(
        cli(
            stack.env,
            "send",
            "--json",
            "--follow",
            "--agent",
            "assistant",
            "--timeout",
            TIMEOUT,
            "what is 17*23?",
        )
    )
    sid = json_lines(out)[-1]["session_id"]
    _ok(
        cli(
            stack.env,
            "send",
            "--json",
            "--session",
            sid,
            "--timeout",
            TIMEOUT,
            "list the files here",
        )
    )
    asyncio.run(_wait_for_approval(stack, sid))
    call = next(
        e.payload for e in events_of(stack, sid) if isinstance(e.payload, ApprovalRequested)
    )
    _ok(cli(stack.env, "approve", sid, call.call_id, "--follow", "--timeout", TIMEOUT))
    return Session(sid, events_of(stack, sid))


async def _wait_for_approval(stack: Stack, sid: str) -> None:
    from tests.support.harness import wait_until

    async def asked() -> bool:
        records = await read_records(stack.bootstrap, stack.names.events)
        return any(
            r.key == sid.encode() and isinstance(decode_event(r.value).payload, ApprovalRequested)
            for r in records
        )

    await wait_until(asked, 30, "the approval request")


def test_replay_prints_the_timeline_folded_from_kafka(stack: Stack, session: Session) -> None:
    out = _ok(cli(stack.env, "replay", session.id))
    assert f"session {session.id} · {len(session.events)} own events" in out
    assert "idle → awaiting_llm" in out
    assert "awaiting_llm → awaiting_approval" in out
    assert "awaiting_approval → awaiting_tools" in out
    assert "← scripted-small answered in" in out and "tokens · $0." in out
    assert "tool calculator" in out and "approved by cli" in out
    assert "2 turn(s) (2 completed) · 4 LLM call(s)" in out
    assert "1 approval(s)" in out
    for e in session.events:  # every event has its row
        assert f"  {e.seq:>5}  " in out


def test_replay_to_shows_the_state_at_that_event(stack: Stack, session: Session) -> None:
    asked = next(e for e in session.events if isinstance(e.payload, ApprovalRequested))
    data = json.loads(_ok(cli(stack.env, "replay", session.id, "--to", str(asked.seq), "--json")))
    assert data["timeline"][-1]["seq"] == asked.seq
    state = data["state"]
    assert state["last_seq"] == asked.seq and state["phase"] == "awaiting_approval"
    assert [(c["name"], c["status"]) for c in state["pending_tool_calls"]] == [
        ("shell", "approval")
    ]
    assert state["turn"]["turn_no"] == 2
    assert [w["kind"] for w in state["window"]][:2] == ["user", "assistant"]

    text = _ok(cli(stack.env, "replay", session.id, "--to", str(asked.seq), "--no-timeline"))
    assert f"state of {session.id} after seq {asked.seq} (ApprovalRequested)" in text
    assert "phase      awaiting_approval" in text


def test_export_writes_json_lines_that_replay_reads_back(
    stack: Stack, session: Session, tmp_path: Path
) -> None:
    path = tmp_path / "log.jsonl"
    live = json.loads(_ok(cli(stack.env, "replay", session.id, "--json", "--export", str(path))))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [d["seq"] for d in lines] == [e.seq for e in session.events]
    assert lines[0]["payload"]["type"] == "SessionStarted"
    offline = json.loads(
        _ok(
            cli(
                {**stack.env, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
                "replay",
                "--from-file",
                str(path),
                "--json",
            )
        )
    )
    assert offline["totals"] == live["totals"]
    assert offline["state"] == live["state"]


def test_verify_re_decides_every_input_and_finds_no_divergence(
    stack: Stack, session: Session
) -> None:
    report = json.loads(
        _ok(cli(stack.env, "replay", session.id, "--verify", "--json", "--no-timeline"))
    )["verify"]
    assert report["ok"] is True and report["divergence"] is None
    assert report["events_matched"] == len(session.events)
    assert report["unverified_events"] == 0
    assert report["llm_requests_checked"] == 4
    assert report["decisions_checked"] >= 8  # 2 sends, 4 LLM outcomes, 2 tools, 1 approval
    text = _ok(cli(stack.env, "replay", session.id, "--verify", "--no-timeline"))
    assert "verify: OK" in text


async def _copy_tampered(
    stack: Stack, session: Session, scratch: TopicNames, seq: int, tamper: object
) -> None:
    """The session's inputs and events, copied to the scratch topics (same partition),
    with the event at `seq` replaced by tamper(event)."""
    p = partition_for(session.id, 4)
    key = session.id.encode()
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
    await producer.start()
    try:
        for rec in await read_records(stack.bootstrap, stack.names.requests):
            if rec.key == key:
                await producer.send_and_wait(scratch.requests, rec.value, key=key, partition=p)
        for e in session.events:
            changed = tamper(e) if e.seq == seq else e  # type: ignore[operator]
            await producer.send_and_wait(
                scratch.events, encode_event(changed), key=key, partition=p
            )
    finally:
        await producer.stop()


def test_verify_reports_the_first_divergence_of_an_altered_log(
    stack: Stack, session: Session
) -> None:
    done = next(e for e in session.events if isinstance(e.payload, ToolCallCompleted))
    assert isinstance(done.payload, ToolCallCompleted) and done.payload.result == "391"
    scratch_prefix = f"{stack.prefix}tampered{secrets.token_hex(2)}."
    scratch = asyncio.run(ensure_topics(stack.bootstrap, scratch_prefix, partitions=4)).names

    def tamper(e: Event) -> Event:
        assert isinstance(e.payload, ToolCallCompleted)
        return dataclasses.replace(e, payload=dataclasses.replace(e.payload, result="392"))

    asyncio.run(_copy_tampered(stack, session, scratch, done.seq, tamper))
    env = {**stack.env, "TURNLOG_TOPIC_PREFIX": scratch_prefix}

    result = cli(env, "replay", session.id, "--verify", "--json", "--no-timeline")
    assert result.exit_code == 1, result.output
    d = json.loads(result.output)["verify"]["divergence"]
    # The calculator is an inline tool: its outcome has no record on the requests topic
    # and is rebuilt from the (altered) event itself; the first decision that differs is
    # the next LLM call, whose request carried the result the log no longer holds.
    assert d["kind"] == "event" and d["seq"] == done.seq + 1, d
    assert d["request_type"] == "CompleteToolCall"
    assert d["recorded"]["payload"]["call_id"] == d["expected"]["payload"]["call_id"]
    assert "payload.request_digest" in d["fields"], d["fields"]

    text = cli(env, "replay", session.id, "--verify", "--no-timeline")
    assert text.exit_code == 1
    assert f"verify: DIVERGENCE at seq {done.seq + 1} (event)" in text.output


def test_verify_of_a_fork_folds_its_ancestry_and_a_changed_agent_file_diverges(
    stack: Stack, session: Session, tmp_path: Path
) -> None:
    at = next(e.seq for e in session.events if type(e.payload).__name__ == "TurnCompleted")
    forked = json_lines(
        _ok(cli(stack.env, "fork", session.id, "--at", str(at), "--json", "--timeout", TIMEOUT))
    )[-1]["session_id"]
    _ok(
        cli(
            stack.env,
            "send",
            "--session",
            forked,
            "--follow",
            "--timeout",
            TIMEOUT,
            "what is 17*23?",
        )
    )
    out = _ok(cli(stack.env, "replay", forked, "--verify"))
    assert f"(+{at} inherited: forked from {session.id} at seq {at})" in out
    assert "verify: OK" in out
    assert "|     1  " in out  # the inherited rows are marked

    other = cli(
        stack.env,
        "replay",
        session.id,
        "--verify",
        "--no-timeline",
        "--agents",
        "examples/agents.toml",
    )
    # The deploy question: a file whose differences decide nothing differently for this
    # session verifies OK (hash-only changes are not reported) ...
    assert other.exit_code == 0, other.output
    assert "decided again with the agent file given" in other.output
    assert "verify: OK" in other.output
    # ... and one that changes what the model is sent diverges at that decision.
    changed = tmp_path / "changed.toml"
    changed.write_text(
        Path("examples/agents.toml")
        .read_text()
        .replace("You are a careful, concise assistant.", "You are a sloppy, verbose assistant.", 1)
    )
    moved = cli(
        stack.env, "replay", session.id, "--verify", "--no-timeline", "--agents", str(changed)
    )
    assert moved.exit_code == 1, moved.output
    assert "DIVERGENCE" in moved.output and "system_prompt_hash" in moved.output
    assert "definition_hash" not in moved.output.split("DIVERGENCE", 1)[1]


def test_replay_of_an_unknown_session_says_so_within_about_a_second(stack: Stack) -> None:
    began = time.monotonic()
    result = cli(stack.env, "replay", "s-nobody")
    took = time.monotonic() - began
    assert result.exit_code == 1
    assert "Session s-nobody has no events" in str(result.exception)
    # "About a second" (it took 10.5 s when it waited for the topic): 5 s is a generous
    # bound for a loaded machine, far below the old wait.
    assert took < 5, f"replay of a missing session took {took:.1f} s"


def test_replay_to_past_the_end_is_an_error_naming_the_last_seq(
    stack: Stack, session: Session
) -> None:
    last = session.events[-1].seq
    result = cli(stack.env, "replay", session.id, "--to", str(last + 100))
    assert result.exit_code == 1
    assert (
        f"Session {session.id} has events up to seq {last}; --to {last + 100} is past its end."
    ) == str(result.exception)
    at_end = cli(stack.env, "replay", session.id, "--to", str(last), "--json")
    assert at_end.exit_code == 0, at_end.output
    assert json.loads(at_end.output)["state"]["last_seq"] == last
