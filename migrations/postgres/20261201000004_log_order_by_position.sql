-- The log is ordered by global_position alone (docs/adr/0016-log-order-by-position.md).
--
-- Appends are serialized (20261129000001_serialized_appends.sql): every insert into events takes the
-- append lock before its first row, and a row's position (its identity value) is drawn while the row
-- is formed, after that lock is held; the lock is released only once the transaction's commit is
-- visible. So position order is commit order, and a reader that sees an event sees every event
-- before it. Readers used (tx_id, global_position) order instead, which is the same order on one
-- cluster but not after a dump and restore or a move to another cluster: transaction ids start
-- again lower there, new events sorted before the restored ones, and every tailer stopped.
--
-- tx_id stays in each row for diagnostics. Stored checkpoints keep their positions (the tx_id column
-- of projection_checkpoints is dropped by the projectors' setup): with serialized appends a
-- (tx_id, position) checkpoint and its position name the same place in the log.

-- Nothing orders by transaction id any more: the index only cost every insert.
DROP INDEX IF EXISTS events_commit_order;

-- Unused since netia_append_each (20261130000003_append_status.sql), and it read the head in
-- (tx_id, global_position) order.
DROP FUNCTION IF EXISTS netia_append(uuid[], text[], text[], bigint[], text[], int[], text[], text[],
                                     timestamptz[], bytea[], text);

-- As in 20261201000003_append_head_by_index.sql, except that the log's head is the highest position.
CREATE OR REPLACE FUNCTION netia_append_each(
    ids uuid[], stream_types text[], stream_ids text[], versions bigint[], types text[],
    type_versions int[], payloads text[], metadatas text[], times timestamptz[], hashes bytea[],
    append_of int[], notify_payload text
) RETURNS TABLE (placed_position bigint, placed_tx text, placed_stream_type text, placed_stream_id text,
                 placed_version bigint, refused_append int, head_tx text, head_position bigint)
LANGUAGE plpgsql AS $$
DECLARE
    last_tx xid8;
    last_position bigint;
    ignored text;
    -- stream key (type, unit separator, id) -> its head so far in this call
    heads jsonb := '{}';
    refused int[] := '{}';
    accepted int := 0;
    a record;
    stream_key text;
    stream_head bigint;
BEGIN
    ignored := netia_events_lock()::text;
    SELECT h.tx_id, h.global_position INTO last_tx, last_position
        FROM events h ORDER BY h.global_position DESC LIMIT 1;
    FOR a IN
        SELECT u.n, min(u.st) AS st, min(u.si) AS si, min(u.v) AS first_version, max(u.v) AS last_version
        FROM UNNEST(append_of, stream_types, stream_ids, versions) AS u(n, st, si, v)
        GROUP BY u.n ORDER BY u.n
    LOOP
        stream_key := a.st || chr(31) || a.si;
        IF heads ? stream_key THEN
            stream_head := (heads ->> stream_key)::bigint;
        ELSE
            SELECT e.version INTO stream_head
                FROM events e WHERE e.stream_type = a.st AND e.stream_id = a.si
                ORDER BY e.version DESC LIMIT 1;
            stream_head := COALESCE(stream_head, 0);
        END IF;
        IF a.first_version = stream_head + 1 THEN
            stream_head := a.last_version;
            accepted := accepted + 1;
        ELSE
            refused := refused || a.n;
        END IF;
        heads := heads || jsonb_build_object(stream_key, stream_head);
    END LOOP;
    RETURN QUERY
        WITH placed AS (
            INSERT INTO events (event_id, stream_type, stream_id, version, event_type, event_version,
                                payload, metadata, recorded_at, hash)
            SELECT u.e, u.st, u.si, u.v, u.t, u.tv, u.p::jsonb, u.m::jsonb, u.r, u.h
            FROM UNNEST(ids, stream_types, stream_ids, versions, types, type_versions, payloads, metadatas,
                        times, hashes, append_of) AS u(e, st, si, v, t, tv, p, m, r, h, n)
            WHERE NOT (u.n = ANY (refused))
            RETURNING events.global_position, events.tx_id, events.stream_type, events.stream_id, events.version
        )
        SELECT placed.global_position, placed.tx_id::text, placed.stream_type, placed.stream_id,
               placed.version, NULL::int, COALESCE(last_tx::text, '0'), COALESCE(last_position, 0)
        FROM placed
        UNION ALL
        SELECT NULL::bigint, NULL::text, NULL::text, NULL::text, NULL::bigint, r.n,
               COALESCE(last_tx::text, '0'), COALESCE(last_position, 0)
        FROM UNNEST(refused) AS r(n);
    IF accepted > 0 THEN
        ignored := pg_notify('netia_events', notify_payload)::text;
    END IF;
END;
$$;
