-- The audit log and the database roles of turnlog.
--
-- Rule: audit_log is append-only and hash-chained. One row per event, its canonical
-- JSON as `content`; row_hash = sha256(prev_hash || content) (hex text, UTF-8), the
-- first row's prev_hash is 64 zeros. A trigger rejects UPDATE, DELETE and TRUNCATE for
-- everyone (even the owner); the application role may only INSERT. A superuser can still
-- disable triggers and rewrite rows: `turnlog audit verify` finds that by recomputing the
-- chain and by comparing it with the heads published to turnlog.audit.checkpoints.
--
-- Roles are cluster-global, so they are created idempotently (other databases of the
-- same cluster may have created them already, possibly concurrently). No password is
-- set here: operators set it (ALTER ROLE ... PASSWORD) outside the repository.
--   turnlog_app      the projector and the query commands: reads and writes the
--                    projections, may only INSERT into audit_log
--   turnlog_auditor  `turnlog audit verify`: reads audit_log, writes nothing

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'turnlog_app') THEN
        BEGIN
            CREATE ROLE turnlog_app LOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created meanwhile by a migration of another database
        END;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'turnlog_auditor') THEN
        BEGIN
            CREATE ROLE turnlog_auditor LOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
END
$$;

CREATE TABLE audit_log (
    audit_id    bigint      PRIMARY KEY CHECK (audit_id >= 1),
    session_id  text        NOT NULL,
    seq         bigint      NOT NULL,
    event_id    uuid        NOT NULL,
    event_type  text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    content     text        NOT NULL,
    prev_hash   text        NOT NULL,
    row_hash    text        NOT NULL,
    UNIQUE (session_id, seq)
);

-- The chain head, so an appender needs no SELECT on audit_log. Locked FOR UPDATE by
-- every appending transaction: that lock is what keeps the chain a single line when
-- several projector processes share the partitions. It is a cache of the last row, not
-- evidence: verify recomputes everything from audit_log itself.
CREATE TABLE audit_head (
    id            integer PRIMARY KEY CHECK (id = 1),
    last_audit_id bigint  NOT NULL,
    head_hash     text    NOT NULL
);
INSERT INTO audit_head VALUES (1, 0, repeat('0', 64));

CREATE FUNCTION audit_log_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_log_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_reject_change();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_reject_change();

-- ------------------------------------------------------------------ privileges

REVOKE ALL ON audit_log FROM PUBLIC;
REVOKE ALL ON audit_head FROM PUBLIC;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO turnlog_app, turnlog_auditor',
                   current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO turnlog_app, turnlog_auditor;

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON
    projector_offsets, events, sessions, session_links, entries, llm_calls, tool_calls,
    approvals, compactions
TO turnlog_app;
GRANT SELECT ON
    session_lineage, session_roots, cost_ledger, cost_by_session, cost_by_agent,
    cost_by_model, cost_by_day
TO turnlog_app;

-- The application role may only append to the audit log: no SELECT, UPDATE, DELETE or
-- TRUNCATE. (The trigger would stop the last three anyway; this stops them earlier.)
REVOKE ALL ON audit_log FROM turnlog_app;
GRANT INSERT ON audit_log TO turnlog_app;
GRANT SELECT, UPDATE ON audit_head TO turnlog_app;

GRANT SELECT ON audit_log, audit_head TO turnlog_auditor;
