-- Per-customer data keys for crypto-shredding (docs/adr/0023-crypto-shredding.md): personal fields of
-- events are sealed with their customer's key, wrapped here under NETIA_SECRET_KEY. Erasure sets
-- wrapped_key to NULL and keeps the row, so a late append for that customer is written erased
-- instead of getting a new key.
CREATE TABLE subject_keys (
    subject     text PRIMARY KEY,
    wrapped_key text,
    created_at  timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    erased_at   timestamptz,
    CHECK ((wrapped_key IS NULL) = (erased_at IS NOT NULL))
);
