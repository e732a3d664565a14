-- Client identity (Request.client) and rate limits shared across sessions (issue 19).

-- The requester identity a session started with (SessionStarted.client).
ALTER TABLE sessions ADD COLUMN client text;
COMMENT ON COLUMN sessions.client IS
    'The requester identity (Request.client: set by the Python client, the CLI --client and the HTTP API; self-declared on a raw Kafka producer) of the message that started the session (SessionStarted.client); keys per-client budgets. NULL: none stated.';
CREATE INDEX sessions_client_idx ON sessions (client) WHERE client IS NOT NULL;
