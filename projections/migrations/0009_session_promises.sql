-- Sessions keep their promises: a cancelled turn closes every row of the work it
-- abandoned (TurnCancelled names it), a late answer of an abandoned call is charged,
-- refused turns and queued messages have SQL of their own.

ALTER TABLE llm_calls DROP CONSTRAINT IF EXISTS llm_calls_status_check;
ALTER TABLE llm_calls ADD CONSTRAINT llm_calls_status_check
    CHECK (status IN ('requested', 'completed', 'failed', 'cancelled'));
ALTER TABLE llm_calls ADD COLUMN discarded text;
COMMENT ON COLUMN llm_calls.status IS
    'requested, completed, failed, or cancelled (its turn was cancelled while it ran; a late answer still fills the usage and cost columns).';
COMMENT ON COLUMN llm_calls.discarded IS
    'Null when the answer is part of the conversation; else why it is recorded only for its usage and cost: late (answered after a cancel abandoned the call), truncated (cut at max_tokens inside a tool call, which was not run), context_window (the model stopped on a full context window). From LlmCallCompleted.discarded.';

ALTER TABLE tool_calls DROP CONSTRAINT IF EXISTS tool_calls_status_check;
ALTER TABLE tool_calls ADD CONSTRAINT tool_calls_status_check
    CHECK (status IN ('pending', 'awaiting_approval', 'approved', 'completed', 'failed',
                      'denied', 'cancelled'));
COMMENT ON COLUMN tool_calls.status IS
    'pending, awaiting_approval, approved, completed, failed, denied, or cancelled (its turn was cancelled before it resolved: TurnCancelled.tool_call_ids).';

ALTER TABLE approvals DROP CONSTRAINT IF EXISTS approvals_outcome_check;
ALTER TABLE approvals ADD CONSTRAINT approvals_outcome_check
    CHECK (outcome IN ('pending', 'granted', 'denied', 'expired', 'cancelled'));
COMMENT ON COLUMN approvals.outcome IS
    'pending, granted, denied, expired, or cancelled (its turn was cancelled while it waited: TurnCancelled.approval_call_ids).';

ALTER TABLE sessions ADD COLUMN turns_refused integer NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN queued integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN sessions.turns_refused IS
    'Turns that ended because the model refused to answer (TurnFailed with error_type Refused); not counted in turns_failed.';
COMMENT ON COLUMN sessions.queued IS
    'Messages waiting now for the running turn to end (MessageQueued, less those started or dropped).';

CREATE TABLE queued_messages (
    session_id      text        NOT NULL,
    request_id      text        NOT NULL,
    queued_seq      bigint      NOT NULL,
    position        integer     NOT NULL,
    content         text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('queued', 'started', 'dropped')),
    queued_at       timestamptz NOT NULL,
    started_turn_id text,
    ended_seq       bigint,
    ended_at        timestamptz,
    reason          text,
    PRIMARY KEY (session_id, request_id)
);
CREATE INDEX queued_messages_waiting_idx ON queued_messages (session_id, queued_seq)
    WHERE status = 'queued';
COMMENT ON TABLE queued_messages IS
    'Messages that arrived while a turn ran (MessageQueued): they start the next turn in order (TurnStarted.queued_seq) or are dropped (QueuedMessageDropped).';
COMMENT ON COLUMN queued_messages.session_id IS 'Session the message was sent to.';
COMMENT ON COLUMN queued_messages.request_id IS 'Request that sent the message (cancel --queued takes it).';
COMMENT ON COLUMN queued_messages.queued_seq IS 'Seq of the MessageQueued event.';
COMMENT ON COLUMN queued_messages.position IS 'Place in the queue when it arrived (1 = next).';
COMMENT ON COLUMN queued_messages.content IS 'The message text.';
COMMENT ON COLUMN queued_messages.status IS 'queued (waiting), started (its turn began) or dropped.';
COMMENT ON COLUMN queued_messages.queued_at IS 'When the worker took the message (the log''s time).';
COMMENT ON COLUMN queued_messages.started_turn_id IS 'Turn the message started (TurnStarted), when started.';
COMMENT ON COLUMN queued_messages.ended_seq IS 'Seq of the TurnStarted or QueuedMessageDropped that ended its wait.';
COMMENT ON COLUMN queued_messages.ended_at IS 'When its wait ended.';
COMMENT ON COLUMN queued_messages.reason IS 'Why it was dropped (QueuedMessageDropped.reason).';

-- The projector's role writes it like the other projection tables (0003).
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON queued_messages TO turnlog_app;
