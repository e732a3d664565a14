"""Batches at the front door, registered on the root app by `register(app)`.

    turnlog batch submit FILE --agent AGENT [--id ID] [--concurrency N]
    turnlog batch consume TOPIC --agent AGENT --id ID [--concurrency N] [--follow]
    turnlog batch status ID

`submit` pushes every line of FILE (or every {"text": ...} of a .jsonl file) through the
agent as its own session, at most N at a time, with a progress bar; run it again after a
crash or a Ctrl-C and it carries on where the batch is (each item runs once whatever
happens: streams.batch). A pipeline agent whose agent file declares stage limits
(`[agents.X.team.limits.<member>]`) is run stage by stage within them. `consume` does
the same for the records of a topic, up to its end now — or, with --follow, keeps
following the topic until SIGTERM/Ctrl-C (items in flight go on; a restart carries on
and sends nothing twice). Exit code 0 when every item completed, 1 when some failed
(they are on the DLQ topic). `status` reads the counts from the projections. All take
--json.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["batch_app", "read_items", "register"]

batch_app = typer.Typer(
    help="Batches: work items through an agent, each once, N at a time.", no_args_is_help=True
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def read_items(path: Path) -> list[str]:
    """The items of a batch file: one per non-empty line, or a JSON object with "text"
    per line of a .jsonl file. A bad line is refused naming its line number."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise typer.BadParameter(f"{path}: cannot read the batch file: {exc}") from exc
    items: list[str] = []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                value = json.loads(line)
            except ValueError as exc:
                raise typer.BadParameter(f"{path}:{no}: not JSON: {exc}") from exc
            if not isinstance(value, dict) or not isinstance(value.get("text"), str):
                raise typer.BadParameter(f'{path}:{no}: expected an object with "text".')
            items.append(value["text"])
        else:
            items.append(line)
    if not items:
        raise typer.BadParameter(f"{path}: the batch file has no items.")
    return items


@batch_app.command("submit")
def submit(
    file: Annotated[Path, typer.Argument(help='One item per line (.jsonl: {"text": ...}).')],
    agent: Annotated[str, typer.Option("--agent", help="The agent each item runs on.")],
    batch_id: Annotated[
        str | None, typer.Option("--id", help="The batch's id (default: the file's stem).")
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=10_000, help="Items in flight at most.")
    ] = 8,
    as_json: JsonOpt = False,
) -> None:
    """Run every item of FILE through AGENT, each as its own session, N at a time."""
    from turnlog.settings import load_settings

    settings = load_settings()
    batch = _batch(settings, batch_id or file.stem, agent, read_items(file), concurrency)
    if as_json:
        summary = asyncio.run(batch.run())
    else:
        with typer.progressbar(length=len(batch.items), label=f"batch {batch.batch_id}") as bar:
            shown = {"n": 0}

            def progress(ended: int, completed: int, failed: int) -> None:
                bar.update(ended - shown["n"])
                shown["n"] = ended

            summary = asyncio.run(batch.run(progress))
    _report(summary, as_json)


def _stages(settings: Any, agent: str) -> Any:
    """The stages of `agent` when the agent file (TURNLOG_AGENTS) makes it a pipeline
    with stage limits; () otherwise (an agent the file does not define — one the workers
    know from elsewhere — runs as it is)."""
    from agents.agentfile import registry_from_file
    from agents.errors import AgentDefinitionError
    from streams.batch import stages_of

    if not Path(settings.agents).exists():
        return ()
    try:
        info = registry_from_file(settings.agents).find(agent)
    except AgentDefinitionError as exc:
        raise typer.BadParameter(f"TURNLOG_AGENTS: {exc}") from exc
    return () if info is None else stages_of(info.definition)


