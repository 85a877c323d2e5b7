-- The event log (embedded mode). Same columns and rules as PostgreSQL; SQLite has one writer at a
-- time, so positions are assigned in commit order and tx_id is the first position of its transaction.
CREATE TABLE events (
    global_position INTEGER PRIMARY KEY AUTOINCREMENT,
    tx_id           INTEGER NOT NULL,
    event_id        TEXT    NOT NULL UNIQUE,
    stream_type     TEXT    NOT NULL CHECK (length(stream_type) BETWEEN 1 AND 64),
    stream_id       TEXT    NOT NULL CHECK (length(stream_id) BETWEEN 1 AND 200),
    version         INTEGER NOT NULL CHECK (version > 0),
    event_type      TEXT    NOT NULL CHECK (length(event_type) BETWEEN 1 AND 100),
    event_version   INTEGER NOT NULL CHECK (event_version > 0),
    payload         TEXT    NOT NULL,
    metadata        TEXT    NOT NULL,
    recorded_at     TEXT    NOT NULL,
    hash            BLOB    NOT NULL CHECK (length(hash) = 32),
    CONSTRAINT events_stream_version UNIQUE (stream_type, stream_id, version)
);

CREATE INDEX events_commit_order ON events (tx_id, global_position);

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only (UPDATE refused)');
END;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only (DELETE refused)');
END;
