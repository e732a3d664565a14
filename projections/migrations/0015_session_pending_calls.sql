-- The session's phase is the core's (agents.phases): the projector keeps, with the phase,
-- the unresolved tool calls of the current step that decide the next one.
ALTER TABLE sessions ADD COLUMN pending_calls text[] NOT NULL DEFAULT '{}';
COMMENT ON COLUMN sessions.pending_calls IS
    'Unresolved tool calls of the current step as ''status:call_id'' (status approval, tool or child), in request order; with phase, what agents.phases needs to derive the phase after the next event. Empty when idle or closed.';
