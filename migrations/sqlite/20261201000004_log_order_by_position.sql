-- The log is ordered by global_position alone (docs/adr/0016-log-order-by-position.md); on SQLite it
-- always was (one writer at a time), and nothing reads by tx_id any more: the index only cost inserts.
DROP INDEX IF EXISTS events_commit_order;
