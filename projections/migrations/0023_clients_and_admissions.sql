-- Client identity (Request.client) and rate limits shared across sessions (issue 19).

-- The requester identity a session started with (SessionStarted.client).
ALTER TABLE sessions ADD COLUMN client text;
COMMENT ON COLUMN sessions.client IS
    'The requester identity (Request.client: set by the Python client, the CLI --client and the HTTP API; self-declared on a raw Kafka producer) of the message that started the session (SessionStarted.client); keys per-client budgets. NULL: none stated.';
CREATE INDEX sessions_client_idx ON sessions (client) WHERE client IS NOT NULL;

-- Shared rate limits (agents.ratelimit per = "agent" / "client"): the counters the effect
-- runner's admissions ask (streams.admission), one row per admitted or limited message
-- and per completed LLM call's tokens. Not a projection of the log: the log records each
-- admission's outcome (AdmissionDecided); this table is how workers agree on it.
CREATE TABLE rate_admissions (
    limit_key text NOT NULL,
    entry_id text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('message', 'tokens')),
    at timestamptz NOT NULL,
    admitted boolean NOT NULL,
    tokens bigint NOT NULL DEFAULT 0,
    limit_name text,
    reason text,
    retry_after_ms bigint NOT NULL DEFAULT 0,
    waited_ms bigint NOT NULL DEFAULT 0,
    session_id text,
    client text,
    PRIMARY KEY (limit_key, entry_id)
);
CREATE INDEX rate_admissions_window_idx ON rate_admissions (limit_key, at);
COMMENT ON TABLE rate_admissions IS
    'Counters of shared rate limits (per agent, per client), written by the effect runner''s admissions under a per-key advisory lock: a message admitted or limited, keyed by (limit key, request id) so a re-run admission gets the same answer and counts once; a completed LLM call''s tokens, keyed by llm:<call id>. Rows older than ten windows (at least 10 minutes) are pruned.';
COMMENT ON COLUMN rate_admissions.limit_key IS 'agent:<agent name> or client:<Request.client> (client:- for messages that state none).';
COMMENT ON COLUMN rate_admissions.entry_id IS 'The SendMessage''s request id (an admission) or llm:<call id> (tokens).';
COMMENT ON COLUMN rate_admissions.kind IS 'message: an admission; tokens: a completed LLM call''s tokens.';
COMMENT ON COLUMN rate_admissions.at IS 'Postgres''s clock when it was counted (clock_timestamp() under the key''s lock): the sliding window is measured on it.';
COMMENT ON COLUMN rate_admissions.admitted IS 'true: counted in the window (an admitted message, a call''s tokens); false: a limited message, kept only so a re-run answers the same.';
COMMENT ON COLUMN rate_admissions.tokens IS 'The LLM call''s tokens (input + output + cache); 0 for messages.';
COMMENT ON COLUMN rate_admissions.limit_name IS 'The limit a limited message hit (rate_limit.requests_per_minute / rate_limit.tokens_per_minute).';
COMMENT ON COLUMN rate_admissions.reason IS 'The limited message''s reason, as recorded in AdmissionDecided.';
COMMENT ON COLUMN rate_admissions.retry_after_ms IS 'For a limited message: when a retry would be admitted (milliseconds after at).';
COMMENT ON COLUMN rate_admissions.waited_ms IS 'How long a queued admission (on_limit = queue) waited for the window.';
COMMENT ON COLUMN rate_admissions.session_id IS 'The session of the message or call.';
COMMENT ON COLUMN rate_admissions.client IS 'The requester identity of the message (Request.client), when stated.';
GRANT SELECT, INSERT, UPDATE, DELETE ON rate_admissions TO turnlog_app;
