-- Descriptions of every table, view, function and column of the projections, for
-- `\d+` in psql, SQL clients and catalog tools: what a row is, which event fills it, and
-- the unit of each number (money is integer nano-dollars: USD x 1e9).
--
-- Rule: a migration that adds a table, view, function or column adds its COMMENT ON in
-- the same file; tests/integration/test_projection_comments.py fails naming any object
-- of the public schema without one.


COMMENT ON TABLE turnlog_meta IS
    'Key-value facts about this database''s turnlog schema (e.g. schema_created_at), written by migrations.';
COMMENT ON COLUMN turnlog_meta.key IS 'Name of the fact, e.g. schema_created_at.';
COMMENT ON COLUMN turnlog_meta.value IS 'The fact''s value, as text.';
COMMENT ON COLUMN turnlog_meta.updated_at IS 'When the fact was last written (the database''s clock).';

COMMENT ON TABLE turnlog_schema_migrations IS
    'Applied SQL migrations of projections/migrations (written by turnlog db migrate; a changed file is refused by its checksum).';
COMMENT ON COLUMN turnlog_schema_migrations.name IS 'File name of the migration, NNNN_name.sql.';
COMMENT ON COLUMN turnlog_schema_migrations.checksum IS 'sha256 (hex) of the file as applied; a later edit of the file is refused.';
COMMENT ON COLUMN turnlog_schema_migrations.applied_at IS 'When the migration was applied (the database''s clock).';

COMMENT ON TABLE projector_offsets IS
    'Where each projector consumer is in each partition of turnlog.events: updated in the same transaction as the rows it covers, so it (not Kafka''s group offsets) is the consumer position.';
COMMENT ON COLUMN projector_offsets.consumer IS 'Projector consumer name (its Kafka group id).';
COMMENT ON COLUMN projector_offsets.topic IS 'Kafka topic consumed (the events topic, with its prefix).';
COMMENT ON COLUMN projector_offsets.partition IS 'Kafka partition number of that topic.';
COMMENT ON COLUMN projector_offsets.next_offset IS 'Kafka offset of the next event to project; reset to 0 by a rebuild.';
COMMENT ON COLUMN projector_offsets.audit_next_offset IS 'Kafka offset of the next event to append to audit_log; never reset (the audit log is not rebuilt).';
COMMENT ON COLUMN projector_offsets.stopped_offset IS 'Offset where the partition stopped on a seq gap or a conflicting duplicate; NULL while it runs. An operator clears it.';
COMMENT ON COLUMN projector_offsets.stopped_reason IS 'Why the partition stopped at stopped_offset (a sentence naming the session and seq); NULL while it runs.';

COMMENT ON TABLE events IS
    'One row per projected event of turnlog.events (every event type): the projector''s tracking table and duplicate check.';
COMMENT ON COLUMN events.session_id IS 'Session the event belongs to (the Kafka key).';
COMMENT ON COLUMN events.seq IS 'Per-session, gap-free sequence number of the event (1, 2, ...).';
COMMENT ON COLUMN events.event_id IS 'Deterministic event id (derived from session id and seq).';
COMMENT ON COLUMN events.event_type IS 'Payload record name, e.g. LlmCallCompleted.';
COMMENT ON COLUMN events.turn_id IS 'Turn the event belongs to; NULL outside a turn.';
COMMENT ON COLUMN events.occurred_at IS 'Event time, taken from the log (never a client''s clock).';
COMMENT ON COLUMN events.causation_id IS 'Id of the request that caused the event.';
COMMENT ON COLUMN events.correlation_id IS 'Correlation id carried from the originating request.';
COMMENT ON COLUMN events.kafka_partition IS 'Partition of turnlog.events the event was read from.';
COMMENT ON COLUMN events.kafka_offset IS 'Offset of the event in that partition.';
COMMENT ON COLUMN events.digest IS 'sha256 (hex) of the event''s canonical JSON: tells a harmless re-delivery from a conflicting event at the same seq.';

