-- Guardrails and structured output (agents.guardrails, agents.structured): every trip
-- of a guardrail (GuardrailTripped) and every check of a final answer against the
-- agent's output_schema (StructuredOutputAccepted / StructuredOutputInvalid).

CREATE TABLE guardrail_trips (
    session_id  text NOT NULL,
    event_id    text NOT NULL,
    seq         bigint,
    turn_id     text,
    agent       text,
    rule        text,
    kind        text,
    action      text CHECK (action IN ('block', 'redact', 'warn')),
    stage       text CHECK (stage IN ('input', 'output')),
    detail      text,
    call_id     text,
    tripped_at  timestamptz,
    PRIMARY KEY (session_id, event_id)
);
CREATE INDEX guardrail_trips_rule ON guardrail_trips (agent, rule);
COMMENT ON TABLE guardrail_trips IS
    'One row per guardrail trip (GuardrailTripped): a rule of the agent that matched the user''s input or the model''s output, and what it did.';
COMMENT ON COLUMN guardrail_trips.session_id IS 'The session.';
COMMENT ON COLUMN guardrail_trips.event_id IS 'The GuardrailTripped event (events.event_id).';
COMMENT ON COLUMN guardrail_trips.seq IS 'Seq of the GuardrailTripped event.';
COMMENT ON COLUMN guardrail_trips.turn_id IS 'The turn it tripped in (for a queued message: the turn running when it queued).';
COMMENT ON COLUMN guardrail_trips.agent IS 'The agent whose guardrail it is.';
COMMENT ON COLUMN guardrail_trips.rule IS 'The rule''s name in the agent file ([[agents.X.guardrails]] name).';
COMMENT ON COLUMN guardrail_trips.kind IS 'substring, regex, max_length, json_schema or required_fields.';
COMMENT ON COLUMN guardrail_trips.action IS 'block (the turn failed, GuardrailBlocked), redact (the stored text is the redacted one) or warn (recorded only).';
COMMENT ON COLUMN guardrail_trips.stage IS 'input (the user''s message) or output (the model''s answer); the event''s field `on`.';
COMMENT ON COLUMN guardrail_trips.detail IS 'What tripped, never quoting the text (matches counted, length, the JSON Schema keyword and path).';
COMMENT ON COLUMN guardrail_trips.call_id IS 'The LLM call whose answer tripped an output rule; null for input.';
COMMENT ON COLUMN guardrail_trips.tripped_at IS 'When (the log''s time).';

CREATE TABLE structured_outputs (
    session_id   text NOT NULL,
    call_id      text NOT NULL,
    turn_id      text,
    agent        text,
    valid        boolean,
    attempt      integer,
    result       jsonb,
    error        text,
    seq          bigint,
    recorded_at  timestamptz,
    PRIMARY KEY (session_id, call_id)
);
COMMENT ON TABLE structured_outputs IS
    'One row per final answer checked against the agent''s output_schema: the structured result of a turn (valid) or the error that got a corrective attempt.';
COMMENT ON COLUMN structured_outputs.session_id IS 'The session.';
COMMENT ON COLUMN structured_outputs.call_id IS 'The LLM call whose answer was checked (llm_calls.call_id).';
COMMENT ON COLUMN structured_outputs.turn_id IS 'The turn.';
COMMENT ON COLUMN structured_outputs.agent IS 'The agent whose output_schema it was checked against.';
COMMENT ON COLUMN structured_outputs.valid IS 'True: the answer matches and is the turn''s result; false: it did not, and the model was asked once more.';
COMMENT ON COLUMN structured_outputs.attempt IS 'For an invalid answer: the corrective attempt it caused (1); null when valid.';
COMMENT ON COLUMN structured_outputs.result IS 'The answer as JSON (canonical), when valid.';
COMMENT ON COLUMN structured_outputs.error IS 'Where the answer fails the schema, when invalid (sent to the model as the correction).';
COMMENT ON COLUMN structured_outputs.seq IS 'Seq of the StructuredOutputAccepted or StructuredOutputInvalid event.';
COMMENT ON COLUMN structured_outputs.recorded_at IS 'When (the log''s time).';

COMMENT ON COLUMN llm_calls.discarded IS
    'Null when the answer is part of the conversation; else why it is recorded only for its usage and cost: late (answered after a cancel abandoned the call), truncated (cut at max_tokens inside a tool call, which was not run), context_window (the model stopped on a full context window), guardrail (an output guardrail blocked it: its text is not stored). From LlmCallCompleted.discarded.';

-- The projector's role writes them like the other projection tables (0003).
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON guardrail_trips, structured_outputs TO turnlog_app;
