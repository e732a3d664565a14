"""Postgres projections of turnlog.events: what users query with SQL.

migrations/       the schema (plain SQL, applied by projections.migrate)
rows              the rows' columns and merge rules (pure)
fold              how each event changes the rows; seq gaps and duplicates (pure)
store             one batch, one transaction, offsets included (exactly once)
_staging          staging tables + binary COPY + merge SQL, for the store
_clean            text Postgres cannot store (NUL, lone surrogates) -> U+FFFD (pure)
quarantine        an event Postgres refuses is set aside, its partition goes on;
                  list and retry (_quarantine: its rows, inside the store's transaction)
projector         the worker: Kafka (read_committed) -> store, checkpoints; rides
                  through Postgres restarts
audit             the hash-chained audit log: append, checkpoints, verify
rebuild           empty the projections and replay from offset 0; checksums
queries           what `turnlog sessions|show|costs` print
synthetic         realistic generated session logs (tests, benchmark)
testing           helpers for integration tests against real Kafka/Postgres
"""