COMMENT ON TABLE sessions IS
    'One row per started session (SessionStarted or SessionForked), updated by every event of the session: state, turn counts and spend.';
COMMENT ON COLUMN sessions.session_id IS 'Session id (the Kafka key of all its records).';
COMMENT ON COLUMN sessions.agent IS 'Agent serving the session (SessionStarted / SessionForked).';
COMMENT ON COLUMN sessions.definition_hash IS 'Hash of the pinned agent definition version (SessionStarted / SessionForked).';
COMMENT ON COLUMN sessions.status IS 'active or closed (SessionClosed).';
COMMENT ON COLUMN sessions.phase IS 'Turn state machine phase after the last event: idle, awaiting_llm, awaiting_tools, awaiting_approval, awaiting_children, compacting, closed.';
COMMENT ON COLUMN sessions.parent_session_id IS 'Delegating parent session of a child session (SessionStarted); NULL for a root session.';
COMMENT ON COLUMN sessions.parent_call_id IS 'Tool call id in the parent session that started this child session.';
COMMENT ON COLUMN sessions.forked_from_session_id IS 'Session this one was forked from (SessionForked); NULL if not a fork.';
COMMENT ON COLUMN sessions.forked_at_seq IS 'Seq of the source session the fork branched off at.';
COMMENT ON COLUMN sessions.created_at IS 'occurred_at of the session''s first event.';
COMMENT ON COLUMN sessions.updated_at IS 'occurred_at of the session''s latest event.';
COMMENT ON COLUMN sessions.turns IS 'Turns started (TurnStarted).';
COMMENT ON COLUMN sessions.turns_completed IS 'Turns that completed (TurnCompleted).';
COMMENT ON COLUMN sessions.turns_failed IS 'Turns that failed (TurnFailed).';
COMMENT ON COLUMN sessions.turns_cancelled IS 'Turns that were cancelled (TurnCancelled).';
COMMENT ON COLUMN sessions.first_seq IS 'Seq of the session''s first event.';
COMMENT ON COLUMN sessions.last_seq IS 'Seq of the session''s latest projected event.';
COMMENT ON COLUMN sessions.last_entry_seq IS 'Seq of the session''s latest conversation entry (entries); NULL before the first.';
COMMENT ON COLUMN sessions.llm_calls IS 'Completed LLM calls, summarize compactions included (LlmCallCompleted, ContextCompacted with a model).';
COMMENT ON COLUMN sessions.input_tokens IS 'Input tokens of the session''s completed LLM calls, in tokens.';
COMMENT ON COLUMN sessions.output_tokens IS 'Output tokens of the session''s completed LLM calls, in tokens.';
COMMENT ON COLUMN sessions.cache_read_tokens IS 'Input tokens read from the provider''s prompt cache, in tokens.';
COMMENT ON COLUMN sessions.cache_write_tokens IS 'Input tokens written to the provider''s prompt cache, in tokens.';
COMMENT ON COLUMN sessions.cost_nanos IS 'Spend of the session''s own LLM calls as recorded in the events, USD in nano-dollars (USD x 1e9, integer); delegated children not included (see cost_by_session).';
COMMENT ON COLUMN sessions.closed_reason IS 'Why the session was closed (SessionClosed); NULL while active.';

COMMENT ON TABLE session_links IS
    'Delegation links child -> parent, written from both sides (the parent''s ChildSessionRequested, the child''s SessionStarted) with identical content.';
COMMENT ON COLUMN session_links.child_session_id IS 'The delegated (child) session.';
COMMENT ON COLUMN session_links.parent_session_id IS 'The session that delegated to it.';
COMMENT ON COLUMN session_links.parent_call_id IS 'Tool call id in the parent that the child answers.';

COMMENT ON TABLE entries IS
    'The conversation as a parent-linked graph: one row per content-bearing event (UserMessageReceived, LlmCallCompleted, ToolCallRequested, ToolCallCompleted/Failed, ChildSessionCompleted, ContextCompacted summaries). branch_entries() walks a branch.';
