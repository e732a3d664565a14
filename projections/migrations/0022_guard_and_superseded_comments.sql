-- Descriptions catch up with the values two features added: guard calls (a classifier
-- guardrail's LLM call: purpose 'guard', recorded with discarded 'guard') and the answers
-- of replaced issues (migration 0021: summed in their own columns).
COMMENT ON COLUMN llm_calls.purpose IS
    'Why the call was made: turn (answer the user), summarize (compaction) or guard (a classifier guardrail judging a message or an answer).';
COMMENT ON COLUMN llm_calls.discarded IS
    'Null when the answer is part of the conversation; else why it is recorded only for its usage and cost: late (answered after a cancel abandoned the call), truncated (cut at max_tokens inside a tool call, which was not run), context_window (the model stopped on a full context window), guardrail (an output guardrail blocked it: its text is not stored), guard (a classifier guardrail''s verdict). The answers of replaced issues (LlmCallCompleted discarded superseded) are summed in the superseded_* columns instead. From LlmCallCompleted.discarded.';
COMMENT ON COLUMN guardrail_trips.kind IS
    'substring, regex, max_length, json_schema, required_fields or classifier (a model asked, behind the rule''s allow_if/block_if patterns).';
