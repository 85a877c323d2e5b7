-- Appends are serialized: a transaction that writes events takes one transaction-scoped advisory lock
-- before its first write, so it gets its transaction id (tx_id) only once every earlier appender has
-- committed (or rolled back) and become visible. Log order (tx_id, global_position) is then commit
-- order: a reader can take every committed event as final, and no open transaction elsewhere in the
-- cluster (a read model's, another database's) holds events back as the pg_snapshot_xmin bound did.
-- See docs/adr/0006-serialized-appends.md.

-- Takes the append lock once per transaction. A transaction that already has a transaction id wrote
-- something else first: its tx_id would be older than appends that commit before it, so it is refused.
-- (Calls are assignments rather than PERFORM: plpgsql evaluates a simple expression without starting
-- an executor, and these functions run on every append.)
CREATE FUNCTION netia_events_lock() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    ignored text;
BEGIN
    IF current_setting('netia.events_locked', true) IS DISTINCT FROM 'on' THEN
        IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
            RAISE EXCEPTION 'events must be the first thing their transaction writes'
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        -- (two-int form: a key space apart from the leases' bigint keys)
        ignored := pg_advisory_xact_lock(1852142689, 1)::text;
        ignored := set_config('netia.events_locked', 'on', true);
    END IF;
END;
$$;

-- Every insert into events takes the lock, whoever issues it, before any row (and so any tx_id).
CREATE FUNCTION netia_events_serialize() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ignored text;
BEGIN
    IF current_setting('netia.events_locked', true) IS DISTINCT FROM 'on' THEN
        ignored := netia_events_lock()::text;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_serialized BEFORE INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION netia_events_serialize();

-- One append statement of the server: under the lock, reads the log's head (the last event in log
-- order, which every later event follows), inserts the rows, and queues the NOTIFY that wakes other
-- nodes' tailers at commit. Returns each row's placement and that head ('0', 0 on an empty log).
CREATE FUNCTION netia_append(
    ids uuid[], stream_types text[], stream_ids text[], versions bigint[], types text[],
    type_versions int[], payloads text[], metadatas text[], times timestamptz[], hashes bytea[],
    notify_payload text
) RETURNS TABLE (placed_position bigint, placed_tx text, placed_stream_type text, placed_stream_id text,
                 placed_version bigint, head_tx text, head_position bigint)
LANGUAGE plpgsql AS $$
DECLARE
    last_tx xid8;
    last_position bigint;
    ignored text;
BEGIN
    ignored := netia_events_lock()::text;
    SELECT h.tx_id, h.global_position INTO last_tx, last_position
        FROM events h ORDER BY h.tx_id DESC, h.global_position DESC LIMIT 1;
    RETURN QUERY
        WITH placed AS (
            INSERT INTO events (event_id, stream_type, stream_id, version, event_type, event_version,
                                payload, metadata, recorded_at, hash)
            SELECT u.e, u.st, u.si, u.v, u.t, u.tv, u.p::jsonb, u.m::jsonb, u.r, u.h
            FROM UNNEST(ids, stream_types, stream_ids, versions, types, type_versions, payloads, metadatas,
                        times, hashes) AS u(e, st, si, v, t, tv, p, m, r, h)
            RETURNING events.global_position, events.tx_id, events.stream_type, events.stream_id, events.version
        )
        SELECT placed.global_position, placed.tx_id::text, placed.stream_type, placed.stream_id,
               placed.version, COALESCE(last_tx::text, '0'), COALESCE(last_position, 0)
        FROM placed;
    ignored := pg_notify('netia_events', notify_payload)::text;
END;
$$;
