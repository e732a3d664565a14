-- Scheduled agents: the schedules on turnlog.schedules and every slot the scheduler
-- handled, projected by the schedules projector (streams/scheduler_projection.py, run
-- by `turnlog worker scheduler`), exactly once: its offsets are rows written in the
-- same transaction.

CREATE TABLE schedules (
    schedule_id      text        PRIMARY KEY,
    agent            text        NOT NULL,
    message          text        NOT NULL,
    kind             text        NOT NULL CHECK (kind IN ('cron', 'interval', 'once')),
    cron             text,
    timezone         text        NOT NULL,
    every_s          bigint,
    start_at         timestamptz,
    at               timestamptz,
    session_id       text,
    overlap          text        NOT NULL,
    catch_up         text        NOT NULL,
    catch_up_limit   integer     NOT NULL,
    source           text        NOT NULL,
    status           text        NOT NULL CHECK (status IN ('active', 'paused', 'removed')),
    defined_at       timestamptz NOT NULL,
    not_before       timestamptz,
    updated_at       timestamptz NOT NULL,
    last_slot        timestamptz,
    last_session_id  text,
    next_slot        timestamptz,
    runs             integer     NOT NULL DEFAULT 0,
    skipped          integer     NOT NULL DEFAULT 0
);
CREATE INDEX schedules_next_slot_idx ON schedules (next_slot) WHERE status = 'active';
COMMENT ON TABLE schedules IS
    'Every schedule defined on turnlog.schedules (agent file, CLI, client): its definition, whether it is active, paused or removed, and its next slot as of its last record.';
COMMENT ON COLUMN schedules.schedule_id IS 'The schedule''s id (the key of its records).';
COMMENT ON COLUMN schedules.agent IS 'Agent each run talks to.';
COMMENT ON COLUMN schedules.message IS 'The message each run sends (SendMessage text).';
COMMENT ON COLUMN schedules.kind IS 'cron (cron in timezone), interval (every_s) or once (at).';
COMMENT ON COLUMN schedules.cron IS 'Cron expression (minute hour day-of-month month day-of-week), for kind cron.';
COMMENT ON COLUMN schedules.timezone IS 'IANA time zone the cron expression is read in (DST as Debian cron).';
COMMENT ON COLUMN schedules.every_s IS 'Seconds between slots, for kind interval.';
COMMENT ON COLUMN schedules.start_at IS 'First slot of an interval (null: one interval after the definition).';
COMMENT ON COLUMN schedules.at IS 'The one slot of kind once.';
COMMENT ON COLUMN schedules.session_id IS 'The fixed session every run goes to; null: a new session per run (sched-<id>-<slot>).';
COMMENT ON COLUMN schedules.overlap IS 'skip, queue or cancel: what a slot does while the previous run still runs.';
COMMENT ON COLUMN schedules.catch_up IS 'once, all or none: what slots missed while no scheduler ran do.';
COMMENT ON COLUMN schedules.catch_up_limit IS 'Most missed slots catch_up = all fires.';
COMMENT ON COLUMN schedules.source IS 'Who defined it: file:<agent file>, cli, client or api.';
COMMENT ON COLUMN schedules.status IS 'active, paused or removed.';
COMMENT ON COLUMN schedules.defined_at IS 'When the current definition was written.';
COMMENT ON COLUMN schedules.not_before IS 'Slots at or before this are never fired (the definition or the last resume).';
COMMENT ON COLUMN schedules.updated_at IS 'Time of the last record of this schedule.';
COMMENT ON COLUMN schedules.last_slot IS 'Latest slot the scheduler handled (fired or skipped).';
COMMENT ON COLUMN schedules.last_session_id IS 'Session of the latest run.';
COMMENT ON COLUMN schedules.next_slot IS 'Next slot to fire (null when paused, removed or done), as of the last record.';
COMMENT ON COLUMN schedules.runs IS 'Slots that started a run.';
COMMENT ON COLUMN schedules.skipped IS 'Slots recorded without a run (overlap skip, catch-up none).';

CREATE TABLE schedule_runs (
    schedule_id         text        NOT NULL,
    slot                timestamptz NOT NULL,
    fired               boolean     NOT NULL,
    request_id          text,
    session_id          text,
    overlap             text        NOT NULL,
    catch_up            text        NOT NULL,
    missed              integer     NOT NULL,
    previous_session_id text,
    fired_at            timestamptz NOT NULL,
    late_ms             double precision NOT NULL,
    kafka_partition     integer     NOT NULL,
    kafka_offset        bigint      NOT NULL,
    PRIMARY KEY (schedule_id, slot)
);
CREATE INDEX schedule_runs_session_idx ON schedule_runs (session_id);
COMMENT ON TABLE schedule_runs IS
    'Every slot the scheduler handled (ScheduleFired), once: fired or skipped, with the overlap and catch-up decisions. Join schedule_run_outcomes for each run''s outcome and cost.';
COMMENT ON COLUMN schedule_runs.schedule_id IS 'The schedule.';
COMMENT ON COLUMN schedule_runs.slot IS 'The slot''s time (UTC).';
COMMENT ON COLUMN schedule_runs.fired IS 'Whether a run started (a SendMessage was produced).';
COMMENT ON COLUMN schedule_runs.request_id IS 'The SendMessage''s request id: schedule:<id>:<slot> (deterministic).';
COMMENT ON COLUMN schedule_runs.session_id IS 'The run''s session.';
COMMENT ON COLUMN schedule_runs.overlap IS 'none (nothing ran), skipped, queued or cancelled (the previous run''s turn was cancelled).';
COMMENT ON COLUMN schedule_runs.catch_up IS 'on_time, or the catch-up policy that decided a late slot: once, all or none.';
COMMENT ON COLUMN schedule_runs.missed IS 'Earlier slots not fired because of the catch-up policy.';
COMMENT ON COLUMN schedule_runs.previous_session_id IS 'The previous run''s session (checked for overlap; cancelled under overlap = cancel).';
COMMENT ON COLUMN schedule_runs.fired_at IS 'The scheduler''s time when it handled the slot.';
COMMENT ON COLUMN schedule_runs.late_ms IS 'fired_at - slot, in milliseconds.';
COMMENT ON COLUMN schedule_runs.kafka_partition IS 'Partition of turnlog.schedules the record is in.';
COMMENT ON COLUMN schedule_runs.kafka_offset IS 'Its offset there.';

