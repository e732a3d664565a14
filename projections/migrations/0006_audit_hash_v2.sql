-- The audit chain binds every stored column: hash version 2.
--
-- Rule: rows written from now on have hash_version 2, whose row_hash is sha256 over
-- prev_hash and every other column (projections.audit.row_hash_v2), not over the
-- content alone. Rows already written keep version 1 (sha256(prev_hash || content)):
-- rewriting them would need an UPDATE, which the append-only trigger forbids, and would
-- change heads already published as checkpoints. `turnlog audit verify` checks a
-- version-1 row's other columns against its hashed content (each is a function of it),
-- so a changed session_id, seq, event_id, event_type or occurred_at is named in old rows
-- too. A version never goes back from 2 to 1 along the chain.
--
-- No default once the old rows have theirs: every writer must say which hash it wrote.
-- (Adding a column with a constant default rewrites no row and fires no row trigger.)
ALTER TABLE audit_log ADD COLUMN hash_version smallint NOT NULL DEFAULT 1
    CHECK (hash_version IN (1, 2));
ALTER TABLE audit_log ALTER COLUMN hash_version DROP DEFAULT;
