"""`turnlog replay SESSION [--to SEQ] [--verify] [--export FILE]`.

Rule: the command only reads (Kafka, or an exported file) and prints; the work is in
turnlog.replay (fold + timeline) and turnlog.replay_verify (re-decide). Exit code 0, or 1
when --verify finds a divergence (as `turnlog audit verify` does for a broken chain).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["register", "replay_command"]


def _print_timeline(result: Any) -> None:
    rows = result.rows
    if not rows:
        return
    t0 = rows[0].occurred_at
    typer.echo(f"  {'seq':>5}  {'+time':>9}  {'phase':<37} event")
    for row in rows:
        phase = (
            row.phase_after
            if row.phase_before == row.phase_after
            else (f"{row.phase_before} → {row.phase_after}")
        )
        mark = "|" if row.inherited else " "
        offset = (row.occurred_at - t0).total_seconds()
        lines = row.text.split("\n")
        typer.echo(f"{mark} {row.seq:>5}  {offset:>8.3f}s  {phase:<37} {lines[0]}")
        for extra in lines[1:]:
            typer.echo(f"{mark} {'':>5}  {'':>9}  {'':<37} {extra.strip()}")


def _print_totals(result: Any) -> None:
    t = result.totals
    turns = f"{t.turns} turn(s) ({t.turns_completed} completed"
    turns += f", {t.turns_failed} failed" if t.turns_failed else ""
    turns += f", {t.turns_cancelled} cancelled" if t.turns_cancelled else ""
    typer.echo(
        f"\n{turns}) · {t.llm_calls} LLM call(s), {t.tokens} tokens (in {t.input_tokens} / "
        f"out {t.output_tokens} / cache {t.cache_read_tokens}+{t.cache_write_tokens}), "
        f"${t.cost_nanos / 1e9:.6f}, {t.llm_latency_ms} ms in LLM calls · {t.tool_calls} "
        f"tool call(s) · {t.approvals} approval(s) · {t.compactions} compaction(s)"
    )


def _print_state(result: Any) -> None:
    from turnlog._render import oneline

    s = result.state
    last = result.last_event
    what = f" ({type(last.payload).__name__})" if last is not None else ""
    typer.echo(f"\nstate of {s.session_id} after seq {s.last_seq}{what}:")
    turn = s.turn
    typer.echo(f"  phase      {s.phase.value}")
    typer.echo(f"  agent      {s.agent} (definition {s.definition_hash[:12]})")
    if s.model:
        typer.echo(f"  model      {s.model} (switched; the agent's fallbacks after it)")
    if turn is not None:
        typer.echo(
            f"  turn       {turn.turn_no} ({turn.turn_id}), {turn.iteration} LLM call(s) "
            f"so far, ${turn.cost_nanos / 1e9:.6f}"
        )
        if turn.llm is not None:
            r = turn.llm.request
            typer.echo(
                f"  pending    {r.purpose} LLM call {r.call_id} to {r.model} "
                f"(attempt {turn.llm.attempt}, deadline {turn.llm.deadline_at:%H:%M:%S})"
            )
        for c in turn.calls:
            typer.echo(
                f"  pending    {c.status} {c.name} {c.call_id} {oneline(c.arguments_json, 60)}"
            )
    elif s.last_turn is not None:
        typer.echo(f"  last turn  {s.last_turn.turn_no} {s.last_turn.outcome}")
    for n, q in enumerate(s.queue, 1):
        typer.echo(
            f"  queued     (position {n}) request {q.request_id} at seq {q.seq}: "
            f"{oneline(q.text, 60)}"
        )
    typer.echo(f"  spent      {s.spent_tokens} tokens, ${s.spent_nanos / 1e9:.6f}")
    entries = list(_window(s))
    typer.echo(f"  window     {len(entries)} entries, about {s.history.window_tokens} tokens")
    kinds = {"u": "user", "a": "assistant", "t": "tool call", "r": "tool result", "s": "summary"}
    for e in entries:
        label = kinds.get(e.kind, e.kind) + (f" {e.name}" if e.kind == "t" else "")
        extra = ""
        if e.blocks:
            extra = (
                " · attached " + ", ".join(a.name or a.sha256[:12] for a in e.blocks)
                if e.kind == "u"
                else f" · {len(e.blocks)} thinking block(s)"
            )
        typer.echo(f"    #{e.seq:<5} {label:<18} {oneline(e.text, 90)}{extra}")


def _window(state: Any) -> Any:
    from agents.state import window_entries

    return window_entries(state.history)


def _print_verify(report: Any) -> None:
    for note in report.notes:
        typer.echo(f"note: {note}")
    unverified = (
        f", {report.unverified_events} event(s) unverified (their inputs are no "
        f"longer on the requests topic)"
        if report.unverified_events
        else ""
    )
    if report.ok:
        typer.echo(
            f"verify: OK · {report.decisions_checked} input(s) re-decided, "
            f"{report.events_matched} event(s) identical, {report.llm_requests_checked} LLM "
            f"request(s) rebuilt with the recorded digest{unverified}"
        )
        return
    d = report.divergence
    typer.echo(
        f"verify: DIVERGENCE at seq {d.seq} ({d.kind}) · input {d.request_id} ({d.request_type})"
    )
    typer.echo(f"  {d.message}")
    if d.fields:
        typer.echo(f"  fields that differ: {', '.join(d.fields)}")
    for label, value in (("expected (current code)", d.expected), ("recorded (log)", d.recorded)):
        if value is not None:
            typer.echo(f"  {label}: {json.dumps(value.get('payload', value), ensure_ascii=False)}")
    typer.echo(f"  ({report.decisions_checked} input(s) agreed before it{unverified})")


def replay_command(
    session: Annotated[str | None, typer.Argument(help="The session id.")] = None,
    to: Annotated[
        int | None, typer.Option("--to", min=1, help="Stop at this seq; show the state there.")
    ] = None,
    verify: Annotated[
        bool, typer.Option("--verify", help="Re-decide every recorded input with this code.")
    ] = False,
    export: Annotated[
        Path | None, typer.Option("--export", help="Write the log as JSON lines to FILE.")
    ] = None,
    from_file: Annotated[
        Path | None, typer.Option("--from-file", help="Replay an exported log, not Kafka.")
    ] = None,
    agents: Annotated[
        Path | None, typer.Option(help="Agent file for --verify (default TURNLOG_AGENTS).")
    ] = None,
    timeline: Annotated[bool, typer.Option(help="Print the timeline.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Fold a session's log from Kafka through the FSM and print its timeline (phase
    changes, LLM calls with tokens/cost/latency, tools, approvals, compactions). No LLM
    is called. --to SEQ: the state at that event. --verify: re-decide every recorded
    input (from turnlog.requests) and report the first divergence."""
    from streams.topics import topic_names
    from turnlog.replay import load_jsonl, load_session_log, replay, state_summary
    from turnlog.settings import load_settings

    if session is None and from_file is None:
        raise typer.BadParameter("give a SESSION id (or --from-file)", param_hint="SESSION")
    if verify and from_file is not None:
        raise typer.BadParameter(
            "--verify reads the inputs from Kafka; it cannot work on --from-file",
            param_hint="--verify",
        )
    settings = load_settings()
    from turnlog.wiring import install_catalog

    install_catalog(settings)  # the models of TURNLOG_MODEL_CATALOG, as the workers know them
    topics = topic_names(settings.topic_prefix)
    if from_file is not None:
        log = load_jsonl(from_file, session)
    else:
        assert session is not None
        log = asyncio.run(load_session_log(settings.kafka_bootstrap_servers, topics, session))
    result = replay(log, to_seq=to, rows=timeline or as_json)
    report = None
    if verify:
        from agents.limits import Limits
        from turnlog.replay_verify import verify_session
        from turnlog.wiring import load_registry

        # The same agent file and limits the session worker serves (TURNLOG_AGENTS,
        # TURNLOG_MAX_TEXT_BYTES), unless another file is given; loaded as the worker
        # loads it, so custom tools named by import path are the worker's too.
        registry = load_registry(
            agents or settings.agents, limits=Limits(max_text_bytes=settings.max_text_bytes)
        )
        if agents is not None:
            # The deploy question: would this file decide any recorded input differently?
            from turnlog.replay_verify import CandidateRegistry

            registry = CandidateRegistry(
                [registry.info(n).definition for n in registry.names()],
                registry.tools,
                limits=registry.limits,
            )
        else:
            # The versions the session was decided with, as the workers published them.
            from streams._agents import load_versions

            registry = registry.with_versions(
                asyncio.run(load_versions(settings.kafka_bootstrap_servers, topics.agents))
            )
        report = asyncio.run(
            verify_session(
                settings.kafka_bootstrap_servers, topics, log.session_id, registry, log=log
            )
        )
    if export is not None:
        from turnlog.replay import export_jsonl

        n = export_jsonl(log, export)
        if not as_json:
            typer.echo(f"exported {n} events to {export}", err=True)
    if as_json:
        out: dict[str, Any] = {
            "session_id": log.session_id,
            "sources": [{"session_id": s, "at_seq": a} for s, a in log.sources],
            "timeline": [r.as_dict() for r in result.rows] if timeline else None,
            "totals": result.totals.as_dict(),
            "state": state_summary(result.state),
            "verify": report.as_dict() if report is not None else None,
        }
        typer.echo(json.dumps(out, ensure_ascii=False, default=str))
    else:
        own = len(log.own)
        inherited = "".join(
            f" (+{len(log.ancestry)} inherited: forked from {s} at seq {a})"
            for s, a in log.sources[:1]
        )
        typer.echo(f"session {log.session_id} · {own} own events{inherited}")
        if timeline:
            _print_timeline(result)
        _print_totals(result)
        if to is not None:
            _print_state(result)
        if report is not None:
            typer.echo("")
            _print_verify(report)
    if report is not None and not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("replay")(replay_command)
