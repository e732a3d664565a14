"""Rebuild every projection but the audit log from offset 0, and table checksums.

Rule: a rebuild empties the projection tables (store.PROJECTION_TABLES) and the
quarantine (projections.quarantine) and resets the stored positions to 0 in ONE
transaction — never audit_log, never the audit positions, so the replay appends nothing
to the audit log — then replays the events topic to the end it has when the replay
starts. Because rows are a function of the
events alone (projections.fold), the result equals the incremental projection;
`table_checksums` is how tests and operators prove it.

Running projector workers need not be stopped: their next transaction finds the stored
position moved and re-seeks (projections.store), so they simply join the replay (a
test runs a rebuild under a live worker and compares with a clean one).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from agents.errors import ExternalError
from projections.projector import Projector, ProjectorConfig
from projections.store import PROJECTION_TABLES

__all__ = ["CHECKSUM_TABLES", "RebuildReport", "rebuild", "reset_projections", "table_checksums"]

# Checked by table_checksums: the projections plus the audit log (which a rebuild must
# leave untouched).
CHECKSUM_TABLES: tuple[str, ...] = (*PROJECTION_TABLES, "audit_log")


@dataclass(slots=True)
class RebuildReport:
    events_replayed: int = 0
    checksums: dict[str, tuple[int, str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "events_replayed": self.events_replayed,
            "tables": {t: {"rows": n, "md5": h} for t, (n, h) in self.checksums.items()},
        }


def reset_projections(database_url: str, topic: str) -> None:
    """Empty the projections and move every consumer's positions on `topic` back to 0
    (and clear recorded stops), atomically. One consumer name projects into a database:
    the tables are not per consumer."""
    try:
        with psycopg.connect(database_url) as conn, conn.transaction():
            # Lock the offset rows first, in the projector's order (by partition): a
            # projector transaction takes them before any table, so it either finishes
            # before the TRUNCATE or waits for the reset — never a deadlock.
            conn.execute(
                "SELECT 1 FROM projector_offsets WHERE topic = %s "
                "ORDER BY partition, consumer FOR UPDATE",
                (topic,),
            )
            conn.execute(
                sql.SQL("TRUNCATE {}").format(
                    sql.SQL(", ").join(sql.Identifier(t) for t in PROJECTION_TABLES)
                )
            )
            # Quarantined events are re-derived by the replay (set aside again, or
            # projected if Postgres takes them now), but for those whose audit row is
            # still owed: the replay never appends to the audit log, a retry does.
            conn.execute("DELETE FROM projection_quarantine WHERE audited")
            conn.execute(
                "UPDATE projector_offsets SET next_offset = 0, stopped_offset = NULL, "
                "stopped_reason = NULL WHERE topic = %s",
                (topic,),
            )

    except psycopg.OperationalError as exc:
        raise ExternalError(f"Could not reset the projections: {str(exc).strip()}") from exc


async def rebuild(config: ProjectorConfig) -> RebuildReport:
    """Reset, then replay `config.events_topic` from 0 to its current end with a
    projector that owns every partition. Raises PartitionStopped on a gap, like the
    worker. `config.group_id` is ignored: the replay assigns partitions itself."""
    # In threads: the TRUNCATE waits for in-flight projector transactions, which may be
    # running on this very event loop.
    await asyncio.to_thread(reset_projections, config.database_url, config.events_topic)
    replay = ProjectorConfig(
        bootstrap=config.bootstrap,
        database_url=config.database_url,
        events_topic=config.events_topic,
        # New events past the audit position are appended (and their head published)
        # as in the worker; replayed ones never are.
        checkpoints_topic=config.checkpoints_topic,
        consumer=config.consumer,
        group_id=None,
        max_records=config.max_records,
        poll_timeout_ms=config.poll_timeout_ms,
        stop_on_gap=True,
    )
    projector = Projector(replay)
    await projector.run(until_caught_up=True)
    checksums = await asyncio.to_thread(table_checksums, config.database_url, PROJECTION_TABLES)
    return RebuildReport(projector.applied, checksums)


def table_checksums(
    database_url: str, tables: tuple[str, ...] = CHECKSUM_TABLES
) -> dict[str, tuple[int, str]]:
    """(row count, md5 over the sorted md5s of every row's text form) per table: equal
    contents give equal checksums whatever the physical row order."""
    out: dict[str, tuple[int, str]] = {}
    with psycopg.connect(database_url) as conn:
        for table in tables:
            row = conn.execute(
                sql.SQL(
                    "SELECT count(*), md5(COALESCE(string_agg(h, '' ORDER BY h), '')) "
                    "FROM (SELECT md5(t::text) AS h FROM {} t) rows"
                ).format(sql.Identifier(table))
            ).fetchone()
            assert row is not None
            out[table] = (int(row[0]), str(row[1]))
    return out