COMMENT ON COLUMN entries.session_id IS 'Session the entry belongs to.';
COMMENT ON COLUMN entries.seq IS 'Seq of the event that holds the content.';
COMMENT ON COLUMN entries.kind IS 'user, assistant, tool_call, tool_result or summary.';
COMMENT ON COLUMN entries.role IS 'Conversation role the model sees it in: user or assistant.';
COMMENT ON COLUMN entries.call_id IS 'LLM call id (assistant) or tool call id (tool_call, tool_result); NULL otherwise.';
COMMENT ON COLUMN entries.tool_name IS 'Name of the tool called (tool_call entries).';
COMMENT ON COLUMN entries.content IS 'The text: message, answer, tool arguments JSON, tool result or error, summary.';
COMMENT ON COLUMN entries.is_error IS 'True for a tool result that is an error (ToolCallFailed, failed child session).';
COMMENT ON COLUMN entries.parent_session_id IS 'Session of the previous entry of this branch (the fork source for a fork''s first own entry); NULL for the first entry.';
COMMENT ON COLUMN entries.parent_seq IS 'Seq of the previous entry of this branch (for a fork''s first own entry: the fork point, read as the last source entry at or before it).';
COMMENT ON COLUMN entries.turn_id IS 'Turn the entry was written in.';
COMMENT ON COLUMN entries.occurred_at IS 'Event time of the entry.';

COMMENT ON TABLE llm_calls IS
    'One row per LLM call of a session: LlmCallRequested fills the request columns, LlmCallCompleted or LlmCallFailed the outcome; summarize compactions complete theirs with ContextCompacted.';
COMMENT ON COLUMN llm_calls.session_id IS 'Session that made the call.';
COMMENT ON COLUMN llm_calls.call_id IS 'LLM call id (the compaction id for a summarize compaction).';
COMMENT ON COLUMN llm_calls.status IS 'requested, completed or failed.';
COMMENT ON COLUMN llm_calls.purpose IS 'Why the call was made, e.g. turn (answer the user) or summarize (compaction).';
COMMENT ON COLUMN llm_calls.iteration IS 'Iteration of the turn loop the call belongs to (1 = first call of the turn).';
COMMENT ON COLUMN llm_calls.model_requested IS 'Model asked for first (LlmCallRequested).';
COMMENT ON COLUMN llm_calls.fallbacks IS 'Fallback models, in order, tried after the requested one fails.';
COMMENT ON COLUMN llm_calls.max_tokens IS 'Output token limit of the call, in tokens.';
COMMENT ON COLUMN llm_calls.temperature IS 'Sampling temperature sent to the provider; NULL for the provider default.';
COMMENT ON COLUMN llm_calls.context_entries IS 'Conversation entries in the request''s context.';
COMMENT ON COLUMN llm_calls.request_digest IS 'sha256 of the exact provider request (replay rebuilds it and checks it).';
COMMENT ON COLUMN llm_calls.reserved_tokens IS 'Tokens reserved from the session''s budget before the call, in tokens.';
COMMENT ON COLUMN llm_calls.reserved_nanos IS 'Spend reserved from the session''s budget before the call, USD in nano-dollars (USD x 1e9, integer).';
COMMENT ON COLUMN llm_calls.requested_seq IS 'Seq of LlmCallRequested.';
COMMENT ON COLUMN llm_calls.requested_at IS 'Event time of LlmCallRequested.';
COMMENT ON COLUMN llm_calls.deadline_at IS 'When the call times out (a deadline as data, checked by Ticks).';
COMMENT ON COLUMN llm_calls.turn_id IS 'Turn the call belongs to.';
COMMENT ON COLUMN llm_calls.model IS 'Model that answered (LlmCallCompleted; a fallback when fallback_used).';
COMMENT ON COLUMN llm_calls.fallback_used IS 'True when a fallback model answered instead of the requested one.';
COMMENT ON COLUMN llm_calls.attempts IS 'Provider attempts made (retries included).';
COMMENT ON COLUMN llm_calls.stop_reason IS 'Why the model stopped (provider-neutral StopReason: end_turn, tool_use, max_tokens, ...).';
COMMENT ON COLUMN llm_calls.input_tokens IS 'Input tokens billed for the call, in tokens.';
COMMENT ON COLUMN llm_calls.output_tokens IS 'Output tokens billed for the call, in tokens.';
COMMENT ON COLUMN llm_calls.cache_read_tokens IS 'Input tokens read from the provider''s prompt cache, in tokens.';
COMMENT ON COLUMN llm_calls.cache_write_tokens IS 'Input tokens written to the provider''s prompt cache, in tokens.';
COMMENT ON COLUMN llm_calls.cost_nanos IS 'Price of the call as recorded in LlmCallCompleted (priced when it happened), USD in nano-dollars (USD x 1e9, integer).';
COMMENT ON COLUMN llm_calls.latency_ms IS 'Wall time of the call until its outcome, in milliseconds.';
COMMENT ON COLUMN llm_calls.tool_calls IS 'Tool calls the answer asked for.';
COMMENT ON COLUMN llm_calls.completed_seq IS 'Seq of the outcome event (LlmCallCompleted, LlmCallFailed or ContextCompacted).';
COMMENT ON COLUMN llm_calls.completed_at IS 'Event time of the outcome event.';
COMMENT ON COLUMN llm_calls.error_type IS 'Error class of a failed call (LlmCallFailed).';
COMMENT ON COLUMN llm_calls.error_message IS 'Error message of a failed call (LlmCallFailed).';
COMMENT ON COLUMN llm_calls.reissues IS 'Times the effect was started again after a worker lost it (EffectReissued).';
COMMENT ON COLUMN llm_calls.circuits_opened IS 'Provider targets whose circuit breaker opened during the call (ProviderCircuitOpened).';

