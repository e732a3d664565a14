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
    used bigint,
    limit_value bigint,
    retry_after_ms bigint NOT NULL DEFAULT 0,
    waited_ms bigint NOT NULL DEFAULT 0,
    session_id text,
    client text,
    counted boolean NOT NULL DEFAULT false,
    PRIMARY KEY (limit_key, entry_id)
);
CREATE INDEX rate_admissions_age_idx ON rate_admissions (limit_key, at);
-- The rows inside their window: what leaves it is found without scanning what stays.
CREATE INDEX rate_admissions_counted_idx ON rate_admissions (limit_key, at) WHERE counted;
COMMENT ON TABLE rate_admissions IS
    'Counters of shared rate limits (per agent, per client), written by the effect runner''s admissions under a per-key advisory lock: a message admitted or limited, keyed by (limit key, request id) so a re-run admission gets the same answer and counts once; a completed LLM call''s tokens, keyed by llm:<call id>. Rows older than ten windows (at least 10 minutes) are pruned.';
COMMENT ON COLUMN rate_admissions.limit_key IS 'agent:<agent name> or client:<Request.client> (client:- for messages that state none).';
COMMENT ON COLUMN rate_admissions.entry_id IS 'The SendMessage''s request id (an admission) or llm:<call id> (tokens).';
COMMENT ON COLUMN rate_admissions.kind IS 'message: an admission; tokens: a completed LLM call''s tokens.';
COMMENT ON COLUMN rate_admissions.at IS 'Postgres''s clock when it was counted (clock_timestamp() under the key''s lock): the sliding window is measured on it.';
COMMENT ON COLUMN rate_admissions.admitted IS 'true: counted in the window (an admitted message, a call''s tokens); false: a limited message, kept only so a re-run answers the same.';
COMMENT ON COLUMN rate_admissions.tokens IS 'The LLM call''s tokens (input + output + cache); 0 for messages.';
COMMENT ON COLUMN rate_admissions.limit_name IS 'The limit a limited message hit (rate_limit.requests_per_minute / rate_limit.tokens_per_minute).';
COMMENT ON COLUMN rate_admissions.used IS 'For a limited message: what the window held (messages, or tokens) when it was limited.';
COMMENT ON COLUMN rate_admissions.limit_value IS 'For a limited message: the limit it hit (per window).';
COMMENT ON COLUMN rate_admissions.retry_after_ms IS 'For a limited message: when a retry would be admitted (milliseconds after at).';
COMMENT ON COLUMN rate_admissions.waited_ms IS 'How long a queued admission (on_limit = queue) waited for the window, in milliseconds.';
COMMENT ON COLUMN rate_admissions.session_id IS 'The session of the message or call.';
COMMENT ON COLUMN rate_admissions.client IS 'The requester identity of the message (Request.client), when stated.';
COMMENT ON COLUMN rate_admissions.counted IS 'true while the row is inside its window and counted in rate_counters (set false, and the counters decreased, by the first admission of the key after it left the window).';

