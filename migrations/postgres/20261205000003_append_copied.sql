-- Large appends by COPY (docs/adr/0026-large-appends-by-copy.md): the writer sends a batch of many
-- rows as `COPY events FROM STDIN (FORMAT binary)` inside a transaction, then calls
-- netia_append_copied in the same transaction to check it and queue the NOTIFY, then commits.
-- COPY inserts rows through PostgreSQL's multi-insert path, about two thirds of the backend's
-- time a row of the INSERT ... SELECT FROM UNNEST in netia_append_each.
--
-- The COPY's statement trigger (events_serialized) takes the append lock before its first row,
-- so every row it inserts draws the next value of the log's sequence and nothing else inserts
-- meanwhile: the copied rows hold the positions last - copied + 1 .. last, in the order sent.
-- Checked below, not assumed: that this transaction holds exactly that many rows in that range,
-- and that each append's first row is at its place in it. Duplicated versions were refused by the unique index during the
-- COPY; what the index cannot see is a gap: an append whose first version does not follow its
-- stream's head as it stood just before that append's first row. The rules are those of
-- netia_append_each (20261201000004_log_order_by_position.sql): appends in the order sent, each
-- against the head left by the ones before it.
--
-- stream_types, stream_ids, first_versions, offsets: one entry per append, in the order its rows
-- were copied; offsets[i] is the number of rows copied before append i's first row.
-- Returns one row: the first copied row's position, the transaction id, and the log's head before
-- the copy; or, if some appends leave a gap, one row per such append (its 0-based index in
-- refused_append, no position) and no NOTIFY: the caller rolls back and answers per append
-- through netia_append_each.
CREATE FUNCTION netia_append_copied(
    stream_types text[], stream_ids text[], first_versions bigint[], offsets bigint[], copied bigint,
    notify_payload text
) RETURNS TABLE (first_position bigint, placed_tx text, head_position bigint, refused_append int)
LANGUAGE plpgsql AS $$
DECLARE
    last_position bigint;
    first bigint;
    ours bigint;
    head bigint;
    gaps int[];
    ignored text;
BEGIN
    IF current_setting('netia.events_locked', true) IS DISTINCT FROM 'on' THEN
        RAISE EXCEPTION 'netia_append_copied runs after a COPY into events, under the append lock';
    END IF;
    last_position := currval(pg_get_serial_sequence('events', 'global_position'));
    first := last_position - copied + 1;
    SELECT count(*) INTO ours FROM events e
        WHERE e.global_position BETWEEN first AND last_position AND e.tx_id = pg_current_xact_id();
    IF ours IS DISTINCT FROM copied THEN
        RAISE EXCEPTION 'the copied rows are not positions % to % of this transaction (% of % are)',
            first, last_position, ours, copied;
    END IF;
    IF EXISTS (
        SELECT 1 FROM UNNEST(stream_types, stream_ids, first_versions, offsets) AS u(st, si, v, o)
        WHERE NOT EXISTS (
            SELECT 1 FROM events e
            WHERE e.global_position = first + u.o
              AND e.stream_type = u.st AND e.stream_id = u.si AND e.version = u.v))
    THEN
        RAISE EXCEPTION 'the copied rows are not in the order of the appends given';
    END IF;
    SELECT h.global_position INTO head FROM events h
        WHERE h.global_position < first ORDER BY h.global_position DESC LIMIT 1;
    head := COALESCE(head, 0);
    SELECT array_agg(u.n - 1) INTO gaps
        FROM UNNEST(stream_types, stream_ids, first_versions, offsets) WITH ORDINALITY AS u(st, si, v, o, n)
        WHERE u.v <> 1 AND NOT EXISTS (
            SELECT 1 FROM events e
            WHERE e.stream_type = u.st AND e.stream_id = u.si AND e.version = u.v - 1
              AND e.global_position < first + u.o);
    IF gaps IS NOT NULL THEN
        RETURN QUERY SELECT NULL::bigint, NULL::text, head, g FROM UNNEST(gaps) AS g;
        RETURN;
    END IF;
    ignored := pg_notify('netia_events', notify_payload)::text;
    RETURN QUERY SELECT first, pg_current_xact_id()::text, head, NULL::int;
END;
$$;
