-- Per-customer data keys; see migrations/postgres/20261203000001_subject_keys.sql.
CREATE TABLE subject_keys (
    subject     TEXT PRIMARY KEY,
    wrapped_key TEXT,
    created_at  TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    erased_at   TEXT,
    CHECK ((wrapped_key IS NULL) = (erased_at IS NOT NULL))
);
