-- The response cache (agents.response_cache, streams.response_cache): answers of LLM
-- calls of agents with [agents.X.cache], shared by every worker process and kept across
-- restarts. Written and read by the session workers' effect runners, not by the
-- projector: it is not a projection of the log (a hit is recorded in the log as an
-- LlmCallCompleted with cached_from; replay never reads this table).

CREATE TABLE response_cache (
    cache_key       text PRIMARY KEY,
    model           text NOT NULL,
    request_digest  text NOT NULL,
    answer          jsonb NOT NULL,
    session_id      text NOT NULL,
    call_id         text NOT NULL,
    input_tokens    bigint NOT NULL DEFAULT 0,
    output_tokens   bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX response_cache_created ON response_cache (created_at);
COMMENT ON TABLE response_cache IS
    'The response cache: one answer per exact LLM request (requested model + request digest) of an agent with [agents.X.cache]; reused while younger than the agent''s ttl_s. Written by the session workers'' effect runners; safe to truncate (the next identical call asks the model).';
COMMENT ON COLUMN response_cache.cache_key IS 'sha256 of the requested model and the request digest (agents.response_cache.cache_key).';
COMMENT ON COLUMN response_cache.model IS 'The model the request was sent to (LlmCallRequested.model).';
COMMENT ON COLUMN response_cache.request_digest IS 'The request digest the log records (llm_calls.request_digest).';
COMMENT ON COLUMN response_cache.answer IS 'The answer as the core recorded it would be reported: model, text (output guardrails'' redactions applied), tool uses, stop reason, thinking blocks.';
COMMENT ON COLUMN response_cache.session_id IS 'The session of the call that paid for the answer.';
COMMENT ON COLUMN response_cache.call_id IS 'The call that paid for the answer (llm_calls.call_id; a hit records it as cached_from).';
COMMENT ON COLUMN response_cache.input_tokens IS 'Input tokens the paying call used, in tokens (what a hit saves).';
COMMENT ON COLUMN response_cache.output_tokens IS 'Output tokens the paying call used (what a hit saves).';
COMMENT ON COLUMN response_cache.created_at IS 'When the answer was stored (the database''s clock); entries older than an agent''s ttl_s are not used.';

ALTER TABLE llm_calls ADD COLUMN cached_from text;
COMMENT ON COLUMN llm_calls.cached_from IS
    'Answered from the response cache: the call that paid for the answer (its row has the cost saved); null for an answer from the model. From LlmCallCompleted.cached_from.';

CREATE VIEW cache_savings AS
SELECT c.session_id,
       c.call_id,
       c.cached_from,
       c.completed_at,
       o.model,
       o.input_tokens  AS saved_input_tokens,
       o.output_tokens AS saved_output_tokens,
       o.cost_nanos    AS saved_nanos
FROM llm_calls c
JOIN llm_calls o ON o.call_id = c.cached_from
WHERE c.cached_from IS NOT NULL;
COMMENT ON VIEW cache_savings IS
    'One row per LLM call answered from the response cache, with what the paying call (cached_from) cost: the tokens and nano-dollars the hit saved.';
COMMENT ON COLUMN cache_savings.session_id IS 'The session of the call answered from the cache.';
COMMENT ON COLUMN cache_savings.call_id IS 'The call answered from the cache (cost 0).';
COMMENT ON COLUMN cache_savings.cached_from IS 'The call that paid for the answer.';
COMMENT ON COLUMN cache_savings.completed_at IS 'When the cached answer was recorded (the log''s time).';
COMMENT ON COLUMN cache_savings.model IS 'The model that gave the answer, once.';
COMMENT ON COLUMN cache_savings.saved_input_tokens IS 'Input tokens the paying call used, not spent again.';
COMMENT ON COLUMN cache_savings.saved_output_tokens IS 'Output tokens the paying call used, not spent again.';
COMMENT ON COLUMN cache_savings.saved_nanos IS 'What the paying call cost, in nano-dollars: not spent again.';

-- The workers' role (turnlog_app, as the projector's) reads and writes the cache.
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON response_cache TO turnlog_app;
GRANT SELECT ON cache_savings TO turnlog_app;
