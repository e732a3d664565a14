"""The session commands (send, approve, deny, cancel, close, fork, events) against the
real stack: `turnlog worker all` as a subprocess on this run's Kafka topics and database,
the commands through the real `turnlog` app. Each test asserts on the command's output
and exit code AND on what it caused: events on the events topic, rows in Postgres."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from agents.events import (
    ApprovalRequested,
    Event,
    SessionForked,
    TurnCancelled,
    TurnCompleted,
    TurnStarted,
)
from schemas.codec import decode_event
from streams.topics import TopicNames, ensure_topics, topic_names
from tests.integration.test_cli_support import WorkerAll, cli, cli_env, json_lines
from tests.support.harness import read_records
from tests.support.projections import wait_until

TIMEOUT = "60"


@dataclass
class Stack:
    env: dict[str, str]
    bootstrap: str
    names: TopicNames
    database_url: str
    worker: WorkerAll


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str,
    database_url: str,
    topic_prefix: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    prefix = f"{topic_prefix}cli{secrets.token_hex(2)}."
    asyncio.run(ensure_topics(kafka_bootstrap, prefix, partitions=4))
    tmp = tmp_path_factory.mktemp("cli")
    env = cli_env(kafka_bootstrap, prefix, database_url, tmp)
    # `send --follow` shows an answer's deltas (checked below): the calls stream, which
    # a call run inline does not (TURNLOG_INLINE_LLM_MS).
    env["TURNLOG_INLINE_LLM_MS"] = "0"
    worker = WorkerAll(env, tmp / "worker-all.log").start()
    try:
        worker.wait_ready()
        yield Stack(env, kafka_bootstrap, topic_names(prefix), database_url, worker)
    finally:
        code = worker.stop()
    assert code == 0, f"worker all did not stop cleanly ({code}):\n{worker.log()[-2000:]}"


def events_of(stack: Stack, session_id: str) -> list[Event]:
    """The session's committed events, read independently of turnlog's client."""
    records = asyncio.run(read_records(stack.bootstrap, stack.names.events))
    events = [decode_event(r.value) for r in records if r.key == session_id.encode()]
    return sorted(events, key=lambda e: e.seq)


def wait_event(stack: Stack, session_id: str, kind: type, what: str) -> Event:
    def found() -> Event | None:
        return next((e for e in events_of(stack, session_id) if isinstance(e.payload, kind)), None)

    event: Event = wait_until(found, 30, what, interval_s=0.2)
    return event


def row(stack: Stack, sql: str, *params: Any) -> dict[str, Any] | None:
    with psycopg.connect(stack.database_url, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchone()


def wait_row(stack: Stack, what: str, sql: str, *params: Any, check: Any = bool) -> dict[str, Any]:
    found: dict[str, Any] = wait_until(
        lambda: (r := row(stack, sql, *params)) is not None and check(r) and r,
        30,
        what,
        interval_s=0.2,
    )
    return found


def header_session(output: str) -> str:
    match = re.search(r"^session (\S+)  request (\S+)$", output, re.MULTILINE)
    assert match, output
    return match.group(1)


def send_follow(stack: Stack, text: str, *extra: str) -> tuple[str, str]:
    result = cli(stack.env, "send", *extra, "--follow", "--timeout", TIMEOUT, text)
    assert result.exit_code == 0, result.output
    return header_session(result.output), result.output


def test_send_follow_streams_progress_and_ends_with_the_answer(stack: Stack) -> None:
    sid, out = send_follow(stack, "what is 17*23?", "--agent", "assistant")

    assert "tool calculator" in out
    assert "calculator" in out and "→ 391" in out
    assert "assistant ▸ Let me calculate that." in out  # streamed from turnlog.deltas
    assert "✓ turn 1 completed" in out
    assert out.rstrip().endswith("17 × 23 = 391.")
    events = events_of(stack, sid)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert sum(isinstance(e.payload, TurnStarted) for e in events) == 1
    assert isinstance(events[-1].payload, TurnCompleted)
    # worker all also projected it.
    projected = wait_row(
        stack,
        "the session projected",
        "SELECT * FROM sessions WHERE session_id = %s",
        sid,
        check=lambda r: r["turns_completed"] == 1,
    )
    assert projected["agent"] == "assistant" and projected["llm_calls"] == 2
    tool = row(stack, "SELECT name, status FROM tool_calls WHERE session_id = %s", sid)
    assert tool == {"name": "calculator", "status": "completed"}


def test_send_json_follow_prints_json_lines_and_continues_a_session(stack: Stack) -> None:
    first = cli(
        stack.env,
        "send",
        "--json",
        "--follow",
        "--agent",
        "assistant",
        "--timeout",
        TIMEOUT,
        "hello there",
    )
    assert first.exit_code == 0, first.output
    outcome = json_lines(first.output)[-1]
    sid = outcome["session_id"]
    assert outcome["status"] == "completed" and outcome["exit_code"] == 0

    second = cli(
        stack.env,
        "send",
        "--json",
        "--follow",
        "--session",
        sid,
        "--timeout",
        TIMEOUT,
        "what is 17*23?",
    )
    assert second.exit_code == 0, second.output
    lines = json_lines(second.output)
    events = [line["event"] for line in lines if line.get("kind") == "event"]
    deltas = [line for line in lines if line.get("kind") == "delta"]
    final = lines[-1]
    assert final["status"] == "completed" and "391" in final["answer"]
    assert final["turn_id"] == f"{sid}:t2"
    assert events[0]["causation_id"] == final["request_id"]
    assert events[0]["payload"]["type"] == "TurnStarted"
    assert events[-1]["payload"]["type"] == "TurnCompleted"
    assert {e["session_id"] for e in events} == {sid}
    assert deltas and "".join(d["text"] for d in deltas).startswith("Let me calculate")
    assert final["last_seq"] == events[-1]["seq"] == len(events_of(stack, sid))


def test_a_request_the_worker_rejects_exits_5_with_the_reason(stack: Stack) -> None:
    result = cli(stack.env, "send", "--agent", "nobody", "--timeout", TIMEOUT, "hi")
    assert result.exit_code == 5, result.output
    assert "rejected" in result.output and "Unknown agent 'nobody'" in result.output


def _awaiting_approval(stack: Stack) -> tuple[str, str]:
    result = cli(
        stack.env,
        "send",
        "--json",
        "--agent",
        "assistant",
        "--timeout",
        TIMEOUT,
        "list the files here",
    )
    assert result.exit_code == 0, result.output
    sid = json_lines(result.output)[-1]["session_id"]
    asked = wait_event(stack, sid, ApprovalRequested, "the approval request")
    assert isinstance(asked.payload, ApprovalRequested)
    return sid, asked.payload.call_id


def test_approve_lets_the_tool_run_and_the_turn_finish(stack: Stack) -> None:
    sid, call_id = _awaiting_approval(stack)
    shown = cli(stack.env, "events", sid)
    assert f"turnlog approve {sid} {call_id}" in shown.output  # the prompt names the command

    result = cli(
        stack.env, "approve", sid, call_id, "--by", "tester", "--follow", "--timeout", TIMEOUT
    )
    assert result.exit_code == 0, result.output
    assert "approved by tester" in result.output
    assert "notes.txt" in result.output  # the shell ran, in the worker's sandbox
    assert "completed" in result.output
    approval = wait_row(
        stack,
        "the approval projected",
        "SELECT * FROM approvals WHERE session_id = %s AND call_id = %s",
        sid,
        call_id,
        check=lambda r: r["outcome"] == "granted",
    )
    assert approval["decided_by"] == "tester"

    again = cli(stack.env, "approve", sid, call_id, "--timeout", TIMEOUT)
    assert again.exit_code == 5, again.output
    assert "is idle: DecideApproval is not accepted" in again.output


def test_deny_tells_the_model_and_the_turn_goes_on(stack: Stack) -> None:
    sid, call_id = _awaiting_approval(stack)
    result = cli(
        stack.env, "deny", sid, call_id, "--reason", "not today", "--follow", "--timeout", TIMEOUT
    )
    assert result.exit_code == 0, result.output
    assert "denied by cli" in result.output and "not today" in result.output
    assert "I could not list the files" in result.output
    approval = wait_row(
        stack,
        "the denial projected",
        "SELECT * FROM approvals WHERE session_id = %s AND call_id = %s",
        sid,
        call_id,
        check=lambda r: r["outcome"] == "denied",
    )
    assert approval["reason"] == "not today"


def test_cancel_then_close_then_nothing_is_accepted(stack: Stack) -> None:
    sid, _ = _awaiting_approval(stack)
    cancelled = cli(stack.env, "cancel", sid, "--reason", "changed my mind", "--timeout", TIMEOUT)
    assert cancelled.exit_code == 0, cancelled.output
    assert "cancelled" in cancelled.output and "changed my mind" in cancelled.output
    assert any(isinstance(e.payload, TurnCancelled) for e in events_of(stack, sid))

    nothing = cli(stack.env, "cancel", sid, "--json", "--timeout", TIMEOUT)
    assert nothing.exit_code == 5
    assert json_lines(nothing.output)[-1]["status"] == "rejected"

    closed = cli(stack.env, "close", sid, "--reason", "done", "--timeout", TIMEOUT)
    assert closed.exit_code == 0, closed.output
    assert "closed" in closed.output
    after = cli(stack.env, "send", "--session", sid, "--timeout", TIMEOUT, "hello?")
    assert after.exit_code == 5 and "is closed" in after.output
    wait_row(
        stack,
        "the session closed in the projection",
        "SELECT status FROM sessions WHERE session_id = %s",
        sid,
        check=lambda r: r["status"] == "closed",
    )


def test_fork_starts_a_live_session_whose_branch_shares_the_prefix(stack: Stack) -> None:
    sid, _ = send_follow(stack, "what is 17*23?", "--agent", "assistant")
    source_events = events_of(stack, sid)
    at = source_events[-1].seq  # the end of turn 1

    forked = cli(stack.env, "fork", sid, "--at", str(at), "--json", "--timeout", TIMEOUT)
    assert forked.exit_code == 0, forked.output
    outcome = json_lines(forked.output)[-1]
    assert outcome["status"] == "forked"
    new = outcome["session_id"]
    assert new != sid
    first = events_of(stack, new)[0]
    assert isinstance(first.payload, SessionForked) and first.seq == at + 1
    assert (first.payload.source_session_id, first.payload.at_seq) == (sid, at)

    _, out = send_follow(stack, "research who created Apache Kafka", "--session", new)
    assert "delegated to agent researcher" in out and "Jay Kreps" in out
    assert events_of(stack, sid) == source_events  # the original is untouched

    wait_row(
        stack,
        "the fork projected",
        "SELECT turns_completed FROM sessions WHERE session_id = %s",
        new,
        check=lambda r: r["turns_completed"] == 1,
    )
    with psycopg.connect(stack.database_url) as conn:
        branch = conn.execute("SELECT session_id, seq FROM branch_entries(%s)", (new,)).fetchall()
        source = conn.execute(
            "SELECT session_id, seq FROM entries WHERE session_id = %s ORDER BY seq", (sid,)
        ).fetchall()
    inherited = [r for r in branch if r[0] == sid]
    own = [r for r in branch if r[0] == new]
    assert inherited == source  # the whole of turn 1, shared, not copied
    assert own and all(seq > at for _, seq in own)
    assert branch == inherited + own


def test_events_prints_the_session_log_in_seq_order(stack: Stack) -> None:
    sid, _ = send_follow(stack, "what is 17*23?", "--agent", "assistant")
    result = cli(stack.env, "events", sid, "--json")
    assert result.exit_code == 0, result.output
    events = [line["event"] for line in json_lines(result.output)]
    assert [e["seq"] for e in events] == list(range(1, len(events_of(stack, sid)) + 1))
    assert events[0]["payload"]["type"] == "SessionStarted"
    text = cli(stack.env, "events", sid, "--from", "3")
    assert text.output.lstrip().startswith("#3") and "user: what is 17*23?" in text.output


def test_without_a_worker_the_wait_times_out_with_exit_6(
    stack: Stack, kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = f"{stack.names.requests.split('turnlog.')[0]}idle."
    asyncio.run(ensure_topics(kafka_bootstrap, prefix, partitions=4))
    env = {**stack.env, "TURNLOG_TOPIC_PREFIX": prefix}
    result = cli(env, "send", "--agent", "assistant", "--timeout", "1", "anyone?")
    assert result.exit_code == 6, result.output
    assert "Is a session worker running" in result.output
    sent = cli(env, "send", "--agent", "assistant", "--no-wait", "--json", "anyone?")
    assert sent.exit_code == 0 and json.loads(sent.output)["status"] == "sent"


def test_a_missing_session_is_exit_1_within_about_a_second_for_replay_events_and_show(
    stack: Stack,
) -> None:
    for command in ("replay", "events", "show"):
        began = time.monotonic()
        result = cli(stack.env, command, "s-nobody-here")
        took = time.monotonic() - began
        assert result.exit_code == 1, (command, result.output)
        message = str(result.exception)
        assert message.startswith("Session s-nobody-here has no "), (command, message)
        # "About a second" (replay took 10.5 s when it waited for the topic): 5 s is a
        # generous bound for a loaded machine, well below that.
        assert took < 5, f"{command} of a missing session took {took:.1f} s"
    shown = cli(stack.env, "show", "s-nobody-here")
    assert "`turnlog events s-nobody-here` reads its log from Kafka" in str(shown.exception)


def test_events_from_past_the_end_is_an_error_naming_the_last_seq(stack: Stack) -> None:
    sid, _ = send_follow(stack, "what is 17*23?", "--agent", "assistant")
    last = events_of(stack, sid)[-1].seq
    result = cli(stack.env, "events", sid, "--from", str(last + 1))
    assert result.exit_code == 1
    assert str(result.exception) == (
        f"Session {sid} has events up to seq {last}; --from {last + 1} is past its end."
    )
    tail = cli(stack.env, "events", sid, "--from", str(last), "--json")
    assert tail.exit_code == 0, tail.output
    assert [line["event"]["seq"] for line in json_lines(tail.output)] == [last]


def test_forking_an_unknown_session_says_it_does_not_exist(stack: Stack) -> None:
    result = cli(stack.env, "fork", "s-no-such-source", "--at", "3", "--timeout", TIMEOUT)
    assert result.exit_code == 5, result.output
    assert "the source session does not exist" in result.output
    assert "shell must fold" not in result.output


def test_send_follow_waiting_on_an_approval_says_what_it_waits_for(stack: Stack) -> None:
    # The scripted shell call needs approval; nobody grants it, so --follow runs out of
    # time. The message names the pending approval and the commands that answer it,
    # not a missing worker (the worker is running).
    result = cli(
        stack.env,
        "send",
        "--agent",
        "assistant",
        "--follow",
        "--timeout",
        "10",
        "list the files here",
    )
    assert result.exit_code == 6, result.output
    sid = header_session(result.output)
    asked = wait_event(stack, sid, ApprovalRequested, "the approval request")
    assert isinstance(asked.payload, ApprovalRequested)
    call_id = asked.payload.call_id
    assert (
        f"The turn is waiting for approval of tool call {call_id} (shell, asked at seq {asked.seq}"
    ) in result.output
    assert f"`turnlog approve {sid} {call_id}`" in result.output
    assert f"`turnlog deny {sid} {call_id} --reason ...`" in result.output
    assert "Is a session worker running" not in result.output
