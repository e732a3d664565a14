"""The projection commands of `turnlog`, registered on the root app by `register(app)`.

    turnlog worker projector            the projector worker (events -> Postgres)
    turnlog audit verify                walk the audit chain, compare with checkpoints
    turnlog projections rebuild         empty the projections, replay from offset 0
    turnlog projections status          positions and stopped partitions per consumer
    turnlog projections quarantine      events set aside because Postgres refused them
    turnlog projections quarantine retry [ID|--all]   re-apply them
    turnlog sessions                    recent sessions
    turnlog show SESSION                one session: branch, fork tree, children, costs
    turnlog costs [--by ...]            cost views (children rolled up to parents)

Every command takes --json. Rule: commands are thin; the work is in projections.* and
the SQL views. Settings (Kafka, DATABASE_URL, topic prefix) come from
turnlog.settings; `--database-url` overrides where a different role is wanted (the
audit verifier needs SELECT on audit_log, which the application role does not have).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any

import typer

__all__ = ["audit_app", "projections_app", "quarantine_app", "register", "worker_app"]

worker_app = typer.Typer(help="Run workers.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
projections_app = typer.Typer(help="Postgres projections of the events.", no_args_is_help=True)
quarantine_app = typer.Typer(
    help="Events whose projection Postgres refused, set aside so their partition went on. "
    "Ordering: per session. Once an event of a session is quarantined, every later "
    "event of that session is held behind it (quarantined too, nothing of the "
    "session is projected past it) while other sessions go on; a retry re-applies "
    "a session's events in seq order and stops at the first that fails again. "
    "Rows other sessions derive from a held one (a parent's view of its child, a "
    "fork's inherited branch) may show it incomplete until the retry.",
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
DbOpt = Annotated[
    str | None, typer.Option("--database-url", help="Postgres URL; default DATABASE_URL.")
]


def _settings() -> Any:
    from turnlog.settings import load_settings

    return load_settings()


def _default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, default=_default, indent=2))


def _query(run: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A projection query; a database without the projection tables is named as such
    (not a psycopg traceback)."""
    import psycopg

    from agents.errors import ContractError

    try:
        return run(*args, **kwargs)
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction) as exc:
        raise ContractError(
            "The database DATABASE_URL names has no projection tables "
            f"({exc.diag.message_primary}): run `turnlog db migrate`, then a projector "
            "(`turnlog worker projector` or `turnlog worker all`)."
        ) from exc


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        typer.echo("(none)")
        return
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    typer.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def _config(
    *,
    group: bool,
    consumer: str,
    max_records: int,
    checkpoint_interval: float,
    stop_on_gap: bool,
    session_timeout_ms: int,
    database_url: str | None,
) -> Any:
    from projections.projector import ProjectorConfig
    from streams.topics import topic_names

    settings = _settings()
    names = topic_names(settings.topic_prefix)
    return ProjectorConfig(
        bootstrap=settings.kafka_bootstrap_servers,
        database_url=database_url or settings.database_url,
        events_topic=names.events,
        checkpoints_topic=names.checkpoints,
        consumer=consumer,
        group_id=f"{settings.topic_prefix}turnlog-{consumer}" if group else None,
        max_records=max_records,
        checkpoint_interval=checkpoint_interval,
        stop_on_gap=stop_on_gap,
        session_timeout_ms=session_timeout_ms,
        fetch_wait_ms=settings.fetch_wait_ms,
    )


# ------------------------------------------------------------------ worker


def _configure_logging(*, json_logs: bool) -> None:
    try:
        from streams.logs import configure_logging
    except ImportError:  # the shared logging setup is optional; structlog defaults work
        return
    configure_logging(_settings().log_level, json=True if json_logs else None)


