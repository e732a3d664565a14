-- Projections of turnlog.events: what users query with SQL.
--
-- Rule: every row here is a deterministic function of the events topic, so
-- `turnlog projections rebuild` (truncate + replay from offset 0) reproduces it exactly.
-- No column holds a wall-clock time of the projector; times are the events' occurred_at.
-- Rows of one session are written only by the owner of that session's partition, in
-- seq order; the only cross-session rows (session_links) carry the same content from
-- either side, so the interleaving of partitions never changes the result.
--
-- Money is integer nano-dollars (USD * 1e9), as in the event contract.

-- Where each projector consumer is in each partition. Updated in the SAME transaction
-- as the rows it covers: this, not Kafka's group offsets, is the consumer position.
-- `audit_next_offset` is the audit log's own position: a rebuild resets `next_offset`
-- only, so replayed events are not appended to the (never rebuilt) audit log twice.
CREATE TABLE projector_offsets (
    consumer          text    NOT NULL,
    topic             text    NOT NULL,
    partition         integer NOT NULL,
    next_offset       bigint  NOT NULL DEFAULT 0,
    audit_next_offset bigint  NOT NULL DEFAULT 0,
    -- Set when the partition stopped on a seq gap or a conflicting duplicate; the
    -- projector refuses to consume the partition until an operator clears it.
    stopped_offset    bigint,
    stopped_reason    text,
    PRIMARY KEY (consumer, topic, partition)
);

-- Tracking table: one row per projected event. The primary key is the duplicate check
-- of last resort; `digest` (sha256 of the canonical event) tells a harmless re-delivery
-- from a conflicting event at the same seq.
CREATE TABLE events (
    session_id      text        NOT NULL,
    seq             bigint      NOT NULL,
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL,
    turn_id         text,
    occurred_at     timestamptz NOT NULL,
    causation_id    text,
    correlation_id  text,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    digest          text        NOT NULL,
    PRIMARY KEY (session_id, seq)
);

CREATE TABLE sessions (
    session_id             text        PRIMARY KEY,
    agent                  text        NOT NULL,
    definition_hash        text,
    status                 text        NOT NULL CHECK (status IN ('active', 'closed')),
    phase                  text        NOT NULL,
    parent_session_id      text,
    parent_call_id         text,
    forked_from_session_id text,
    forked_at_seq          bigint,
    created_at             timestamptz NOT NULL,
    updated_at             timestamptz NOT NULL,
    turns                  integer     NOT NULL DEFAULT 0,
    turns_completed        integer     NOT NULL DEFAULT 0,
    turns_failed           integer     NOT NULL DEFAULT 0,
    turns_cancelled        integer     NOT NULL DEFAULT 0,
    first_seq              bigint      NOT NULL,
    last_seq               bigint      NOT NULL,
    last_entry_seq         bigint,
    llm_calls              integer     NOT NULL DEFAULT 0,
    input_tokens           bigint      NOT NULL DEFAULT 0,
    output_tokens          bigint      NOT NULL DEFAULT 0,
    cache_read_tokens      bigint      NOT NULL DEFAULT 0,
    cache_write_tokens     bigint      NOT NULL DEFAULT 0,
    cost_nanos             bigint      NOT NULL DEFAULT 0,
    closed_reason          text
);
CREATE INDEX sessions_agent_idx ON sessions (agent);
CREATE INDEX sessions_forked_from_idx ON sessions (forked_from_session_id)
    WHERE forked_from_session_id IS NOT NULL;

