-- The event log: the single source of truth. Append-only, hash-chained per stream.
CREATE TABLE events (
    global_position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The writing transaction; tailers read in (tx_id, global_position) order below
    -- pg_snapshot_xmin so that a transaction committing late is never skipped.
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id        uuid        NOT NULL UNIQUE,
    stream_type     text        NOT NULL CHECK (length(stream_type) BETWEEN 1 AND 64),
    stream_id       text        NOT NULL CHECK (length(stream_id) BETWEEN 1 AND 200),
    version         bigint      NOT NULL CHECK (version > 0),
    event_type      text        NOT NULL CHECK (length(event_type) BETWEEN 1 AND 100),
    event_version   integer     NOT NULL CHECK (event_version > 0),
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL,
    hash            bytea       NOT NULL CHECK (length(hash) = 32),
    CONSTRAINT events_stream_version UNIQUE (stream_type, stream_id, version)
);

CREATE INDEX events_commit_order ON events (tx_id, global_position);

-- History is never rewritten: updates, deletes and truncation are refused.
CREATE FUNCTION netia_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER events_no_update_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION netia_events_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION netia_events_append_only();