-- Running totals of each key's window, kept exact under the key's lock: an admission adds
-- itself, a call's tokens add theirs, and the rows that left the window are taken off as
-- the next admission finds them (each row once): an admission costs the same however many
-- messages the window holds.
CREATE TABLE rate_counters (
    limit_key text PRIMARY KEY,
    messages bigint NOT NULL DEFAULT 0,
    tokens bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE rate_counters IS
    'The number of admitted messages and LLM tokens inside each shared rate limit''s window (the counted rows of rate_admissions), updated under the key''s advisory lock.';
COMMENT ON COLUMN rate_counters.limit_key IS 'agent:<agent name> or client:<Request.client>, as rate_admissions.limit_key.';
COMMENT ON COLUMN rate_counters.messages IS 'Admitted messages inside the window (as of the key''s last admission).';
COMMENT ON COLUMN rate_counters.tokens IS 'LLM tokens of completed calls inside the window (as of the key''s last admission).';
GRANT SELECT, INSERT, UPDATE, DELETE ON rate_admissions, rate_counters TO turnlog_app;

-- One admission in one statement (one round trip from the effect runner): under the
-- key's transaction advisory lock, the stored answer if the admission ran before, else
-- the window on Postgres's clock, the verdict and its row (a limited answer is stored
-- only when final: a queued admission asks again). Old rows of the key are pruned now
-- and then. Outputs the verdict; the runner words the reason from it.
CREATE FUNCTION turnlog_admit(
    p_key text,
    p_entry text,
    p_window_ms bigint,
    p_rpm bigint,
    p_tpm bigint,
    p_final boolean,
    p_waited_ms bigint,
    p_session text,
    p_client text,
    p_keep_ms bigint,
    OUT o_admitted boolean,
    OUT o_limit_name text,
    OUT o_used bigint,
    OUT o_limit_value bigint,
    OUT o_retry_after_ms bigint,
    OUT o_waited_ms bigint,
    OUT o_stored boolean
) LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz;
    v_window interval := make_interval(secs => p_window_ms / 1000.0);
    v_since timestamptz;
    v_messages bigint;
    v_tokens bigint;
    v_gone_messages bigint;
    v_gone_tokens bigint;
    v_frees timestamptz;
    v_left bigint;
    r record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_key, 0));
    SELECT a.admitted, a.limit_name, a.used, a.limit_value, a.retry_after_ms, a.waited_ms
      INTO o_admitted, o_limit_name, o_used, o_limit_value, o_retry_after_ms, o_waited_ms
      FROM rate_admissions a WHERE a.limit_key = p_key AND a.entry_id = p_entry;
    IF FOUND THEN
        o_stored := true;
        RETURN;
    END IF;
    o_stored := false;
    v_now := clock_timestamp();
    v_since := v_now - v_window;
    -- What left the window since the key's last admission, taken off its totals.
    WITH gone AS (
        UPDATE rate_admissions a SET counted = false
         WHERE a.limit_key = p_key AND a.counted AND a.at <= v_since
        RETURNING a.kind, a.tokens
    )
    SELECT count(*) FILTER (WHERE kind = 'message'), coalesce(sum(tokens), 0)
      INTO v_gone_messages, v_gone_tokens FROM gone;
    INSERT INTO rate_counters AS c (limit_key, messages, tokens) VALUES (p_key, 0, 0)
    ON CONFLICT (limit_key) DO UPDATE
       SET messages = c.messages - v_gone_messages, tokens = c.tokens - v_gone_tokens
    RETURNING c.messages, c.tokens INTO v_messages, v_tokens;
    o_admitted := true;
    o_used := 0;
    o_retry_after_ms := 0;
    o_waited_ms := p_waited_ms;
    IF p_rpm IS NOT NULL AND v_messages >= p_rpm THEN
        -- The message whose leaving frees a place: the (n - limit + 1)-th oldest.
        SELECT a.at INTO v_frees FROM rate_admissions a
         WHERE a.limit_key = p_key AND a.counted AND a.kind = 'message'
         ORDER BY a.at OFFSET (v_messages - p_rpm) LIMIT 1;
        o_admitted := false;
        o_limit_name := 'rate_limit.requests_per_minute';
        o_used := v_messages;
        o_limit_value := p_rpm;
    ELSIF p_tpm IS NOT NULL AND v_tokens >= p_tpm THEN
        v_left := v_tokens;
        FOR r IN SELECT a.at, a.tokens FROM rate_admissions a
                  WHERE a.limit_key = p_key AND a.counted AND a.kind = 'tokens'
                  ORDER BY a.at LOOP
            v_left := v_left - r.tokens;
            IF r.tokens > 0 AND v_left < p_tpm THEN
                v_frees := r.at;
                EXIT;
            END IF;
        END LOOP;
        o_admitted := false;
        o_limit_name := 'rate_limit.tokens_per_minute';
        o_used := v_tokens;
        o_limit_value := p_tpm;
    END IF;
    IF NOT o_admitted THEN
        o_retry_after_ms := greatest(
            1, ceil(extract(epoch FROM coalesce(v_frees, v_now) + v_window - v_now) * 1000)
        )::bigint;
    END IF;
    IF o_admitted OR p_final THEN
        INSERT INTO rate_admissions (limit_key, entry_id, kind, at, admitted, tokens,
                                     limit_name, used, limit_value, retry_after_ms,
                                     waited_ms, session_id, client, counted)
        VALUES (p_key, p_entry, 'message', v_now, o_admitted, 0, o_limit_name, o_used,
                o_limit_value, o_retry_after_ms, p_waited_ms, p_session, p_client,
                o_admitted)
        ON CONFLICT DO NOTHING;
        IF o_admitted AND FOUND THEN
            UPDATE rate_counters SET messages = messages + 1 WHERE limit_key = p_key;
        END IF;
    END IF;
    IF random() < 1.0 / 64 THEN
        DELETE FROM rate_admissions a
         WHERE a.limit_key = p_key AND NOT a.counted
           AND a.at < v_now - make_interval(secs => p_keep_ms / 1000.0);
    END IF;
