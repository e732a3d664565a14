-- Events whose projection Postgres refused, set aside so their partition goes on.
--
-- Rule: one row per event (session_id, seq). `held_behind_seq` is NULL for an event
-- whose own rows failed; for a later event of the same session it names the failed seq
-- it waits behind (per-session order is kept: nothing of a session is projected past a
-- quarantined event). The projector writes a row in the same transaction that moves its
-- offset past the event, so the event is either projected or quarantined, exactly once.
-- `turnlog projections quarantine retry` re-applies a session's rows in seq order and
-- deletes each row in the transaction that projects its event.
--
-- `audited` says whether the event's audit_log row was written when it was set aside
-- (it is, unless the audit row itself was what failed: then the retry writes it). A
-- rebuild deletes the audited rows with the projections and re-derives them; the others
-- stay, because the rebuild's replay never appends to the audit log.
CREATE TABLE projection_quarantine (
    quarantine_id   bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer        text        NOT NULL,
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    session_id      text        NOT NULL,
    seq             bigint      NOT NULL,
    event_id        text        NOT NULL,
    event_type      text        NOT NULL,
    digest          text        NOT NULL,
    held_behind_seq bigint,
    error           text        NOT NULL,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at  timestamptz NOT NULL DEFAULT now(),
    attempts        integer     NOT NULL DEFAULT 1 CHECK (attempts >= 1),
    audited         boolean     NOT NULL,
    -- The record value as consumed (Avro single-object encoding): what a retry decodes.
    raw_event       bytea       NOT NULL,
    -- Its canonical JSON, for people reading the table (a NUL is spelled \u0000).
    event_json      text        NOT NULL,
    UNIQUE (session_id, seq)
);

CREATE INDEX projection_quarantine_position
    ON projection_quarantine (consumer, topic, kafka_partition, kafka_offset);

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON projection_quarantine TO turnlog_app;
