"""Rebuild every projection but the audit log from offset 0, and table checksums.

Rule: a rebuild empties the projection tables (store.PROJECTION_TABLES) and resets this
consumer's positions to 0 in ONE transaction — never audit_log, never the audit
positions, so the replay appends nothing to the audit log — then replays the events
topic to the end it has when the replay starts. Because rows are a function of the
events alone (projections.fold), the result equals the incremental projection;
`table_checksums` is how tests and operators prove it.

Running projector workers need not be stopped: their next transaction finds the stored
position moved and re-seeks (projections.store), so they simply join the replay.
"""

from __future__ import annotations

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


def reset_projections(database_url: str, consumer: str, topic: str) -> None:
    """Empty the projections and move `consumer`'s positions on `topic` back to 0 (and
    clear recorded stops), atomically."""
    try:
        with psycopg.connect(database_url) as conn, conn.transaction():
            conn.execute(
                sql.SQL("TRUNCATE {}").format(
                    sql.SQL(", ").join(sql.Identifier(t) for t in PROJECTION_TABLES)
                )
            )
            conn.execute(
                "UPDATE projector_offsets SET next_offset = 0, stopped_offset = NULL, "
                "stopped_reason = NULL WHERE consumer = %s AND topic = %s",
                (consumer, topic),
            )
    except psycopg.OperationalError as exc:
        raise ExternalError(f"Could not reset the projections: {str(exc).strip()}") from exc


async def rebuild(config: ProjectorConfig) -> RebuildReport:
    """Reset, then replay `config.events_topic` from 0 to its current end with a
    projector that owns every partition. Raises PartitionStopped on a gap, like the
    worker. `config.group_id` is ignored: the replay assigns partitions itself."""
    reset_projections(config.database_url, config.consumer, config.events_topic)
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
    return RebuildReport(
        projector.applied, table_checksums(config.database_url, PROJECTION_TABLES)
    )


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