COMMENT ON TABLE tool_calls IS
    'One row per tool call: ToolCallRequested (with the policy decision), approvals, ToolCallCompleted / ToolCallFailed, and delegations (ChildSessionRequested / ChildSessionCompleted).';
COMMENT ON COLUMN tool_calls.session_id IS 'Session that made the call.';
COMMENT ON COLUMN tool_calls.call_id IS 'Tool call id (the model''s tool_use id).';
COMMENT ON COLUMN tool_calls.llm_call_id IS 'LLM call whose answer asked for the tool call.';
COMMENT ON COLUMN tool_calls.name IS 'Tool name.';
COMMENT ON COLUMN tool_calls.arguments_json IS 'Arguments as the model sent them (JSON text).';
COMMENT ON COLUMN tool_calls.decision IS 'Policy decision: allow, deny or require_approval.';
COMMENT ON COLUMN tool_calls.rule IS 'Name of the policy rule that decided.';
COMMENT ON COLUMN tool_calls.status IS 'pending, awaiting_approval, approved, completed, failed or denied.';
COMMENT ON COLUMN tool_calls.requested_seq IS 'Seq of ToolCallRequested.';
COMMENT ON COLUMN tool_calls.requested_at IS 'Event time of ToolCallRequested.';
COMMENT ON COLUMN tool_calls.deadline_at IS 'When the tool call times out.';
COMMENT ON COLUMN tool_calls.turn_id IS 'Turn the call belongs to.';
COMMENT ON COLUMN tool_calls.child_session_id IS 'Child session a delegation tool call started (ChildSessionRequested).';
COMMENT ON COLUMN tool_calls.result_seq IS 'Seq of the result event (ToolCallCompleted, ToolCallFailed or ChildSessionCompleted).';
COMMENT ON COLUMN tool_calls.completed_at IS 'Event time of the result event.';
COMMENT ON COLUMN tool_calls.latency_ms IS 'Wall time of the tool run, in milliseconds.';
COMMENT ON COLUMN tool_calls.reissues IS 'Times the effect was started again after a worker lost it (EffectReissued).';

