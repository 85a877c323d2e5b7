-- One append alone, the common case of a chat (docs/adr/0006-serialized-appends.md, "One append
-- alone"): the same rules as netia_append_each (20261201000004_log_order_by_position.sql) for a
-- single stream — the append lock first, the log's head and the stream's head read under it, the
-- rows inserted only if the first version follows the stream's head, the NOTIFY queued — without
-- the per-append grouping, the map of heads and the union of placed and refused rows, which cost
-- a one-event append 20-70 us (pgbench without the WAL flush: 0.315-0.351 ms a call against
-- 0.278-0.298).
--
-- Returns one row per inserted event (its position, transaction id and version), each with the
-- log's head it follows; a stale expected version inserts nothing and returns a single row whose
-- placed_position is NULL (a conflict).
CREATE FUNCTION netia_append_one(
    ids uuid[], the_stream_type text, the_stream_id text, versions bigint[], types text[],
    type_versions int[], payloads text[], metadatas text[], times timestamptz[], hashes bytea[],
    notify_payload text
) RETURNS TABLE (placed_position bigint, placed_tx text, placed_version bigint, head_position bigint)
LANGUAGE plpgsql AS $$
DECLARE
    last_position bigint;
    stream_head bigint;
    ignored text;
BEGIN
    ignored := netia_events_lock()::text;
    SELECT h.global_position INTO last_position FROM events h ORDER BY h.global_position DESC LIMIT 1;
    last_position := COALESCE(last_position, 0);
    SELECT e.version INTO stream_head FROM events e
        WHERE e.stream_type = the_stream_type AND e.stream_id = the_stream_id
        ORDER BY e.version DESC LIMIT 1;
    IF versions[1] IS DISTINCT FROM COALESCE(stream_head, 0) + 1 THEN
        RETURN QUERY SELECT NULL::bigint, NULL::text, NULL::bigint, last_position;
        RETURN;
    END IF;
    RETURN QUERY
        INSERT INTO events (event_id, stream_type, stream_id, version, event_type, event_version,
                            payload, metadata, recorded_at, hash)
        SELECT u.e, the_stream_type, the_stream_id, u.v, u.t, u.tv, u.p::jsonb, u.m::jsonb, u.r, u.h
        FROM UNNEST(ids, versions, types, type_versions, payloads, metadatas, times, hashes)
            AS u(e, v, t, tv, p, m, r, h)
        RETURNING events.global_position, events.tx_id::text, events.version, last_position;
    ignored := pg_notify('netia_events', notify_payload)::text;
END;
$$;