-- Delegation: child -> parent. Written from both sides (the parent's
-- ChildSessionRequested and the child's SessionStarted) with identical content.
CREATE TABLE session_links (
    child_session_id  text PRIMARY KEY,
    parent_session_id text NOT NULL,
    parent_call_id    text
);
CREATE INDEX session_links_parent_idx ON session_links (parent_session_id);

-- The conversation as a parent-linked graph. One entry per content-bearing event.
-- (parent_session_id, parent_seq) is the previous entry of the same branch: inside a
-- session it is exact; for the first own entry of a fork it is (source, at_seq), read
-- as "the last entry of the source branch at or before at_seq" (the source may be
-- projected by another partition, so it is resolved when read, not when written).
CREATE TABLE entries (
    session_id        text        NOT NULL,
    seq               bigint      NOT NULL,
    kind              text        NOT NULL
        CHECK (kind IN ('user', 'assistant', 'tool_call', 'tool_result', 'summary')),
    role              text        NOT NULL CHECK (role IN ('user', 'assistant')),
    call_id           text,
    tool_name         text,
    content           text        NOT NULL,
    is_error          boolean     NOT NULL DEFAULT false,
    parent_session_id text,
    parent_seq        bigint,
    turn_id           text,
    occurred_at       timestamptz NOT NULL,
    PRIMARY KEY (session_id, seq)
);

CREATE TABLE llm_calls (
    session_id         text   NOT NULL,
    call_id            text   NOT NULL,
    status             text   CHECK (status IN ('requested', 'completed', 'failed')),
    purpose            text,
    iteration          integer,
    model_requested    text,
    fallbacks          text[],
    max_tokens         integer,
    temperature        double precision,
    context_entries    integer,
    request_digest     text,
    reserved_tokens    bigint,
    reserved_nanos     bigint,
    requested_seq      bigint,
    requested_at       timestamptz,
    deadline_at        timestamptz,
    turn_id            text,
    model              text,
    fallback_used      boolean,
    attempts           integer,
    stop_reason        text,
    input_tokens       bigint,
    output_tokens      bigint,
    cache_read_tokens  bigint,
    cache_write_tokens bigint,
    cost_nanos         bigint,
    latency_ms         bigint,
    tool_calls         integer,
    completed_seq      bigint,
    completed_at       timestamptz,
    error_type         text,
    error_message      text,
    reissues           integer NOT NULL DEFAULT 0,
    circuits_opened    text[]  NOT NULL DEFAULT '{}',
    PRIMARY KEY (session_id, call_id)
);
CREATE INDEX llm_calls_completed_at_idx ON llm_calls (completed_at);

CREATE TABLE tool_calls (
    session_id        text NOT NULL,
    call_id           text NOT NULL,
    llm_call_id       text,
    name              text,
    arguments_json    text,
    decision          text CHECK (decision IN ('allow', 'deny', 'require_approval')),
    rule              text,
    status            text
        CHECK (status IN ('pending', 'awaiting_approval', 'approved', 'completed', 'failed',
                          'denied')),
    requested_seq     bigint,
    requested_at      timestamptz,
    deadline_at       timestamptz,
    turn_id           text,
    child_session_id  text,
    result_seq        bigint,
    completed_at      timestamptz,
    latency_ms        bigint,
    reissues          integer NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, call_id)
);

CREATE TABLE approvals (
    session_id    text NOT NULL,
    call_id       text NOT NULL,
    tool_name     text,
    outcome       text CHECK (outcome IN ('pending', 'granted', 'denied', 'expired')),
    requested_seq bigint,
    requested_at  timestamptz,
    expires_at    timestamptz,
    decided_by    text,
    reason        text,
    decided_seq   bigint,
    decided_at    timestamptz,
    -- How long the tool call waited for a human, in milliseconds.
    wait_ms       bigint GENERATED ALWAYS AS
        ((extract(epoch FROM (decided_at - requested_at)) * 1000)::bigint) STORED,
    PRIMARY KEY (session_id, call_id)
);

CREATE TABLE compactions (
    session_id         text NOT NULL,
    compaction_id      text NOT NULL,
    strategy           text,
    entry_seqs         bigint[],
    tokens_before      bigint,
    context_window     bigint,
    requested_seq      bigint,
    requested_at       timestamptz,
    removed_seqs       bigint[],
    tokens_after       bigint,
    model              text,
    input_tokens       bigint,
    output_tokens      bigint,
    cache_read_tokens  bigint,
    cache_write_tokens bigint,
    cost_nanos         bigint,
    completed_seq      bigint,
    completed_at       timestamptz,
    PRIMARY KEY (session_id, compaction_id)
);

-- ------------------------------------------------------------------ branches

-- One branch of a session, in order: the shared prefix inherited through forks plus the
-- session's own entries. Forks keep the source's seq numbering (a fork's first event is
-- at_seq + 1), so walking up the fork chain with a shrinking upper bound and ordering
-- by seq yields exactly the branch.
CREATE FUNCTION branch_entries(p_session_id text)
RETURNS SETOF entries
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE chain (session_id, upper_seq, depth) AS (
        SELECT p_session_id, NULL::bigint, 0
        UNION ALL
        SELECT s.forked_from_session_id,
               LEAST(COALESCE(c.upper_seq, s.forked_at_seq), s.forked_at_seq),
               c.depth + 1
        FROM chain c
        JOIN sessions s ON s.session_id = c.session_id
        WHERE s.forked_from_session_id IS NOT NULL AND c.depth < 1000
    )
    SELECT e.*
    FROM chain c
    JOIN entries e
      ON e.session_id = c.session_id
     AND (c.upper_seq IS NULL OR e.seq <= c.upper_seq)
    ORDER BY e.seq
