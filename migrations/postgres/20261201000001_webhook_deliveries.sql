-- Outbound webhook deliveries (issue 17): one row per subscription, log event and event name (or
-- per test, with no event), with the exact body sent on every attempt and how the last one went.
-- Bookkeeping like the bus's claims, not facts of the log; pruned after RETENTION_DAYS.
CREATE TABLE webhook_deliveries (
    delivery_id     TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    account_id      TEXT NOT NULL,
    event           TEXT NOT NULL,
    event_id        TEXT,
    body            TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    response_status BIGINT,
    error           TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
-- A redelivered event finds its delivery (NULL event ids, the tests, never collide).
CREATE UNIQUE INDEX webhook_deliveries_cause ON webhook_deliveries (subscription_id, event_id, event);
CREATE INDEX webhook_deliveries_by_subscription ON webhook_deliveries (subscription_id, delivery_id);
