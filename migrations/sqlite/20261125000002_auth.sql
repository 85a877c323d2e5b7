-- Credentials and tokens. Secrets are not events: the log is immutable, replayed and shown to
-- auditors, while a password hash or token must be replaceable and erasable (docs/adr/0003-auth.md).
-- Times are fixed-width RFC 3339 text (sorts as text), ids are UUID text: the same SQL runs on both
-- databases through sqlx's Any driver.
CREATE TABLE auth_credentials (
    user_id       TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL,
    -- Lower-cased; one user per address across all accounts (login needs no account).
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL
);

-- Opaque bearer tokens, stored as the SHA-256 of the secret. `kind`: session, renew, api_key, customer,
-- invitation (label: the invited address).
CREATE TABLE auth_tokens (
    token_hash   TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('session', 'renew', 'api_key', 'customer', 'invitation')),
    -- Pairs a session with its renew token; an API key's public id.
    token_id     TEXT NOT NULL,
    account_id   TEXT NOT NULL,
    user_id      TEXT,
    customer_id  TEXT,
    label        TEXT,
    -- The first characters of the secret, shown in listings.
    preview      TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    revoked_at   TEXT,
    last_used_at TEXT
);

CREATE INDEX auth_tokens_by_id ON auth_tokens (token_id);
CREATE INDEX auth_tokens_by_user ON auth_tokens (user_id, kind);