$$;

-- Every branch of the fork tree a session belongs to: its root (the session nothing was
-- forked from) and all forks below it, with where each one branched off.
CREATE FUNCTION session_branches(p_session_id text)
RETURNS TABLE (
    session_id             text,
    forked_from_session_id text,
    forked_at_seq          bigint,
    depth                  integer,
    last_seq               bigint,
    own_entries            bigint,
    branch_entries         bigint,
    is_requested           boolean
)
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE up (session_id, depth) AS (
        SELECT p_session_id, 0
        UNION ALL
        SELECT s.forked_from_session_id, up.depth + 1
        FROM up JOIN sessions s ON s.session_id = up.session_id
        WHERE s.forked_from_session_id IS NOT NULL AND up.depth < 1000
    ),
    root AS (
        SELECT session_id FROM up ORDER BY depth DESC LIMIT 1
    ),
    down (session_id, depth) AS (
        SELECT session_id, 0 FROM root
        UNION ALL
        SELECT s.session_id, down.depth + 1
        FROM down JOIN sessions s ON s.forked_from_session_id = down.session_id
        WHERE down.depth < 1000
    )
    SELECT d.session_id,
           s.forked_from_session_id,
           s.forked_at_seq,
           d.depth,
           s.last_seq,
           (SELECT count(*) FROM entries e WHERE e.session_id = d.session_id),
           (SELECT count(*) FROM branch_entries(d.session_id)),
           d.session_id = p_session_id
    FROM down d
    LEFT JOIN sessions s ON s.session_id = d.session_id
    ORDER BY d.depth, s.forked_at_seq NULLS FIRST, d.session_id
$$;

-- ------------------------------------------------------------------ costs

-- Delegation ancestry: every (session, ancestor) pair, the session itself at depth 0.
CREATE VIEW session_lineage AS
    WITH RECURSIVE up (session_id, ancestor_id, depth) AS (
        SELECT session_id, session_id, 0 FROM sessions
        UNION ALL
        SELECT up.session_id, l.parent_session_id, up.depth + 1
        FROM up JOIN session_links l ON l.child_session_id = up.ancestor_id
        WHERE up.depth < 100
    )
    SELECT session_id, ancestor_id, depth FROM up;

-- The top-most delegating ancestor of every session (itself when it has no parent).
CREATE VIEW session_roots AS
    SELECT DISTINCT ON (session_id) session_id, ancestor_id AS root_session_id
    FROM session_lineage
    ORDER BY session_id, depth DESC;

-- Every priced item, once: completed LLM calls and summarize compactions. The cost is
-- the one RECORDED in the event (priced when it happened), never recomputed: a later
-- price change must not rewrite history.
CREATE VIEW cost_ledger AS
    SELECT c.session_id, c.completed_seq AS seq, c.completed_at AS occurred_at,
           'llm_call'::text AS kind, c.call_id AS item_id, c.model,
           c.input_tokens, c.output_tokens, c.cache_read_tokens, c.cache_write_tokens,
           c.cost_nanos
    FROM llm_calls c
    WHERE c.status = 'completed'
    UNION ALL
    SELECT k.session_id, k.completed_seq, k.completed_at,
           'compaction', k.compaction_id, k.model,
           k.input_tokens, k.output_tokens, k.cache_read_tokens, k.cache_write_tokens,
           k.cost_nanos
    FROM compactions k
    WHERE k.completed_seq IS NOT NULL AND k.model IS NOT NULL;

