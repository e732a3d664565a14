"""Every table, view, function and column of the projections has a COMMENT (what `\\d+`
shows): a later migration that adds one without a comment fails here, named."""

from __future__ import annotations

import psycopg

# Relations of the public schema: tables, partitioned tables, views, materialized views.
RELATIONS = """
SELECT c.relname, c.relkind, obj_description(c.oid, 'pg_class')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
ORDER BY c.relname
"""
COLUMNS = """
SELECT c.relname, a.attname, col_description(c.oid, a.attnum)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
ORDER BY c.relname, a.attnum
"""
FUNCTIONS = """
SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       obj_description(p.oid, 'pg_proc')
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'public'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d  -- functions an extension brought
                  WHERE d.objid = p.oid AND d.deptype = 'e')
ORDER BY 1
"""
KIND = {"r": "table", "p": "table", "v": "view", "m": "materialized view"}


def test_every_table_view_function_and_column_has_a_comment(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        relations = conn.execute(RELATIONS).fetchall()
        columns = conn.execute(COLUMNS).fetchall()
        functions = conn.execute(FUNCTIONS).fetchall()
    assert {"sessions", "llm_calls", "cost_by_session", "audit_log"} <= {r[0] for r in relations}
    assert functions, "no function found: the query is wrong"
    missing = [f"{KIND[kind]} {name}" for name, kind, text in relations if not text]
    missing += [f"column {table}.{column}" for table, column, text in columns if not text]
    missing += [f"function {signature}" for signature, text in functions if not text]
    assert not missing, (
        "COMMENT ON missing for: "
        + ", ".join(missing)
        + ". A migration that adds them must describe them (meaning, unit, filling event)."
    )


def test_money_durations_and_token_counts_name_their_unit(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        columns = conn.execute(COLUMNS).fetchall()
    units = {"_nanos": "nano-dollars", "_ms": "milliseconds", "_tokens": "tokens"}
    wrong = [
        f"{table}.{column} ({suffix}: '{unit}' not in {text!r})"
        for table, column, text in columns
        for suffix, unit in units.items()
        if column.endswith(suffix) and unit not in (text or "")
    ]
    assert not wrong, "columns whose comment does not name their unit: " + "; ".join(wrong)
