-- Summarize compactions are LLM calls: the session worker requests them as
-- LlmCallRequested(purpose 'summarize', call_id = the compaction id) and records their
-- outcome, usage and cost in ContextCompacted (there is no LlmCallCompleted for them).
-- The projector folds that outcome into the llm_calls row too, so llm_calls holds every
-- priced call exactly once and the ledger reads llm_calls alone (compactions keep
-- their own copy of the numbers for the compaction view, never summed twice).
CREATE OR REPLACE VIEW cost_ledger AS
    SELECT c.session_id, c.completed_seq AS seq, c.completed_at AS occurred_at,
           (CASE WHEN c.purpose = 'summarize' THEN 'compaction' ELSE 'llm_call' END)::text
               AS kind,
           c.call_id AS item_id, c.model,
           c.input_tokens, c.output_tokens, c.cache_read_tokens, c.cache_write_tokens,
           c.cost_nanos
    FROM llm_calls c
    WHERE c.status = 'completed';