CREATE TABLE schedule_projection_offsets (
    topic           text    NOT NULL,
    kafka_partition integer NOT NULL,
    next_offset     bigint  NOT NULL,
    PRIMARY KEY (topic, kafka_partition)
);
COMMENT ON TABLE schedule_projection_offsets IS
    'Where the schedules projector is in each partition of turnlog.schedules (written with the rows, so each record is applied once).';
COMMENT ON COLUMN schedule_projection_offsets.topic IS 'The schedules topic (its name carries TURNLOG_TOPIC_PREFIX).';
COMMENT ON COLUMN schedule_projection_offsets.kafka_partition IS 'Partition of that topic.';
COMMENT ON COLUMN schedule_projection_offsets.next_offset IS 'First offset not applied yet.';

-- Each run with its session, outcome and cost. The run's turn is the one its request
-- started (TurnStarted correlated with the request id); in a fixed session the other
-- turns of the session are not counted.
CREATE VIEW schedule_run_outcomes AS
SELECT r.schedule_id,
       r.slot,
       r.fired,
       r.session_id,
       r.request_id,
       r.overlap,
       r.catch_up,
       r.missed,
       r.fired_at,
       r.late_ms,
       t.turn_id,
       CASE
           WHEN NOT r.fired THEN 'skipped'
           WHEN t.turn_id IS NULL THEN 'pending'
           ELSE coalesce(
               (SELECT CASE e.event_type
                           WHEN 'TurnCompleted' THEN 'completed'
                           WHEN 'TurnFailed' THEN 'failed'
                           ELSE 'cancelled'
                       END
                  FROM events e
                 WHERE e.session_id = r.session_id AND e.turn_id = t.turn_id
                   AND e.event_type IN ('TurnCompleted', 'TurnFailed', 'TurnCancelled')
                 ORDER BY e.seq DESC LIMIT 1),
               'running')
       END AS outcome,
       s.status AS session_status,
       s.phase AS session_phase,
       coalesce((SELECT sum(l.cost_nanos) FROM llm_calls l
                  WHERE l.session_id = r.session_id AND l.turn_id = t.turn_id), 0)::bigint
           AS cost_nanos,
       coalesce((SELECT sum(l.cost_nanos) FROM llm_calls l
                  WHERE l.session_id = r.session_id AND l.turn_id = t.turn_id), 0)
           / 1e9 AS cost_usd
  FROM schedule_runs r
  LEFT JOIN sessions s ON s.session_id = r.session_id
  LEFT JOIN LATERAL (
        SELECT e.turn_id FROM events e
         WHERE e.session_id = r.session_id
           AND e.event_type = 'TurnStarted'
           AND (e.correlation_id = r.request_id OR e.causation_id = r.request_id)
         ORDER BY e.seq LIMIT 1) t ON true;
COMMENT ON VIEW schedule_run_outcomes IS
    'Each handled slot with its run: the turn its request started, the outcome (skipped, pending, running, completed, failed, cancelled), the session''s state and the turn''s cost (llm_calls of that turn).';
COMMENT ON COLUMN schedule_run_outcomes.schedule_id IS 'The schedule.';
COMMENT ON COLUMN schedule_run_outcomes.slot IS 'The slot time (UTC).';
COMMENT ON COLUMN schedule_run_outcomes.fired IS 'Whether a run started.';
COMMENT ON COLUMN schedule_run_outcomes.session_id IS 'The session of the run.';
COMMENT ON COLUMN schedule_run_outcomes.request_id IS 'The SendMessage request id.';
COMMENT ON COLUMN schedule_run_outcomes.overlap IS 'none, skipped, queued or cancelled (schedule_runs.overlap).';
COMMENT ON COLUMN schedule_run_outcomes.catch_up IS 'on_time, once, all or none (schedule_runs.catch_up).';
COMMENT ON COLUMN schedule_run_outcomes.missed IS 'Earlier slots not fired because of the catch-up policy.';
COMMENT ON COLUMN schedule_run_outcomes.fired_at IS 'Scheduler time when it handled the slot.';
COMMENT ON COLUMN schedule_run_outcomes.late_ms IS 'fired_at - slot, in milliseconds.';
COMMENT ON COLUMN schedule_run_outcomes.turn_id IS 'The turn the request of the run started (null until projected, or when refused).';
COMMENT ON COLUMN schedule_run_outcomes.outcome IS 'skipped, pending (no turn yet), running, completed, failed or cancelled.';
COMMENT ON COLUMN schedule_run_outcomes.session_status IS 'sessions.status of the session of the run.';
COMMENT ON COLUMN schedule_run_outcomes.session_phase IS 'sessions.phase of the session of the run.';
COMMENT ON COLUMN schedule_run_outcomes.cost_nanos IS 'What the turn of the run cost (its LLM calls), in nano-dollars (USD * 1e9).';
COMMENT ON COLUMN schedule_run_outcomes.cost_usd IS 'The same in USD.';

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON schedules, schedule_runs,
    schedule_projection_offsets TO turnlog_app;
GRANT SELECT ON schedule_run_outcomes TO turnlog_app;
