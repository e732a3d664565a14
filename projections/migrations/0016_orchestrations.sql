-- Orchestrations (agents.orchestration): a delegate_many call or a team agent's turn fans
-- out to member child sessions and combines their answers. Projected from
-- OrchestrationStarted, ChildSessionRequested/Completed of the members,
-- OrchestrationMemberCancelled and OrchestrationCompleted.

CREATE TABLE orchestrations (
    session_id         text NOT NULL,
    call_id            text NOT NULL,
    turn_id            text,
    mode               text CHECK (mode IN ('all', 'race', 'quorum', 'sequential')),
    quorum             integer,
    combine            text,
    members            integer,
    member_timeout_ms  bigint,
    status             text CHECK (status IN ('running', 'completed', 'failed')),
    started_seq        bigint,
    started_at         timestamptz,
    winner_call_id     text,
    completed_members  integer,
    failed_members     integer,
    cancelled_members  integer,
    result             text,
    completed_seq      bigint,
    completed_at       timestamptz,
    PRIMARY KEY (session_id, call_id)
);
COMMENT ON TABLE orchestrations IS
    'One row per orchestration: a delegate_many tool call (or a team agent''s turn) that runs member child sessions and combines their answers (OrchestrationStarted, OrchestrationCompleted).';
COMMENT ON COLUMN orchestrations.session_id IS 'The orchestrating (parent) session.';
COMMENT ON COLUMN orchestrations.call_id IS 'The delegate_many tool call it answers (tool_calls.call_id).';
COMMENT ON COLUMN orchestrations.turn_id IS 'Turn of the parent session it ran in.';
COMMENT ON COLUMN orchestrations.mode IS 'all, race (first answer wins), quorum (quorum answers) or sequential (a pipeline).';
COMMENT ON COLUMN orchestrations.quorum IS 'Answers a quorum needs (0 in the other modes).';
COMMENT ON COLUMN orchestrations.combine IS 'How answers were combined: concatenate, first, last or vote.';
COMMENT ON COLUMN orchestrations.members IS 'Members planned (a sequence may stop before starting all).';
COMMENT ON COLUMN orchestrations.member_timeout_ms IS 'Each member''s allowance from its start, in milliseconds.';
COMMENT ON COLUMN orchestrations.status IS 'running, completed (enough answers) or failed.';
COMMENT ON COLUMN orchestrations.started_seq IS 'Seq of its OrchestrationStarted in the parent session.';
COMMENT ON COLUMN orchestrations.started_at IS 'When it started (the log''s time).';
COMMENT ON COLUMN orchestrations.winner_call_id IS 'The member whose answer won (race, first, last, vote); null when every answer was combined.';
COMMENT ON COLUMN orchestrations.completed_members IS 'Members whose answer counted.';
COMMENT ON COLUMN orchestrations.failed_members IS 'Members that failed or timed out.';
COMMENT ON COLUMN orchestrations.cancelled_members IS 'Members the orchestration stopped because they were no longer needed.';
COMMENT ON COLUMN orchestrations.result IS 'The combined result, the tool result the parent''s model saw.';
COMMENT ON COLUMN orchestrations.completed_seq IS 'Seq of its OrchestrationCompleted.';
COMMENT ON COLUMN orchestrations.completed_at IS 'When it completed.';

CREATE TABLE orchestration_members (
    session_id          text NOT NULL,
    member_call_id      text NOT NULL,
    call_id             text,
    position            integer,
    agent               text,
    task                text,
    child_session_id    text,
    status              text CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
    started_seq         bigint,
    started_at          timestamptz,
    stopped             boolean,
    stop_seq            bigint,
    stop_reason         text,
    winner              boolean,
    answer              text,
    input_tokens        bigint,
    output_tokens       bigint,
    cache_read_tokens   bigint,
    cache_write_tokens  bigint,
    cost_nanos          bigint,
    completed_seq       bigint,
    completed_at        timestamptz,
    PRIMARY KEY (session_id, member_call_id)
);
CREATE INDEX orchestration_members_call_idx ON orchestration_members (session_id, call_id);
COMMENT ON TABLE orchestration_members IS
    'Every started member of an orchestration: a child session, its outcome, whether the orchestration stopped it, and the cost it reported (a stopped member''s partial cost included).';