COMMENT ON TABLE approvals IS
    'Human approvals of tool calls: ApprovalRequested, then ApprovalGranted or ApprovalDenied (expired when its deadline passed).';
COMMENT ON COLUMN approvals.session_id IS 'Session of the tool call.';
COMMENT ON COLUMN approvals.call_id IS 'Tool call id awaiting approval.';
COMMENT ON COLUMN approvals.tool_name IS 'Name of the tool to approve.';
COMMENT ON COLUMN approvals.outcome IS 'pending, granted, denied or expired.';
COMMENT ON COLUMN approvals.requested_seq IS 'Seq of ApprovalRequested.';
COMMENT ON COLUMN approvals.requested_at IS 'Event time of ApprovalRequested.';
COMMENT ON COLUMN approvals.expires_at IS 'When an unanswered request expires (then denied as expired).';
COMMENT ON COLUMN approvals.decided_by IS 'Who decided (as the approval request named them).';
COMMENT ON COLUMN approvals.reason IS 'Reason given with the decision.';
COMMENT ON COLUMN approvals.decided_seq IS 'Seq of ApprovalGranted / ApprovalDenied.';
COMMENT ON COLUMN approvals.decided_at IS 'Event time of the decision.';
COMMENT ON COLUMN approvals.wait_ms IS 'How long the tool call waited for a human, in milliseconds (decided_at - requested_at; generated).';

COMMENT ON TABLE compactions IS
    'Context compactions: ContextCompactionRequested, then ContextCompacted (a summarize compaction is also an LLM call, priced here and in llm_calls).';
COMMENT ON COLUMN compactions.session_id IS 'Session compacted.';
COMMENT ON COLUMN compactions.compaction_id IS 'Compaction id (the LLM call id of a summarize compaction).';
COMMENT ON COLUMN compactions.strategy IS 'Compaction strategy, e.g. sliding_window or summarize.';
COMMENT ON COLUMN compactions.entry_seqs IS 'Seqs of the entries the compaction considered.';
COMMENT ON COLUMN compactions.tokens_before IS 'Context size before compaction, in tokens.';
COMMENT ON COLUMN compactions.context_window IS 'The model''s context window the compaction fits into, in tokens.';
COMMENT ON COLUMN compactions.requested_seq IS 'Seq of ContextCompactionRequested.';
COMMENT ON COLUMN compactions.requested_at IS 'Event time of ContextCompactionRequested.';
COMMENT ON COLUMN compactions.removed_seqs IS 'Seqs of the entries dropped from the context (ContextCompacted).';
COMMENT ON COLUMN compactions.tokens_after IS 'Context size after compaction, in tokens.';
COMMENT ON COLUMN compactions.model IS 'Model that wrote the summary; NULL for a compaction without an LLM call.';
COMMENT ON COLUMN compactions.input_tokens IS 'Input tokens of the summary call, in tokens.';
COMMENT ON COLUMN compactions.output_tokens IS 'Output tokens of the summary call, in tokens.';
COMMENT ON COLUMN compactions.cache_read_tokens IS 'Input tokens of the summary call read from the prompt cache, in tokens.';
COMMENT ON COLUMN compactions.cache_write_tokens IS 'Input tokens of the summary call written to the prompt cache, in tokens.';
COMMENT ON COLUMN compactions.cost_nanos IS 'Price of the summary call as recorded in ContextCompacted, USD in nano-dollars (USD x 1e9, integer).';
COMMENT ON COLUMN compactions.completed_seq IS 'Seq of ContextCompacted.';
COMMENT ON COLUMN compactions.completed_at IS 'Event time of ContextCompacted.';

COMMENT ON TABLE audit_log IS
    'Append-only, hash-chained audit log: one row per event of every type, never rebuilt; a trigger refuses UPDATE, DELETE and TRUNCATE; heads are published to turnlog.audit.checkpoints; turnlog audit verify recomputes the chain.';
