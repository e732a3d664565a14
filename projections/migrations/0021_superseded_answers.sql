-- An LLM call issued more than once (a takeover re-issue, a deadline re-issue) can be
-- answered by an issue that was replaced: the core charges that answer once
-- (LlmCallCompleted, discarded 'superseded') without taking it as the call's answer.
-- Its usage and cost add up here, beside the call's own answer, and the ledger lists
-- them as items of their own. The ledger also lists the late answer of a call a cancel
-- abandoned (its row is 'cancelled', its cost filled by the late answer): charged to the
-- session since 0009, missing from the ledger until now.
ALTER TABLE llm_calls
    ADD COLUMN superseded_answers            integer NOT NULL DEFAULT 0,
    ADD COLUMN superseded_input_tokens       bigint  NOT NULL DEFAULT 0,
    ADD COLUMN superseded_output_tokens      bigint  NOT NULL DEFAULT 0,
    ADD COLUMN superseded_cache_read_tokens  bigint  NOT NULL DEFAULT 0,
    ADD COLUMN superseded_cache_write_tokens bigint  NOT NULL DEFAULT 0,
    ADD COLUMN superseded_cost_nanos         bigint  NOT NULL DEFAULT 0,
    ADD COLUMN superseded_seq                bigint,
    ADD COLUMN superseded_at                 timestamptz;

COMMENT ON COLUMN llm_calls.superseded_answers IS
    'Answers of issues of this call that a re-issue replaced, charged but not part of the conversation (LlmCallCompleted with discarded = superseded).';
COMMENT ON COLUMN llm_calls.superseded_input_tokens IS
    'Input tokens of those answers, summed, in tokens.';
COMMENT ON COLUMN llm_calls.superseded_output_tokens IS
    'Output tokens of those answers, summed, in tokens.';
COMMENT ON COLUMN llm_calls.superseded_cache_read_tokens IS
    'Cache-read input tokens of those answers, summed, in tokens.';
COMMENT ON COLUMN llm_calls.superseded_cache_write_tokens IS
    'Cache-write input tokens of those answers, summed, in tokens.';
COMMENT ON COLUMN llm_calls.superseded_cost_nanos IS
    'Cost of those answers, summed, USD in nano-dollars (USD x 1e9, integer), as recorded in the events.';
COMMENT ON COLUMN llm_calls.superseded_seq IS
    'Seq of the latest such charge (NULL: none).';
COMMENT ON COLUMN llm_calls.superseded_at IS
    'Event time of the latest such charge (NULL: none).';

CREATE OR REPLACE VIEW cost_ledger AS
    SELECT c.session_id, c.completed_seq AS seq, c.completed_at AS occurred_at,
           (CASE WHEN c.purpose = 'summarize' THEN 'compaction' ELSE 'llm_call' END)::text
               AS kind,
           c.call_id AS item_id, c.model,
           c.input_tokens, c.output_tokens, c.cache_read_tokens, c.cache_write_tokens,
           c.cost_nanos
    FROM llm_calls c
    WHERE c.status = 'completed' OR (c.status = 'cancelled' AND c.cost_nanos IS NOT NULL)
    UNION ALL
    SELECT c.session_id, c.superseded_seq, c.superseded_at,
           'superseded_answer'::text,
           c.call_id, COALESCE(c.model, c.model_requested),
           c.superseded_input_tokens, c.superseded_output_tokens,
           c.superseded_cache_read_tokens, c.superseded_cache_write_tokens,
           c.superseded_cost_nanos
    FROM llm_calls c
    WHERE c.superseded_answers > 0;

COMMENT ON VIEW cost_ledger IS
    'Every priced item once: completed LLM calls (LlmCallCompleted), summarize compactions (ContextCompacted), late answers of calls a cancel abandoned, and the answers of replaced issues of a call (superseded_answer, summed per call), with the cost recorded in the events, never recomputed.';
COMMENT ON COLUMN cost_ledger.kind IS
    'llm_call, compaction, or superseded_answer (answers of issues a re-issue replaced, summed per call).';
