-- Issue 15: the model a session switched to (turnlog model / SetModel → ModelChanged),
-- and the reasoning tokens of each LLM call (priced at the catalog's reasoning price).
ALTER TABLE sessions ADD COLUMN model text;
COMMENT ON COLUMN sessions.model IS
    'The model the session''s later LLM calls use after its last ModelChanged (a SetModel request, `turnlog model SESSION MODEL`); NULL while it uses its agent''s own model.';

ALTER TABLE llm_calls ADD COLUMN reasoning_tokens bigint;
COMMENT ON COLUMN llm_calls.reasoning_tokens IS
    'The part of output_tokens the model spent reasoning (OpenAI reasoning tokens, Gemini thoughts), priced at the catalog''s reasoning price; NULL until the call completes, 0 where the vendor does not report it apart (Anthropic bills thinking as output tokens).';
