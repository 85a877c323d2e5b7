-- Claim before act (issue 16): a consumer claims (consumer, event_id) before its effect, so that two
-- copies of one event (a republish, a redelivery while the first handler still runs) cannot both act.
-- `state` is 'claimed' while a handler runs (until `claimed_until`, after which another may take it
-- over: its holder crashed) and 'done' after; rows written before this migration are done.
ALTER TABLE consumer_processed ADD COLUMN state TEXT NOT NULL DEFAULT 'done';
ALTER TABLE consumer_processed ADD COLUMN claimed_until TEXT;