-- Per session: its own spend, and the total with every delegated descendant rolled up.
CREATE VIEW cost_by_session AS
    WITH own AS (
        SELECT session_id, count(*) AS items,
               sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
               sum(cache_read_tokens) AS cache_read_tokens,
               sum(cache_write_tokens) AS cache_write_tokens,
               sum(cost_nanos) AS cost_nanos
        FROM cost_ledger GROUP BY session_id
    ),
    total AS (
        SELECT l.ancestor_id AS session_id,
               sum(c.input_tokens) AS input_tokens, sum(c.output_tokens) AS output_tokens,
               sum(c.cache_read_tokens) AS cache_read_tokens,
               sum(c.cache_write_tokens) AS cache_write_tokens,
               sum(c.cost_nanos) AS cost_nanos
        FROM cost_ledger c JOIN session_lineage l ON l.session_id = c.session_id
        GROUP BY l.ancestor_id
    )
    SELECT s.session_id, s.agent, k.parent_session_id, r.root_session_id,
           COALESCE(own.items, 0)::bigint              AS priced_calls,
           COALESCE(own.input_tokens, 0)::bigint       AS own_input_tokens,
           COALESCE(own.output_tokens, 0)::bigint      AS own_output_tokens,
           COALESCE(own.cache_read_tokens, 0)::bigint  AS own_cache_read_tokens,
           COALESCE(own.cache_write_tokens, 0)::bigint AS own_cache_write_tokens,
           COALESCE(own.cost_nanos, 0)::bigint         AS own_cost_nanos,
           COALESCE(total.input_tokens, 0)::bigint       AS total_input_tokens,
           COALESCE(total.output_tokens, 0)::bigint      AS total_output_tokens,
           COALESCE(total.cache_read_tokens, 0)::bigint  AS total_cache_read_tokens,
           COALESCE(total.cache_write_tokens, 0)::bigint AS total_cache_write_tokens,
           COALESCE(total.cost_nanos, 0)::bigint         AS total_cost_nanos
    FROM sessions s
    LEFT JOIN session_links k ON k.child_session_id = s.session_id
    LEFT JOIN session_roots r ON r.session_id = s.session_id
    LEFT JOIN own ON own.session_id = s.session_id
    LEFT JOIN total ON total.session_id = s.session_id;

-- Per agent: what its own sessions spent, and what the session trees it started spent
-- (its root sessions with all delegated descendants, whatever their agents).
CREATE VIEW cost_by_agent AS
    WITH own AS (
        SELECT s.agent, count(*) AS items, sum(c.input_tokens) AS input_tokens,
               sum(c.output_tokens) AS output_tokens,
               sum(c.cache_read_tokens) AS cache_read_tokens,
               sum(c.cache_write_tokens) AS cache_write_tokens,
               sum(c.cost_nanos) AS cost_nanos
        FROM cost_ledger c JOIN sessions s ON s.session_id = c.session_id
        GROUP BY s.agent
    ),
    rolled AS (
        SELECT rs.agent, sum(c.cost_nanos) AS cost_nanos
        FROM cost_ledger c
        JOIN session_roots r ON r.session_id = c.session_id
        JOIN sessions rs ON rs.session_id = r.root_session_id
        GROUP BY rs.agent
    ),
    agents AS (
        SELECT agent, count(*) AS sessions,
               count(*) FILTER (WHERE NOT EXISTS (
                   SELECT 1 FROM session_links l WHERE l.child_session_id = sessions.session_id
               )) AS root_sessions
        FROM sessions GROUP BY agent
    )
    SELECT a.agent, a.sessions, a.root_sessions,
           COALESCE(own.items, 0)::bigint              AS priced_calls,
           COALESCE(own.input_tokens, 0)::bigint       AS input_tokens,
           COALESCE(own.output_tokens, 0)::bigint      AS output_tokens,
           COALESCE(own.cache_read_tokens, 0)::bigint  AS cache_read_tokens,
           COALESCE(own.cache_write_tokens, 0)::bigint AS cache_write_tokens,
           COALESCE(own.cost_nanos, 0)::bigint         AS own_cost_nanos,
           COALESCE(rolled.cost_nanos, 0)::bigint      AS rolled_up_cost_nanos
    FROM agents a
    LEFT JOIN own ON own.agent = a.agent
    LEFT JOIN rolled ON rolled.agent = a.agent;

CREATE VIEW cost_by_model AS
    SELECT model, count(*)::bigint AS priced_calls,
           sum(input_tokens)::bigint AS input_tokens,
           sum(output_tokens)::bigint AS output_tokens,
           sum(cache_read_tokens)::bigint AS cache_read_tokens,
           sum(cache_write_tokens)::bigint AS cache_write_tokens,
           sum(cost_nanos)::bigint AS cost_nanos
    FROM cost_ledger GROUP BY model;

-- Per UTC day of the priced event.
CREATE VIEW cost_by_day AS
    SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, count(*)::bigint AS priced_calls,
           sum(input_tokens)::bigint AS input_tokens,
           sum(output_tokens)::bigint AS output_tokens,
           sum(cache_read_tokens)::bigint AS cache_read_tokens,
           sum(cache_write_tokens)::bigint AS cache_write_tokens,
           sum(cost_nanos)::bigint AS cost_nanos
    FROM cost_ledger GROUP BY 1;
