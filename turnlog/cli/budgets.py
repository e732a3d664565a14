"""`turnlog budgets watch|alerts`: budgets across sessions (streams.budgets) as commands.

turnlog budgets watch [--interval 5]   run the budget watcher until SIGTERM / Ctrl-C
turnlog budgets alerts [--json]        the budget_alerts table, newest first
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer

__all__ = ["register"]

_ALERTS = """
SELECT scope, scope_key, period, unit, threshold, fraction, spent, budget_limit,
       session_id, alerted_at
FROM budget_alerts ORDER BY alerted_at DESC NULLS LAST LIMIT %s
"""


def budgets_watch(
    interval: Annotated[
        float, typer.Option("--interval", min=0.1, help="Seconds between polls.")
    ] = 5.0,
) -> None:
    """Watch the agents' and projects' day budgets: alert at their thresholds, and stop
    new turns of every session of a budget that is spent (EnforceBudget)."""
    from agents.agentfile import registry_from_file
    from streams.budgets import BudgetWatcher, WatchConfig, load_scopes
    from streams.logs import configure_logging
    from streams.topics import topic_names
    from turnlog.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_level)
    registry = registry_from_file(settings.agents)
    scopes = load_scopes(settings.agents, registry)
    watcher = BudgetWatcher(
        WatchConfig(
            bootstrap=settings.kafka_bootstrap_servers,
            database_url=settings.database_url,
            requests_topic=topic_names(settings.topic_prefix).requests,
            interval_s=interval,
        ),
        scopes,
    )
    if not scopes:
        typer.echo(
            f"{settings.agents}: no budget across sessions (budget.day_usd or [projects.*])",
            err=True,
        )

    async def main() -> None:
        await watcher.start()
        try:
            await watcher.run()
        finally:
            await watcher.stop()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass


def budgets_alerts(
    limit: Annotated[int, typer.Option("--limit", min=1, help="Rows at most.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The budget alerts recorded (session, agent and project scope), newest first."""
    import psycopg
    from psycopg.rows import dict_row

    from turnlog.settings import load_settings

    settings = load_settings()
    with psycopg.connect(settings.database_url, row_factory=dict_row) as conn:
        rows: list[dict[str, Any]] = list(conn.execute(_ALERTS, (limit,)).fetchall())
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    for r in rows:
        share = f" ({r['fraction']:.0%})" if r["fraction"] is not None else ""
        period = f" {r['period']}" if r["period"] else ""
        typer.echo(
            f"{r['alerted_at']}  {r['scope']} {r['scope_key']}{period}: {r['unit']} "
            f"{r['spent']} passed {r['threshold']}{share} of {r['budget_limit']}"
        )


def register(app: typer.Typer) -> None:
    budgets = typer.Typer(help="Budgets across sessions and their alerts.", no_args_is_help=True)
    budgets.command("watch")(budgets_watch)
    budgets.command("alerts")(budgets_alerts)
    app.add_typer(budgets, name="budgets")
