-- Bookkeeping of the consumers that react to events (docs/adr/0005-bus.md). Not events: it says which
-- deliveries were handled, so that a redelivered event has no second effect.
CREATE TABLE consumer_processed (
    consumer     TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    processed_at TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

-- Events a consumer gave up on after its last attempt (or could not read), for operators to inspect
-- and replay.
CREATE TABLE consumer_parked (
    consumer  TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    attempts  INTEGER NOT NULL,
    error     TEXT NOT NULL,
    parked_at TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