COMMENT ON COLUMN audit_log.audit_id IS 'Position in the chain (1, 2, ...).';
COMMENT ON COLUMN audit_log.session_id IS 'Session of the event.';
COMMENT ON COLUMN audit_log.seq IS 'Seq of the event in its session.';
COMMENT ON COLUMN audit_log.event_id IS 'Event id.';
COMMENT ON COLUMN audit_log.event_type IS 'Payload record name, e.g. ToolCallCompleted.';
COMMENT ON COLUMN audit_log.occurred_at IS 'Event time.';
COMMENT ON COLUMN audit_log.content IS 'The event''s canonical JSON (sorted keys, no whitespace).';
COMMENT ON COLUMN audit_log.prev_hash IS 'row_hash of the previous row (64 zeros for the first), hex.';
COMMENT ON COLUMN audit_log.row_hash IS 'sha256 (hex) of this row: version 1 over prev_hash and content, version 2 over prev_hash and every other column.';
COMMENT ON COLUMN audit_log.hash_version IS 'Which row_hash formula wrote the row: 1 or 2 (never goes back along the chain).';

COMMENT ON TABLE audit_head IS
    'The audit chain''s head (a single row), locked by every appending transaction so the chain stays one line; a cache of the last audit_log row, not evidence.';
COMMENT ON COLUMN audit_head.id IS 'Always 1: the table has one row.';
COMMENT ON COLUMN audit_head.last_audit_id IS 'audit_id of the last appended row (0 before the first).';
COMMENT ON COLUMN audit_head.head_hash IS 'row_hash of the last appended row (64 zeros before the first).';

COMMENT ON TABLE projection_quarantine IS
    'Events whose projection PostgreSQL refused, set aside in the transaction that moves the offset past them (later events of the session wait behind them); turnlog projections quarantine retry re-applies them.';
COMMENT ON COLUMN projection_quarantine.quarantine_id IS 'Row id (identity).';
COMMENT ON COLUMN projection_quarantine.consumer IS 'Projector consumer that set the event aside.';
COMMENT ON COLUMN projection_quarantine.topic IS 'Topic the event was read from.';
COMMENT ON COLUMN projection_quarantine.kafka_partition IS 'Partition the event was read from.';
COMMENT ON COLUMN projection_quarantine.kafka_offset IS 'Offset of the event.';
COMMENT ON COLUMN projection_quarantine.session_id IS 'Session of the event.';
COMMENT ON COLUMN projection_quarantine.seq IS 'Seq of the event.';
COMMENT ON COLUMN projection_quarantine.event_id IS 'Event id.';
COMMENT ON COLUMN projection_quarantine.event_type IS 'Payload record name.';
COMMENT ON COLUMN projection_quarantine.digest IS 'sha256 (hex) of the event''s canonical JSON.';
COMMENT ON COLUMN projection_quarantine.held_behind_seq IS 'For an event set aside only to keep the session''s order: the failed seq it waits behind; NULL for the failed event itself.';
COMMENT ON COLUMN projection_quarantine.error IS 'What PostgreSQL said when the event''s rows failed.';
COMMENT ON COLUMN projection_quarantine.first_failed_at IS 'When it first failed (the database''s clock).';
COMMENT ON COLUMN projection_quarantine.last_failed_at IS 'When a retry last failed (the database''s clock).';
COMMENT ON COLUMN projection_quarantine.attempts IS 'Attempts so far (1 = the first projection).';
COMMENT ON COLUMN projection_quarantine.audited IS 'Whether the event''s audit_log row was written when it was set aside.';
COMMENT ON COLUMN projection_quarantine.raw_event IS 'The record value as consumed (the wire bytes a retry decodes).';
COMMENT ON COLUMN projection_quarantine.event_json IS 'The event''s canonical JSON, for people reading the table.';

COMMENT ON VIEW session_lineage IS
    'Delegation ancestry from session_links: every (session, ancestor) pair, the session itself at depth 0.';
