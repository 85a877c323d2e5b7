-- Which chain the log's links use; see migrations/postgres/20261202000001_audit_chain.sql.
CREATE TABLE audit_chain (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    key_id   TEXT CHECK (key_id IS NULL OR length(key_id) = 16),
    keyed_at TEXT NOT NULL
);
