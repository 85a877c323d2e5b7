-- Which chain the log's links use (docs/adr/0021-keyed-chain-and-app-role.md): no row, or key_id
-- NULL, is plain SHA-256; otherwise HMAC-SHA256 under the AUDIT_KEY with this id. It keeps nodes
-- consistent (one started with another key, or none, refuses to start); auditors verify with the
-- key itself, which accepts keyed links only.
CREATE TABLE audit_chain (
    id       integer PRIMARY KEY CHECK (id = 1),
    key_id   text CHECK (key_id IS NULL OR key_id ~ '^[0-9a-f]{16}$'),
    keyed_at timestamptz NOT NULL
);
