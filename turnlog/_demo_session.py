"""The steps of `turnlog demo` (see turnlog.demo): set up, converse, show, verify.

Rule: the demo uses only public surfaces — turnlog.dev, ensure_topics, migrate, the
`turnlog.Client`, the projection queries and the audit verifier — so what it shows is
what a user gets. It prints its progress as it goes and fails loudly (DemoFailed) when
a step does not do what it should; it never hides a failure to finish "green".
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from agents.errors import ExternalError
from agents.events import (
    ApprovalRequested,
    ChildSessionRequested,
    ContextCompacted,
    Event,
    TokenDelta,
    ToolCallRequested,
    TurnCompleted,
)

__all__ = ["TURNS", "DemoFailed", "narrate_to_stderr", "prepare", "run_demo"]


def _notes_path() -> Path:
    from turnlog.demo import EXAMPLES

    return EXAMPLES / "demo_notes.md"


def _turns() -> tuple[str, ...]:
    path = _notes_path()
    notes = path.read_text(encoding="utf-8") if path.exists() else "(no notes found)"
    return (
        "what is 17*23?",
        "list the files here",
        "research who created Apache Kafka",
        "Please keep these design notes in mind for later:\n\n" + notes,
    )


TURNS = _turns()


class DemoFailed(ExternalError):
    """A step of the demo did not do what it should; the message says which and why."""


_to_stderr = False


def narrate_to_stderr() -> None:
    """`turnlog demo --json`: the walkthrough goes to stderr, stdout holds the result."""
    global _to_stderr
    _to_stderr = True


def echo(text: str = "") -> None:
    typer.echo(text, err=_to_stderr)


def step(n: int, text: str) -> None:
    typer.secho(f"\n[{n}/6] {text}", bold=True, err=_to_stderr)


def prepare(settings: Any, agents_path: Path, models: str) -> None:
    """Steps 1-2 (synchronous): infrastructure, topics, tables."""
    from projections.migrate import migrate
    from streams.topics import ensure_topics
    from turnlog import dev
    from turnlog.dev import _kafka, _postgres

    echo("turnlog demo — one agent session on Kafka + Postgres, end to end")
    step(1, "infrastructure")
    bootstrap, url = settings.kafka_bootstrap_servers, settings.database_url
    kafka_ok = _kafka.probe(bootstrap, timeout=3.0) is not None
    pg_ok = _postgres.probe(url) is not None
    if not (kafka_ok and pg_ok):
        local = bootstrap == f"127.0.0.1:{settings.dev_kafka_port}" and url == _postgres.url(
            settings
        )
        if not local:
            missing = " and ".join(
                what
                for what, ok in (
                    (f"Kafka at {bootstrap} (KAFKA_BOOTSTRAP_SERVERS)", kafka_ok),
                    ("PostgreSQL at DATABASE_URL", pg_ok),
                )
                if not ok
            )
            raise DemoFailed(
                f"{missing} does not answer. Start it, or unset the variable to "
                f"let the demo start the local infrastructure."
            )
        echo(
            "  starting a local Kafka broker and PostgreSQL (`turnlog dev up`; the first "
            "time Maven downloads the Kafka jars) ..."
        )
        began = time.monotonic()
        result = dev.ensure_up(settings)
        echo(
            f"  started {', '.join(result.started) or 'nothing'} in "
            f"{time.monotonic() - began:.1f} s"
        )
    echo(f"  Kafka {bootstrap} ✓   PostgreSQL {_redact(url)} ✓")
    step(2, "topics and tables")
    report = asyncio.run(
        ensure_topics(
            bootstrap,
            settings.topic_prefix,
            settings.partitions,
            replication_factor=settings.replication_factor,
        )
    )
    applied = migrate(url)
    echo(
        f"  topics: {len(report.created)} created, {len(report.unchanged)} already there "
        f"({report.names.requests}, {report.names.events}, ...)"
    )
    echo(f"  tables: {', '.join(applied) if applied else 'up to date'}")
    step(3, "workers")
    echo(
        f"  session worker + effect runner + projector in this process (= `turnlog worker "
        f"all`)\n  agents {_shown(agents_path)} · models: {models}"
    )


def _redact(url: str) -> str:
    import re

    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:****@", url)


@dataclass
class _Seen:
    tool_calls: list[str] = field(default_factory=list)
    approvals: int = 0
    children: list[str] = field(default_factory=list)
    compactions: int = 0
    last_seq: int = 0
    first_turn_end: int = 0


async def _converse(client: Any, session_id: str, timeout: float) -> _Seen:
    from turnlog._render import LiveRenderer, oneline

    seen = _Seen()
    renderer = LiveRenderer(echo)

    async def on_item(item: Event | TokenDelta) -> None:
        renderer(item)
        if isinstance(item, TokenDelta):
            return
        seen.last_seq = max(seen.last_seq, item.seq)
        p = item.payload
        if isinstance(p, ToolCallRequested):
            seen.tool_calls.append(p.name)
        elif isinstance(p, ChildSessionRequested):
            seen.children.append(p.child_session_id)
        elif isinstance(p, ContextCompacted):
            seen.compactions += 1
        elif isinstance(p, TurnCompleted) and not seen.first_turn_end:
            seen.first_turn_end = item.seq
        elif isinstance(p, ApprovalRequested):
            seen.approvals += 1
            echo(
                f"  demo ▸ granting it, as `turnlog approve {session_id} {p.call_id} --by demo`"
                f" would"
            )
            await client.approve(session_id, p.call_id, by="demo", reason="demo auto-grant")

    for n, text in enumerate(TURNS):
        echo(f"\n  you ▸ {oneline(text, 90)}")
        sent = await client.send_message(
            text, agent="assistant" if n == 0 else None, session_id=session_id
        )
        outcome = await client.outcome(sent, timeout=timeout, on_item=on_item)
        if outcome.status != "completed":
            raise DemoFailed(
                f"Turn {n + 1} of session {session_id} ended {outcome.status}: {outcome.reason}"
            )
    return seen


async def _wait_child(client: Any, child: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        rows = await client.query(
            "SELECT turns_completed + turns_failed + turns_cancelled AS ended FROM sessions "
            "WHERE session_id = %s",
            (child,),
        )
        if rows and rows[0]["ended"] >= 1:
            return
        if time.monotonic() > deadline:
            raise DemoFailed(f"Child session {child} was not projected within {timeout:g} s.")
        await asyncio.sleep(0.1)


def _show(url: str, session_id: str, children: list[str]) -> list[dict[str, Any]]:
    from projections.queries import costs, show_session
    from turnlog._render import oneline

    shown = show_session(url, session_id)
    echo(f"  conversation of {session_id} (`turnlog show {session_id}`):")
    for e in shown["entries"]:
        label = e["kind"] + (f" {e['tool_name']}" if e["tool_name"] else "")
        echo(f"    {e['seq']:>4}  {label:<20} {oneline(e['content'], 80)}")
    wanted = {session_id, *children}
    rows = [r for r in costs(url, "session") if r["session_id"] in wanted]
    echo("\n  costs (`turnlog costs --by session`, children rolled up into their parent):")
    echo(f"    {'session':<44} {'agent':<11} {'LLM calls':>9} {'own USD':>10} {'total USD':>10}")
    for r in rows:
        echo(
            f"    {r['session_id']:<44} {r['agent']:<11} {r['priced_calls']:>9} "
            f"{r['own_usd']:>10.6f} {r['total_usd']:>10.6f}"
        )
    return rows


async def run_demo(
    settings: Any, workers: Any, *, timeout: float, keep_running: bool
) -> dict[str, Any]:
    """Steps 4-6, with the workers running; returns what `turnlog demo --json` prints."""
    from projections.audit import read_checkpoints, verify_audit_log
    from turnlog.client import Client, new_session_id

    partitions = sorted(workers.session.worker.owned_partitions())
    echo(f"  ready: this process owns partitions {partitions} of the requests topic")
    session_id = new_session_id()
    step(4, f"a session with agent 'assistant': {session_id}")
    async with Client.from_settings(settings) as client:
        seen = await _converse(client, session_id, timeout)
        step(5, "projections (Postgres)")
        await client.wait_projected(session_id, seen.last_seq, timeout=60)
        for child in seen.children:
            await _wait_child(client, child, 60)
    cost_rows = await asyncio.to_thread(_show, settings.database_url, session_id, seen.children)

    step(6, "audit log (`turnlog audit verify`)")
    from streams.topics import topic_names

    published = await read_checkpoints(
        settings.kafka_bootstrap_servers, topic_names(settings.topic_prefix).checkpoints
    )
    report = await asyncio.to_thread(verify_audit_log, settings.database_url, published)
    if not report.ok:
        raise DemoFailed(f"audit log BROKEN at {report.broken}")
    echo(
        f"  audit log intact: {report.rows} rows hash-chained, head "
        f"{report.head.head_hash[:16]}…, {report.checkpoints_matched}/{report.checkpoints} "
        f"published checkpoints match"
    )

    checks = [
        ("tool call (calculator)", "calculator" in seen.tool_calls),
        ("approval (shell), shown then granted", seen.approvals > 0),
        ("delegation to the researcher", bool(seen.children)),
        ("context compaction", seen.compactions > 0),
    ]
    echo("\n  " + "   ".join(f"{'✓' if ok else '✗'} {what}" for what, ok in checks))
    at = seen.first_turn_end
    echo(f"""
Try next (the session stays in Kafka and Postgres):
  turnlog show {session_id}            the conversation graph, from Postgres
  turnlog replay {session_id}          the timeline, folded from Kafka (no LLM called)
  turnlog replay {session_id} --to {at}    the state after turn 1 (time travel)
  turnlog replay {session_id} --verify --agents {_shown(Path(settings.agents))}
  turnlog fork {session_id} --at {at}      a new live session sharing seqs 1..{at}
  turnlog worker all  +  turnlog send --agent assistant "what is 17*23?" --follow""")
    missing = [what for what, ok in checks if not ok]
    if missing:
        raise DemoFailed(f"the session did not show: {', '.join(missing)}.")
    summary = {
        "session_id": session_id,
        "children": seen.children,
        "turns": len(TURNS),
        "last_seq": seen.last_seq,
        "checks": dict(checks),
        "costs": cost_rows,
        "audit": {
            "rows": report.rows,
            "head_hash": report.head.head_hash,
            "checkpoints": report.checkpoints,
            "checkpoints_matched": report.checkpoints_matched,
        },
    }
    if keep_running:
        echo("\nThe workers keep running; Ctrl-C stops them.")
        await workers.stop_event.wait()
    return summary


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the current directory if inside."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