COMMENT ON COLUMN session_lineage.session_id IS 'A session.';
COMMENT ON COLUMN session_lineage.ancestor_id IS 'The session itself or one of its delegating ancestors.';
COMMENT ON COLUMN session_lineage.depth IS 'Delegation levels between them (0 = itself, 1 = parent, ...).';

COMMENT ON VIEW session_roots IS
    'The top-most delegating ancestor of every session (itself when it has no parent).';
COMMENT ON COLUMN session_roots.session_id IS 'A session.';
COMMENT ON COLUMN session_roots.root_session_id IS 'Its top-most delegating ancestor.';

COMMENT ON VIEW cost_ledger IS
    'Every priced item once: completed LLM calls (LlmCallCompleted) and summarize compactions (ContextCompacted), with the cost recorded in the event, never recomputed.';
COMMENT ON COLUMN cost_ledger.session_id IS 'Session that spent.';
COMMENT ON COLUMN cost_ledger.seq IS 'Seq of the event that recorded the price.';
COMMENT ON COLUMN cost_ledger.occurred_at IS 'Event time of that event.';
COMMENT ON COLUMN cost_ledger.kind IS 'llm_call or compaction.';
COMMENT ON COLUMN cost_ledger.item_id IS 'LLM call id or compaction id.';
COMMENT ON COLUMN cost_ledger.model IS 'Model that was billed.';
COMMENT ON COLUMN cost_ledger.input_tokens IS 'Input tokens billed, in tokens.';
COMMENT ON COLUMN cost_ledger.output_tokens IS 'Output tokens billed, in tokens.';
COMMENT ON COLUMN cost_ledger.cache_read_tokens IS 'Input tokens read from the prompt cache, in tokens.';
COMMENT ON COLUMN cost_ledger.cache_write_tokens IS 'Input tokens written to the prompt cache, in tokens.';
COMMENT ON COLUMN cost_ledger.cost_nanos IS 'Price recorded in the event, USD in nano-dollars (USD x 1e9, integer).';

COMMENT ON VIEW cost_by_session IS
    'Per session: its own spend (own_*) and the total with every delegated descendant rolled up (total_*), from cost_ledger.';
COMMENT ON COLUMN cost_by_session.session_id IS 'Session.';
COMMENT ON COLUMN cost_by_session.agent IS 'Agent of the session.';
COMMENT ON COLUMN cost_by_session.parent_session_id IS 'Delegating parent; NULL for a root session.';
COMMENT ON COLUMN cost_by_session.root_session_id IS 'Top-most delegating ancestor.';
COMMENT ON COLUMN cost_by_session.priced_calls IS 'The session''s own priced items (LLM calls and summarize compactions).';
COMMENT ON COLUMN cost_by_session.own_input_tokens IS 'The session''s own input tokens, in tokens.';
COMMENT ON COLUMN cost_by_session.own_output_tokens IS 'The session''s own output tokens, in tokens.';
COMMENT ON COLUMN cost_by_session.own_cache_read_tokens IS 'The session''s own prompt-cache reads, in tokens.';
COMMENT ON COLUMN cost_by_session.own_cache_write_tokens IS 'The session''s own prompt-cache writes, in tokens.';
COMMENT ON COLUMN cost_by_session.own_cost_nanos IS 'The session''s own spend, USD in nano-dollars (USD x 1e9, integer).';
COMMENT ON COLUMN cost_by_session.total_input_tokens IS 'Input tokens of the session and its delegated descendants, in tokens.';
COMMENT ON COLUMN cost_by_session.total_output_tokens IS 'Output tokens of the session and its delegated descendants, in tokens.';
COMMENT ON COLUMN cost_by_session.total_cache_read_tokens IS 'Prompt-cache reads of the session and its descendants, in tokens.';
COMMENT ON COLUMN cost_by_session.total_cache_write_tokens IS 'Prompt-cache writes of the session and its descendants, in tokens.';
COMMENT ON COLUMN cost_by_session.total_cost_nanos IS 'Spend of the session and its delegated descendants, USD in nano-dollars (USD x 1e9, integer).';

