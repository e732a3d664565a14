-- 0001: the schema's own metadata. Projection tables arrive in 0002 and later.
-- Rule for every migration: plain SQL, one transaction (the runner wraps it), and never
-- edited once applied anywhere: the runner refuses a changed checksum. Add a new file.
CREATE TABLE turnlog_meta (
    key        text PRIMARY KEY,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO turnlog_meta (key, value) VALUES ('schema_created_at', now()::text);
