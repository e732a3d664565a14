-- Agent definition versions, copied by the projector from turnlog.agents (where session
-- workers publish the definitions they serve). A session pins one by hash
-- (sessions.definition_hash, SessionStarted, AgentVersionChanged).
CREATE TABLE agent_versions (
    definition_hash text        PRIMARY KEY,
    agent           text        NOT NULL,
    definition      jsonb       NOT NULL,
    published_at    timestamptz NOT NULL,
    copied_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agent_versions_agent_idx ON agent_versions (agent, published_at);
COMMENT ON TABLE agent_versions IS
    'Every version of every agent definition the session workers published on turnlog.agents (one row per content hash; a version never changes). Join sessions.definition_hash to see what a session runs on.';
COMMENT ON COLUMN agent_versions.definition_hash IS 'sha256 of the canonical definition (what sessions pin).';
COMMENT ON COLUMN agent_versions.agent IS 'Agent name.';
COMMENT ON COLUMN agent_versions.definition IS 'The validated definition, as JSON (AgentVersion.definition).';
COMMENT ON COLUMN agent_versions.published_at IS 'When a worker published this version (the latest publication read).';
COMMENT ON COLUMN agent_versions.copied_at IS 'When the projector first copied it.';
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON agent_versions TO turnlog_app;