@worker_app.command("projector")
def worker_projector(
    group: Annotated[
        bool,
        typer.Option(
            "--group/--no-group",
            help="Share partitions with other projectors (consumer group), "
            "or take every partition.",
        ),
    ] = True,
    consumer: Annotated[str, typer.Option(help="Consumer name: keys the stored offsets.")] = (
        "projector"
    ),
    max_records: Annotated[int, typer.Option(help="Records per poll (one transaction).")] = 5000,
    checkpoint_interval: Annotated[
        float, typer.Option(help="Seconds between audit checkpoints.")
    ] = 5.0,
    keep_going: Annotated[
        bool,
        typer.Option(
            "--keep-going",
            help="On a seq gap, pause that partition and go on with the "
            "others instead of exiting with an error.",
        ),
    ] = False,
    session_timeout_ms: Annotated[
        int, typer.Option(help="Consumer group session timeout.")
    ] = 10_000,
    database_url: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Project turnlog.events into Postgres until SIGTERM/SIGINT. Exits with an error
    when a partition stops on a seq gap (unless --keep-going)."""
    from projections.projector import Projector, run_projector
    from streams.endpoint import serving
    from turnlog.observability import projector_endpoint

    _configure_logging(json_logs=as_json)
    config = _config(
        group=group,
        consumer=consumer,
        max_records=max_records,
        checkpoint_interval=checkpoint_interval,
        stop_on_gap=not keep_going,
        session_timeout_ms=session_timeout_ms,
        database_url=database_url,
    )
    # /metrics, /healthz, /readyz on TURNLOG_PROJECTOR_METRICS_PORT (streams.endpoint).
    projector = Projector(config)
    endpoint = projector_endpoint(projector, _settings())
    projector = asyncio.run(serving(endpoint, run_projector(config, projector=projector)))
    summary = projector.stats()
    if as_json:
        _print_json(summary)
    else:
        typer.echo(
            f"projected {projector.applied} events in {projector.batches} batches, "
            f"quarantined {projector.quarantined}, reconnected {projector.reconnects} "
            "times"
        )


# ------------------------------------------------------------------ audit


@audit_app.command("verify")
def audit_verify(
    checkpoints: Annotated[
        bool,
        typer.Option(
            "--checkpoints/--no-checkpoints",
            help="Compare with the heads published to the checkpoints topic.",
        ),
    ] = True,
    database_url: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute the audit hash chain, which binds every column of every row; name the
    first row that was changed, deleted, swapped or cut off. Exit code 1 if broken.
    Rows past the last published checkpoint are reported, not proven: a cut of them
    cannot be detected until a checkpoint covers them."""
    from projections.audit import read_checkpoints, verify_audit_log
    from streams.topics import topic_names

    settings = _settings()
    published = []
    if checkpoints:
        topic = topic_names(settings.topic_prefix).checkpoints
        published = asyncio.run(read_checkpoints(settings.kafka_bootstrap_servers, topic))
    report = verify_audit_log(database_url or settings.database_url, published)
    if as_json:
        _print_json(report.as_dict())
    elif report.ok:
        typer.echo(
            f"audit log intact: {report.rows} rows, head {report.head.head_hash[:16]}…, "
            f"{report.checkpoints_matched}/{report.checkpoints} checkpoints match"
        )
    else:
        typer.echo(f"audit log BROKEN at {report.broken}", err=True)
    if not as_json and report.unproven:
        # What no verification can prove (a cut of the newest rows), said every time.
        typer.echo(f"not proven: {report.unproven}")
    if not report.ok:
        raise typer.Exit(1)


# ------------------------------------------------------------------ projections


@projections_app.command("rebuild")
def projections_rebuild(
    consumer: Annotated[str, typer.Option(help="Consumer whose projections to rebuild.")] = (
        "projector"
    ),
    database_url: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Empty every projection except the audit log and replay the events from offset 0."""
    from projections.rebuild import rebuild

    config = _config(
        group=False,
        consumer=consumer,
        max_records=5000,
        checkpoint_interval=5.0,
        stop_on_gap=True,
        session_timeout_ms=10_000,
        database_url=database_url,
    )
    report = asyncio.run(rebuild(config))
    if as_json:
        _print_json(report.as_dict())
        return
    typer.echo(f"replayed {report.events_replayed} events")
    _table(
        [{"table": t, "rows": n, "md5": h} for t, (n, h) in report.checksums.items()],
        ["table", "rows", "md5"],
    )


@projections_app.command("status")
def projections_status(database_url: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Stored positions per consumer and partition, quarantined events, and stopped
    partitions."""
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(database_url or _settings().database_url, row_factory=dict_row) as c:
        rows = c.execute(
            "SELECT consumer, topic, partition, next_offset, audit_next_offset, "
            "(SELECT count(*) FROM projection_quarantine q WHERE q.consumer = o.consumer "
            " AND q.topic = o.topic AND q.kafka_partition = o.partition) AS quarantined, "
            "stopped_offset, stopped_reason FROM projector_offsets o "
            "ORDER BY consumer, topic, partition"
        ).fetchall()
    if as_json:
        _print_json(rows)
    else:
        _table(
            rows,
            [
                "consumer",
                "topic",
                "partition",
                "next_offset",
                "audit_next_offset",
                "quarantined",
                "stopped_offset",
                "stopped_reason",
            ],
        )


@quarantine_app.callback(invoke_without_command=True)
def projections_quarantine(
    ctx: typer.Context,
    events: Annotated[
        bool, typer.Option("--events", help="Include each event's canonical JSON.")
    ] = False,
    database_url: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the quarantined events, oldest first: where they are in the log, the error,
    when and how often they failed, and which are held behind an earlier one."""
    if ctx.invoked_subcommand is not None:
        return
    from projections.quarantine import list_quarantined

    rows = list_quarantined(database_url or _settings().database_url, with_events=events)
    if as_json:
        _print_json(rows)
        return
    _table(
        rows,
        [
            "quarantine_id",
            "kafka_partition",
            "kafka_offset",
            "session_id",
            "seq",
            "event_type",
            "held_behind_seq",
            "attempts",
            "last_failed_at",
            "error",
        ],
    )


@quarantine_app.command("retry")
def projections_quarantine_retry(
    quarantine_id: Annotated[
        int | None,
        typer.Argument(
            help="Retry this row's session (every quarantined event of it, in seq order)."
        ),
    ] = None,
    retry_all: Annotated[bool, typer.Option("--all", help="Retry every session.")] = False,
    database_url: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-apply quarantined events, each session's in seq order; a projected event's row
    is deleted in the transaction that projects it. A session stops at its first event
    that fails again (its error and attempts are updated; the later ones stay held).
    Safe while projectors run. Exit code 1 if anything is still quarantined of what was
    asked."""
    from projections.quarantine import retry_quarantined

    if (quarantine_id is None) == (not retry_all):
        raise typer.BadParameter("Give one quarantine ID or --all, not both and not neither.")
    report = asyncio.run(
        retry_quarantined(
            database_url or _settings().database_url,
            None if retry_all else [quarantine_id] if quarantine_id is not None else [],
        )
    )
    if as_json:
        _print_json(report.as_dict())
    else:
        typer.echo(f"resolved {len(report.resolved)} quarantined events")
        for qid, error in report.failed:
            typer.echo(f"quarantine row {qid} failed again: {error}", err=True)
        if report.still_held:
            typer.echo(f"{len(report.still_held)} events stay held behind them", err=True)
        for qid in report.missing:
            typer.echo(f"No quarantined event has id {qid} (resolved already?).", err=True)
    if not report.ok:
        raise typer.Exit(1)


# ------------------------------------------------------------------ queries


def sessions_command(
    limit: Annotated[int, typer.Option(help="How many sessions.")] = 50,
    agent: Annotated[str | None, typer.Option(help="Only this agent's sessions.")] = None,
    status: Annotated[str | None, typer.Option(help="active or closed.")] = None,
    database_url: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Recent sessions, newest first."""
    from projections.queries import list_sessions

    rows = _query(
        list_sessions,
        database_url or _settings().database_url,
        limit=limit,
        agent=agent,
        status=status,
    )
    if as_json:
        _print_json(rows)
    else:
        _table(
            rows,
            [
                "session_id",
                "agent",
                "status",
                "phase",
                "turns",
                "last_seq",
                "forked_from_session_id",
                "parent_session_id",
                "updated_at",
                "usd",
                "total_usd",
            ],
        )


def show_command(
    session_id: Annotated[str, typer.Argument(help="The session id.")],
    database_url: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One session: its conversation branch (shared fork prefix included), the branches
    of its fork tree, its delegated children and its costs."""
    from projections.queries import SessionNotFound, show_session

    try:
        shown = _query(show_session, database_url or _settings().database_url, session_id)
    except SessionNotFound as exc:
        raise SessionNotFound(
            f"{exc} No session of that id has started (it does not exist, or its first "
            f"input was rejected), or no projector has reached it yet: `turnlog events "
            f"{session_id}` reads its log from Kafka."
        ) from None
    if as_json:
        _print_json(shown)
        return
    s = shown["session"]
    typer.echo(
        f"session {s['session_id']}  agent {s['agent']}  {s['status']}/{s['phase']}  "
        f"turns {s['turns']}  last seq {s['last_seq']}"
    )
    if s["forked_from_session_id"]:
        typer.echo(f"forked from {s['forked_from_session_id']} at seq {s['forked_at_seq']}")
    if s["parent_session_id"]:
        typer.echo(f"child of {s['parent_session_id']} (call {s['parent_call_id']})")
    typer.echo("")
    for e in shown["entries"]:
        marker = " " if e["session_id"] == session_id else "|"
        text = " ".join(str(e["content"]).split())
        label = e["kind"] + (f" {e['tool_name']}" if e["tool_name"] else "")
        typer.echo(f"{marker}{e['seq']:>6}  {label:<22} {text[:90]}")
    if any(e["session_id"] != session_id for e in shown["entries"]):
        typer.echo("\n('|' marks entries inherited from the fork source)")
    typer.echo("\nbranches:")
    for b in shown["branches"]:
        here = "  <- this session" if b["is_requested"] else ""
        fork = (
            f" forked from {b['forked_from_session_id']} at {b['forked_at_seq']}"
            if (b["forked_from_session_id"])
            else " (root)"
        )
        typer.echo(
            f"{'  ' * b['depth']}- {b['session_id']}{fork}: {b['branch_entries']} entries{here}"
        )
    if shown["children"]:
        typer.echo("\nchildren:")
        for c in shown["children"]:
            typer.echo(
                f"- {c['child_session_id']} ({c['agent']}, {c['status']}) "
                f"for call {c['parent_call_id']}"
            )
    if shown["costs"]:
        c = shown["costs"]
        typer.echo(f"\ncost: own ${c['own_usd']:.6f}, with children ${c['total_usd']:.6f}")


def costs_command(
    by: Annotated[str, typer.Option(help="agent, model, day or session.")] = "agent",
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 1000,
    database_url: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Costs from the recorded prices, child sessions rolled up to their parents."""
    from projections.queries import costs

    rows = _query(costs, database_url or _settings().database_url, by, limit=limit)
    if as_json:
        _print_json(rows)
        return
    columns = {
        "agent": [
            "agent",
            "sessions",
            "root_sessions",
            "priced_calls",
            "input_tokens",
            "output_tokens",
            "own_usd",
            "rolled_up_usd",
        ],
        "model": [
            "model",
            "priced_calls",
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "usd",
        ],
        "day": ["day", "priced_calls", "input_tokens", "output_tokens", "usd"],
        "session": [
            "session_id",
            "agent",
            "parent_session_id",
            "priced_calls",
            "own_usd",
            "total_usd",
        ],
    }[by]
    _table(rows, columns)


def register(app: typer.Typer) -> None:
    """Add the projection commands to the root `turnlog` app. `worker` may already be
    registered by another extension: the projector joins that group then."""
    existing = next(
        (g for g in app.registered_groups if g.name == "worker" and g.typer_instance), None
    )
    if existing is not None and existing.typer_instance is not None:
        existing.typer_instance.command("projector")(worker_projector)
    else:
        app.add_typer(worker_app, name="worker")
    app.add_typer(audit_app, name="audit")
    projections_app.add_typer(quarantine_app, name="quarantine")
    app.add_typer(projections_app, name="projections")
    app.command("sessions")(sessions_command)
    app.command("show")(show_command)
    app.command("costs")(costs_command)