END
$$;
COMMENT ON FUNCTION turnlog_admit(text, text, bigint, bigint, bigint, boolean, bigint, text, text, bigint) IS
    'One admission of a shared rate limit (streams.admission), in one statement: the stored answer for (key, entry) if any, else the verdict on the key''s sliding window under its transaction advisory lock, stored when admitted or final.';
GRANT EXECUTE ON FUNCTION turnlog_admit(text, text, bigint, bigint, bigint, boolean, bigint, text, text, bigint) TO turnlog_app;

-- Many admissions of one key in one statement, in order (the effect runner batches the
-- admissions of a key that wait while one is asked): one round trip for all of them.
CREATE FUNCTION turnlog_admit_many(
    p_key text,
    p_entries text[],
    p_window_ms bigint,
    p_rpm bigint,
    p_tpm bigint,
    p_final boolean[],
    p_waited_ms bigint[],
    p_sessions text[],
    p_clients text[],
    p_keep_ms bigint
) RETURNS TABLE (
    o_entry text,
    o_admitted boolean,
    o_limit_name text,
    o_used bigint,
    o_limit_value bigint,
    o_retry_after_ms bigint,
    o_waited_ms bigint,
    o_stored boolean
) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_entries, 1), 0) LOOP
        o_entry := p_entries[i];
        SELECT a.o_admitted, a.o_limit_name, a.o_used, a.o_limit_value,
               a.o_retry_after_ms, a.o_waited_ms, a.o_stored
          INTO o_admitted, o_limit_name, o_used, o_limit_value, o_retry_after_ms,
               o_waited_ms, o_stored
          FROM turnlog_admit(p_key, p_entries[i], p_window_ms, p_rpm, p_tpm, p_final[i],
                             p_waited_ms[i], p_sessions[i], p_clients[i], p_keep_ms) a;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION turnlog_admit_many(text, text[], bigint, bigint, bigint, boolean[], bigint[], text[], text[], bigint) IS
    'turnlog_admit for several admissions of one key, in order, in one statement (the effect runner''s batch of a key''s waiting admissions).';
GRANT EXECUTE ON FUNCTION turnlog_admit_many(text, text[], bigint, bigint, bigint, boolean[], bigint[], text[], text[], bigint) TO turnlog_app;

-- A completed LLM call's tokens under a shared limit's key, once per call id.
CREATE FUNCTION turnlog_count_tokens(
    p_key text, p_entry text, p_tokens bigint, p_session text, p_client text
) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_key, 0));
    INSERT INTO rate_admissions (limit_key, entry_id, kind, at, admitted, tokens,
                                 session_id, client, counted)
    VALUES (p_key, p_entry, 'tokens', clock_timestamp(), true, p_tokens, p_session,
            p_client, true)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO rate_counters AS c (limit_key, messages, tokens) VALUES (p_key, 0, p_tokens)
    ON CONFLICT (limit_key) DO UPDATE SET tokens = c.tokens + p_tokens;
    RETURN true;
END
$$;
COMMENT ON FUNCTION turnlog_count_tokens(text, text, bigint, text, text) IS
    'Records a completed LLM call''s tokens under a shared rate limit''s key (streams.admission), once per call id, in the key''s running totals.';
GRANT EXECUTE ON FUNCTION turnlog_count_tokens(text, text, bigint, text, text) TO turnlog_app;

-- Per-client budgets ([clients.<name>], streams.budgets): alerts and enforcements of
-- scope client.
ALTER TABLE budget_alerts DROP CONSTRAINT budget_alerts_scope_check,
    ADD CONSTRAINT budget_alerts_scope_check
    CHECK (scope IN ('session', 'agent', 'project', 'client'));
ALTER TABLE budget_limits DROP CONSTRAINT budget_limits_scope_check,
    ADD CONSTRAINT budget_limits_scope_check CHECK (scope IN ('agent', 'project', 'client'));
COMMENT ON COLUMN budget_alerts.scope IS 'session (one session''s spend), agent (every session of the agent in the period), project (every session of the project''s agents in the period) or client (every session the client started in the period: sessions.client).';
COMMENT ON COLUMN budget_alerts.scope_key IS 'The session id, agent name, project name or client identity.';
COMMENT ON COLUMN budget_limits.scope IS 'agent, project or client.';
COMMENT ON COLUMN budget_limits.scope_key IS 'The agent or project name, or the client identity.';
