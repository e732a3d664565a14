"""A small runner for the plain SQL migrations in projections/migrations/.

Rule: files are named NNNN_name.sql and applied in number order, each in its own
transaction together with its row in `turnlog_schema_migrations` (name, sha256 checksum,
applied_at): a migration is applied completely or not at all. A file that was applied
and then changed is refused (MigrationChanged), as is an applied migration whose file is
gone (MigrationMissing): the fix is a new migration, never an edit. A session-level
advisory lock serialises concurrent runners (compose's init and a test run, say).

Why not alembic or yoyo: the projections are plain SQL, the whole runner fits on a page,
and the checksum refusal, which is the point, is a few lines here.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from agents.errors import ContractError, ExternalError

__all__ = [
    "MIGRATIONS_DIR",
    "Migration",
    "MigrationChanged",
    "MigrationError",
    "MigrationFailed",
    "MigrationMissing",
    "applied_migrations",
    "discover",
    "migrate",
]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
TABLE = "turnlog_schema_migrations"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK_KEY = 0x7475726E6C6F67  # "turnlog"


class MigrationError(ContractError):
    """The migration files and the database disagree (names, order, checksums)."""


class MigrationChanged(MigrationError):
    """An applied migration's file no longer has the checksum it was applied with."""


class MigrationMissing(MigrationError):
    """The database has a migration applied that is not among the files."""


class MigrationFailed(ExternalError):
    """PostgreSQL rejected a migration's SQL or could not be reached."""


@dataclass(frozen=True, slots=True)
class Migration:
    name: str
    path: Path
    checksum: str

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files in apply order; refuses stray names and duplicate numbers."""
    migrations: list[Migration] = []
    numbers: dict[str, str] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise MigrationError(f"Migration file {path} is not named NNNN_lowercase_name.sql.")
        if match.group(1) in numbers:
            raise MigrationError(
                f"Migrations {numbers[match.group(1)]} and {path.name} share the number "
                f"{match.group(1)}."
            )
        numbers[match.group(1)] = path.name
        checksum = hashlib.sha256(path.read_bytes()).hexdigest()
        migrations.append(Migration(path.name, path, checksum))
    return migrations


def _ensure_table(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute(
            f"""
            CREATE TABLE IF NOT EXISTS {TABLE} (
                name       text PRIMARY KEY,
                checksum   text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )


def applied_migrations(database_url: str) -> dict[str, str]:
    """name → checksum of what the database has applied ({} on a fresh database)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (TABLE,)).fetchone()
        if not exists or exists[0] is None:
            return {}
        rows = conn.execute(f"SELECT name, checksum FROM {TABLE} ORDER BY name").fetchall()
        return dict(rows)


def _check(applied: dict[str, str], migrations: list[Migration], directory: Path) -> None:
    by_name = {m.name: m for m in migrations}
    for name, checksum in applied.items():
        migration = by_name.get(name)
        if migration is None:
            raise MigrationMissing(
                f"Migration {name} is applied in the database but there is no such file in "
                f"{directory}; this code is older than the database."
            )
        if migration.checksum != checksum:
            raise MigrationChanged(
                f"Migration {name} was changed after it was applied: the database recorded "
                f"sha256 {checksum[:12]}…, the file {migration.path} now has "
                f"{migration.checksum[:12]}…. Restore the file and put the change in a new "
                "migration."
            )


def migrate(database_url: str, directory: Path | None = None) -> list[str]:
    """Apply the pending migrations in order; returns the names applied ([] if none)."""
    directory = directory or MIGRATIONS_DIR
    migrations = discover(directory)
    applied_now: list[str] = []
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
            try:
                _ensure_table(conn)
                rows = conn.execute(f"SELECT name, checksum FROM {TABLE}").fetchall()
                applied: dict[str, str] = dict(rows)
                _check(applied, migrations, directory)
                for migration in migrations:
                    if migration.name in applied:
                        continue
                    try:
                        with conn.transaction():
                            conn.execute(migration.sql.encode())  # no params: % is literal
                            conn.execute(
                                f"INSERT INTO {TABLE} (name, checksum) VALUES (%s, %s)",
                                (migration.name, migration.checksum),
                            )
                    except psycopg.Error as exc:
                        raise MigrationFailed(
                            f"Migration {migration.name} failed and was rolled back: "
                            f"{str(exc).strip()}"
                        ) from exc
                    applied_now.append(migration.name)
            finally:
                if not conn.closed:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    except psycopg.OperationalError as exc:
        raise MigrationFailed(f"Could not migrate the database: {str(exc).strip()}") from exc
    return applied_now