COMMENT ON VIEW cost_by_agent IS
    'Per agent: what its own sessions spent, and what the session trees it started spent (its root sessions with every delegated descendant, whatever their agents).';
COMMENT ON COLUMN cost_by_agent.agent IS 'Agent name.';
COMMENT ON COLUMN cost_by_agent.sessions IS 'Sessions served by the agent.';
COMMENT ON COLUMN cost_by_agent.root_sessions IS 'Of those, sessions nobody delegated to it.';
COMMENT ON COLUMN cost_by_agent.priced_calls IS 'Priced items of its own sessions.';
COMMENT ON COLUMN cost_by_agent.input_tokens IS 'Input tokens of its own sessions, in tokens.';
COMMENT ON COLUMN cost_by_agent.output_tokens IS 'Output tokens of its own sessions, in tokens.';
COMMENT ON COLUMN cost_by_agent.cache_read_tokens IS 'Prompt-cache reads of its own sessions, in tokens.';
COMMENT ON COLUMN cost_by_agent.cache_write_tokens IS 'Prompt-cache writes of its own sessions, in tokens.';
COMMENT ON COLUMN cost_by_agent.own_cost_nanos IS 'Spend of its own sessions, USD in nano-dollars (USD x 1e9, integer).';
COMMENT ON COLUMN cost_by_agent.rolled_up_cost_nanos IS 'Spend of the session trees rooted in its sessions, USD in nano-dollars (USD x 1e9, integer).';

COMMENT ON VIEW cost_by_model IS
    'Spend per billed model, from cost_ledger.';
COMMENT ON COLUMN cost_by_model.model IS 'Model that was billed.';
COMMENT ON COLUMN cost_by_model.priced_calls IS 'Priced items (LLM calls and summarize compactions).';
COMMENT ON COLUMN cost_by_model.input_tokens IS 'Input tokens, in tokens.';
COMMENT ON COLUMN cost_by_model.output_tokens IS 'Output tokens, in tokens.';
COMMENT ON COLUMN cost_by_model.cache_read_tokens IS 'Input tokens read from the prompt cache, in tokens.';
COMMENT ON COLUMN cost_by_model.cache_write_tokens IS 'Input tokens written to the prompt cache, in tokens.';
COMMENT ON COLUMN cost_by_model.cost_nanos IS 'Spend, USD in nano-dollars (USD x 1e9, integer).';

COMMENT ON VIEW cost_by_day IS
    'Spend per UTC day of the priced event, from cost_ledger.';
COMMENT ON COLUMN cost_by_day.day IS 'UTC date of the event that recorded the price.';
COMMENT ON COLUMN cost_by_day.priced_calls IS 'Priced items (LLM calls and summarize compactions).';
COMMENT ON COLUMN cost_by_day.input_tokens IS 'Input tokens, in tokens.';
COMMENT ON COLUMN cost_by_day.output_tokens IS 'Output tokens, in tokens.';
COMMENT ON COLUMN cost_by_day.cache_read_tokens IS 'Input tokens read from the prompt cache, in tokens.';
COMMENT ON COLUMN cost_by_day.cache_write_tokens IS 'Input tokens written to the prompt cache, in tokens.';
COMMENT ON COLUMN cost_by_day.cost_nanos IS 'Spend, USD in nano-dollars (USD x 1e9, integer).';

COMMENT ON FUNCTION audit_log_reject_change() IS
    'Trigger function of audit_log: raises for UPDATE, DELETE and TRUNCATE (the log is append-only, for the owner too).';
COMMENT ON FUNCTION branch_entries(text) IS
    'One branch of a session in seq order: the entries inherited through its fork chain up to each fork point, then its own (entries rows).';
COMMENT ON FUNCTION session_branches(text) IS
    'Every branch of the fork tree a session belongs to: the root and all forks below it, with fork point, depth, entry counts and which one was asked for.';