COMMENT ON COLUMN orchestration_members.session_id IS 'The orchestrating (parent) session.';
COMMENT ON COLUMN orchestration_members.member_call_id IS 'The member''s call id, <call_id>.m<position>.';
COMMENT ON COLUMN orchestration_members.call_id IS 'The orchestration (orchestrations.call_id).';
COMMENT ON COLUMN orchestration_members.position IS 'The member''s place in the orchestration''s list, from 0 (a sequence runs them in this order).';
COMMENT ON COLUMN orchestration_members.agent IS 'Agent the member ran.';
COMMENT ON COLUMN orchestration_members.task IS 'The message the member''s child session was started with.';
COMMENT ON COLUMN orchestration_members.child_session_id IS 'The member''s child session (session_links.child_session_id).';
COMMENT ON COLUMN orchestration_members.status IS 'running, or how its child session''s turn ended as reported: completed, failed (timeouts included) or cancelled.';
COMMENT ON COLUMN orchestration_members.started_seq IS 'Seq of the member''s ChildSessionRequested in the parent session.';
COMMENT ON COLUMN orchestration_members.started_at IS 'When the member was started.';
COMMENT ON COLUMN orchestration_members.stopped IS 'True when the orchestration cancelled it as no longer needed (OrchestrationMemberCancelled); its answer, if any, did not count.';
COMMENT ON COLUMN orchestration_members.stop_seq IS 'Seq of its OrchestrationMemberCancelled.';
COMMENT ON COLUMN orchestration_members.stop_reason IS 'Why it was stopped.';
COMMENT ON COLUMN orchestration_members.winner IS 'True for the member whose answer won.';
COMMENT ON COLUMN orchestration_members.answer IS 'The member''s answer, or why it failed or was cancelled.';
COMMENT ON COLUMN orchestration_members.input_tokens IS 'Input tokens the member''s turn reported.';
COMMENT ON COLUMN orchestration_members.output_tokens IS 'Output tokens the member''s turn reported.';
COMMENT ON COLUMN orchestration_members.cache_read_tokens IS 'Cache-read input tokens the member''s turn reported.';
COMMENT ON COLUMN orchestration_members.cache_write_tokens IS 'Cache-write input tokens the member''s turn reported.';
COMMENT ON COLUMN orchestration_members.cost_nanos IS 'Cost the member''s turn reported, in nano-dollars (up to its cancel for a stopped member).';
COMMENT ON COLUMN orchestration_members.completed_seq IS 'Seq of the member''s ChildSessionCompleted in the parent session.';
COMMENT ON COLUMN orchestration_members.completed_at IS 'When the member''s outcome was recorded.';

-- Per orchestration: its members by outcome and what they cost, reported (what the
-- parent's turn was charged) and from the ledger (every priced call of each member's
-- session tree, a stopped member's late answer included).
CREATE VIEW orchestration_costs AS
    SELECT o.session_id, o.call_id, o.mode, o.status, o.winner_call_id,
           count(m.member_call_id)::integer                           AS started_members,
           count(*) FILTER (WHERE m.stopped)::integer                 AS stopped_members,
           COALESCE(sum(m.input_tokens), 0)::bigint                   AS reported_input_tokens,
           COALESCE(sum(m.output_tokens), 0)::bigint                  AS reported_output_tokens,
           COALESCE(sum(m.cost_nanos), 0)::bigint                     AS reported_cost_nanos,
           COALESCE(sum(c.total_cost_nanos), 0)::bigint               AS ledger_cost_nanos
    FROM orchestrations o
    LEFT JOIN orchestration_members m
           ON m.session_id = o.session_id AND m.call_id = o.call_id
    LEFT JOIN cost_by_session c ON c.session_id = m.child_session_id
    GROUP BY o.session_id, o.call_id, o.mode, o.status, o.winner_call_id;
COMMENT ON VIEW orchestration_costs IS
    'Cost per orchestration including every member, stopped ones too: as reported to the parent and from the cost ledger of each member''s session tree.';
COMMENT ON COLUMN orchestration_costs.session_id IS 'The orchestrating session.';
COMMENT ON COLUMN orchestration_costs.call_id IS 'The orchestration''s call id.';
COMMENT ON COLUMN orchestration_costs.mode IS 'all, race, quorum or sequential.';
COMMENT ON COLUMN orchestration_costs.status IS 'running, completed or failed.';
COMMENT ON COLUMN orchestration_costs.winner_call_id IS 'The winning member, if one won.';
COMMENT ON COLUMN orchestration_costs.started_members IS 'Members started.';
COMMENT ON COLUMN orchestration_costs.stopped_members IS 'Members stopped as no longer needed.';
COMMENT ON COLUMN orchestration_costs.reported_input_tokens IS 'Input tokens the members reported (sum).';
COMMENT ON COLUMN orchestration_costs.reported_output_tokens IS 'Output tokens the members reported (sum).';
COMMENT ON COLUMN orchestration_costs.reported_cost_nanos IS 'Cost the members reported, in nano-dollars: what the parent''s turn was charged.';
COMMENT ON COLUMN orchestration_costs.ledger_cost_nanos IS 'Cost of every priced call in the members'' session trees, in nano-dollars (cost_by_session.total_cost_nanos).';

-- The projector's role writes them like the other projection tables (0003).
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON orchestrations, orchestration_members TO turnlog_app;
GRANT SELECT ON orchestration_costs TO turnlog_app;
