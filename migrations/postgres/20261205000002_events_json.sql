-- Events keep their payload and metadata as the JSON text they were appended with (json, not
-- jsonb): docs/adr/0025-json-text-in-the-log.md. Nothing queries inside them in SQL (readers
-- decode the whole document; the chain hashes a canonical form of the decoded value,
-- events/src/chain.rs), so jsonb's parse into its binary form on every insert and its
-- re-serialization on every read bought nothing. json checks that the text is JSON and stores it
-- as sent.
--
-- The change rewrites the table and its indexes once, under an exclusive lock: appends and reads
-- wait for it on upgrade. No trigger fires (ALTER TABLE is not an UPDATE).
ALTER TABLE events
    ALTER COLUMN payload TYPE json USING payload::json,
    ALTER COLUMN metadata TYPE json USING metadata::json;

-- The two append functions, as in 20261201000004_log_order_by_position.sql and
-- 20261205000001_append_one.sql, casting the documents to json.
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
            SELECT u.e, u.st, u.si, u.v, u.t, u.tv, u.p::json, u.m::json, u.r, u.h
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

CREATE OR REPLACE FUNCTION netia_append_one(
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
        SELECT u.e, the_stream_type, the_stream_id, u.v, u.t, u.tv, u.p::json, u.m::json, u.r, u.h
        FROM UNNEST(ids, versions, types, type_versions, payloads, metadatas, times, hashes)
            AS u(e, v, t, tv, p, m, r, h)
        RETURNING events.global_position, events.tx_id::text, events.version, last_position;
    ignored := pg_notify('netia_events', notify_payload)::text;
END;
$$;
