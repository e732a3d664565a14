"""A scratch PostgreSQL database for a benchmark run (created, then dropped)."""

from __future__ import annotations

import psycopg
from psycopg import sql


def scratch_database(admin_url: str, name: str, *, drop: bool = False) -> str:
    """Create database `name` on the server of `admin_url` and return its URL; with
    `drop=True`, drop it (its sessions closed) and return ""."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if drop:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            return ""
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return admin_url.rsplit("/", 1)[0] + "/" + name
