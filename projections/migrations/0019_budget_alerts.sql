-- Budget alerts (agents.budget alert_at / alert_at_usd): every soft threshold a budget's
-- spend crossed, once per threshold per scope. Session scope comes from BudgetAlert
-- events (the projector); agent and project scope (a UTC day's spend across sessions)
-- from the budget watcher (streams.budgets), which also writes them here.

CREATE TABLE budget_alerts (
    scope         text NOT NULL CHECK (scope IN ('session', 'agent', 'project')),
    scope_key     text NOT NULL,
    period        text NOT NULL DEFAULT '',
    unit          text NOT NULL CHECK (unit IN ('tokens', 'usd')),
    threshold     bigint NOT NULL,
    fraction      double precision,
    spent         bigint,
    budget_limit  bigint,
    session_id    text,
    event_id      text,
    seq           bigint,
    agent         text,
    alerted_at    timestamptz,
    PRIMARY KEY (scope, scope_key, period, unit, threshold)
);
CREATE INDEX budget_alerts_session ON budget_alerts (session_id);
COMMENT ON TABLE budget_alerts IS
    'One row per soft budget threshold crossed (BudgetAlert, or the budget watcher for agent and project budgets across sessions): once per threshold per scope, before any hard stop.';
COMMENT ON COLUMN budget_alerts.scope IS 'session (one session''s spend), agent (every session of the agent in the period) or project (every session of the project''s agents in the period).';
COMMENT ON COLUMN budget_alerts.scope_key IS 'The session id, agent name or project name.';
COMMENT ON COLUMN budget_alerts.period IS 'The UTC day (YYYY-MM-DD) of an agent or project budget; empty for a session budget.';
COMMENT ON COLUMN budget_alerts.unit IS 'tokens or usd (amounts in nano-dollars).';
COMMENT ON COLUMN budget_alerts.threshold IS 'The threshold crossed, in tokens or nano-dollars.';
COMMENT ON COLUMN budget_alerts.fraction IS 'The alert_at fraction of the limit it came from; null for an alert_at_usd amount.';
COMMENT ON COLUMN budget_alerts.spent IS 'Spend when the crossing was seen (tokens or nano-dollars).';
COMMENT ON COLUMN budget_alerts.budget_limit IS 'The budget''s limit (tokens or nano-dollars); null when the agent sets an amount but no limit.';
COMMENT ON COLUMN budget_alerts.session_id IS 'The session whose BudgetAlert event it is; null for the watcher''s agent and project alerts.';
COMMENT ON COLUMN budget_alerts.event_id IS 'The BudgetAlert event (events.event_id); null for the watcher''s alerts.';
COMMENT ON COLUMN budget_alerts.seq IS 'Seq of the BudgetAlert event; null for the watcher''s alerts.';
COMMENT ON COLUMN budget_alerts.agent IS 'The agent of the session (session scope) or the agent budget (agent scope); null for a project.';
COMMENT ON COLUMN budget_alerts.alerted_at IS 'When: the log''s time of the event, or the watcher''s poll.';

CREATE TABLE budget_limits (
    session_id    text NOT NULL,
    scope         text NOT NULL CHECK (scope IN ('agent', 'project')),
    scope_key     text NOT NULL,
    period        text NOT NULL,
    unit          text,
    budget_limit  bigint,
    spent         bigint,
    until         timestamptz,
    seq           bigint,
    agent         text,
    reached_at    timestamptz,
    PRIMARY KEY (session_id, scope, scope_key, period)
);
CREATE INDEX budget_limits_scope ON budget_limits (scope, scope_key, period);
COMMENT ON TABLE budget_limits IS
    'One row per session a spent budget across sessions was enforced on (BudgetLimitReached, from the budget watcher''s EnforceBudget): until `until` the session starts no new turn.';
COMMENT ON COLUMN budget_limits.session_id IS 'The session the budget is enforced on.';
COMMENT ON COLUMN budget_limits.scope IS 'agent or project.';
COMMENT ON COLUMN budget_limits.scope_key IS 'The agent or project name.';
COMMENT ON COLUMN budget_limits.period IS 'The UTC day (YYYY-MM-DD) whose budget is spent.';
COMMENT ON COLUMN budget_limits.unit IS 'usd (amounts in nano-dollars).';
COMMENT ON COLUMN budget_limits.budget_limit IS 'The day_usd limit, in nano-dollars.';
COMMENT ON COLUMN budget_limits.spent IS 'The spend of the scope the watcher saw, in nano-dollars.';
COMMENT ON COLUMN budget_limits.until IS 'When the period ends and new turns are accepted again.';
COMMENT ON COLUMN budget_limits.seq IS 'Seq of the BudgetLimitReached event.';
COMMENT ON COLUMN budget_limits.agent IS 'The session''s agent.';
COMMENT ON COLUMN budget_limits.reached_at IS 'When the session recorded it (the log''s time); minus the crossing time, the enforcement lag.';

-- The projector's role writes them like the other projection tables (0003); the budget
-- watcher connects as the same role.
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON budget_alerts, budget_limits TO turnlog_app;

-- Prompt variants (agents.variants): the A/B arm a session was assigned when it started.
ALTER TABLE sessions ADD COLUMN variant text;
COMMENT ON COLUMN sessions.variant IS
    'The prompt variant (A/B test, [[agents.X.variants]]) the session was assigned when it started (SessionStarted.variant): its system prompt and model replace the agent''s for every call of the session; NULL: the agent has no variants (or the session is a fork).';