def _batch(
    settings: Any,
    batch_id: str,
    agent: str,
    items: Sequence[str] | Mapping[str, str],
    concurrency: int,
) -> Any:
    from streams.batch import Batch
    from streams.topics import topic_names

    try:
        return Batch(
            bootstrap=settings.kafka_bootstrap_servers,
            topics=topic_names(settings.topic_prefix),
            partitions=settings.partitions,
            batch_id=batch_id,
            agent=agent,
            items=items,
            concurrency=concurrency,
            stages=_stages(settings, agent),
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _report(summary: Any, as_json: bool) -> None:
    out: dict[str, Any] = {
        "batch_id": summary.batch_id,
        "items": summary.items,
        "completed": summary.completed,
        "failed": summary.failed,
        "sent_now": summary.sent_now,
        "dead_lettered": summary.dead_lettered,
        "cost_nanos": summary.cost_nanos,
        "max_in_flight": summary.max_in_flight,
    }
    if as_json:
        typer.echo(json.dumps(out, indent=2))
    else:
        typer.echo(
            f"batch {summary.batch_id}: {summary.completed} of {summary.items} completed, "
            f"{summary.failed} failed (dead-lettered), ${summary.cost_nanos / 1e9:.6f}"
        )
    raise typer.Exit(1 if summary.failed else 0)


@batch_app.command("consume")
def consume(
    topic: Annotated[str, typer.Argument(help="The topic holding the work items.")],
    agent: Annotated[str, typer.Option("--agent", help="The agent each item runs on.")],
    batch_id: Annotated[str, typer.Option("--id", help="The batch's id.")],
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=10_000, help="Items in flight at most.")
    ] = 8,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow/--no-follow",
            help="Keep following the topic (new records are new items) until SIGTERM or "
            "Ctrl-C; by default: the records up to the topic's end now, then exit.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run every record on TOPIC (text, or {"text": ...}) through AGENT, each as its own
    session batch/ID/p<partition>o<offset>: the records up to the topic's end now, or with
    --follow every record as it comes until stopped. Run it again later: the items
    already sent are not sent again, new records are."""
    from streams.batch_feed import topic_items
    from turnlog.settings import load_settings

    settings = load_settings()
    if follow:
        _follow(settings, topic, batch_id, agent, concurrency, as_json)
        return
    try:
        items = asyncio.run(topic_items(settings.kafka_bootstrap_servers, topic))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if not items:
        raise typer.BadParameter(f"Topic {topic!r} holds no items.")
    batch = _batch(settings, batch_id, agent, items, concurrency)
    if as_json:
        summary = asyncio.run(batch.run())
    else:
        with typer.progressbar(length=len(items), label=f"batch {batch.batch_id}") as bar:
            shown = {"n": 0}

            def progress(ended: int, completed: int, failed: int) -> None:
                bar.update(ended - shown["n"])
                shown["n"] = ended

            summary = asyncio.run(batch.run(progress))
    _report(summary, as_json)


def _follow(
    settings: Any, topic: str, batch_id: str, agent: str, concurrency: int, as_json: bool
) -> None:
    """`consume --follow`: until SIGTERM or SIGINT, then a clean stop (the summary)."""
    import signal
    import sys

    from streams.batch_feed import TopicFeed

    def refused(message: str) -> None:
        print(f"skipped (not an item): {message}", file=sys.stderr, flush=True)

    def progress(ended: int, completed: int, failed: int) -> None:
        if not as_json:
            typer.echo(f"batch {batch_id}: {ended} ended, {completed} completed, {failed} failed")

    async def main() -> Any:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        feed = TopicFeed(settings.kafka_bootstrap_servers, topic, on_refused=refused)
        try:
            try:
                items = await feed.start()
            except ValueError as exc:
                raise typer.BadParameter(str(exc)) from exc
            batch = _batch(settings, batch_id, agent, items, concurrency)
            if not as_json:
                typer.echo(f"batch {batch_id}: following {topic} ({len(items)} items so far)")
            return await batch.run(progress, feed=feed, stop=stop)
        finally:
            await feed.stop()

    _report(asyncio.run(main()), as_json)


@batch_app.command("status")
def status(
    batch_id: Annotated[str, typer.Argument(help="The batch's id.")],
    as_json: JsonOpt = False,
) -> None:
    """A batch's counts from the projections (items started, completed, failed, cost)."""
    import psycopg
    from psycopg.rows import dict_row

    from streams.batch import progress_sql
    from turnlog.settings import load_settings

    settings = load_settings()
    with psycopg.connect(settings.database_url, row_factory=dict_row) as conn:
        row = conn.execute(progress_sql(), (batch_id,)).fetchone() or {}
    out: dict[str, Any] = {"batch_id": batch_id, **{k: int(v or 0) for k, v in row.items()}}
    if as_json:
        typer.echo(json.dumps(out, indent=2))
    else:
        typer.echo(
            f"batch {batch_id}: {out['started']} started, {out['completed']} completed, "
            f"{out['failed']} failed, ${out['cost_nanos'] / 1e9:.6f}"
        )


def register(app: typer.Typer) -> None:
    """Add `batch submit|consume|status` to the root app."""
    app.add_typer(batch_app, name="batch")
