//! The append statements the writer sends: `netia_append_one` for an append alone,
//! `netia_append_each` for a batch, and the reading of their answers into placements.

use std::collections::HashMap;

use netia_events::Checkpoint;
use sqlx::{Executor, Postgres, Row};

use super::{Append, Placed};

/// Appends one append's events if its expected version holds (`netia_append_one`: the same rules
/// as [`insert`] for one stream, with less work in the database); returns the head they follow and
/// the append's placements (`None`: refused as stale).
pub(super) async fn insert_one<'e, E>(
    executor: E,
    append: &Append,
    node: &str,
) -> Result<(Checkpoint, Vec<Placed>), sqlx::Error>
where
    E: Executor<'e, Database = Postgres>,
{
    let events = &append.prepared;
    let rows = sqlx::query(
        "SELECT placed_position, placed_tx, placed_version, head_position \
         FROM netia_append_one($1::uuid[], $2, $3, $4::bigint[], $5::text[], $6::int[], $7::text[], \
                               $8::text[], $9::timestamptz[], $10::bytea[], $11)",
    )
    .bind(events.iter().map(|p| p.event_id).collect::<Vec<_>>())
    .bind(&append.stream.stream_type)
    .bind(&append.stream.stream_id)
    .bind(events.iter().map(|p| p.version).collect::<Vec<_>>())
    .bind(events.iter().map(|p| p.event_type.as_str()).collect::<Vec<_>>())
    .bind(events.iter().map(|p| p.event_version).collect::<Vec<_>>())
    .bind(events.iter().map(|p| p.payload_text.as_str()).collect::<Vec<_>>())
    .bind(events.iter().map(|p| p.metadata_text.as_str()).collect::<Vec<_>>())
    .bind(events.iter().map(|p| p.recorded_at).collect::<Vec<_>>())
    .bind(events.iter().map(|p| p.hash.as_slice()).collect::<Vec<_>>())
    .bind(node)
    .fetch_all(executor)
    .await?;
    let Some(first) = rows.first() else {
        return Err(sqlx::Error::Protocol("the append answered nothing".into()));
    };
    let head = Checkpoint::at(first.try_get("head_position")?);
    if first.try_get::<Option<i64>, _>("placed_position")?.is_none() {
        // A refusal is one row and nothing else: anything more would make "nothing written"
        // uncertain, and an unknown outcome is resolved from the log by the caller.
        if rows.len() != 1 {
            return Err(sqlx::Error::Protocol(
                "the append both refused and placed events".into(),
            ));
        }
        return Ok((head, vec![None]));
    }
    // Versions are consecutive from the first (`prepare`).
    let first_version = events.first().map_or(0, |p| p.version);
    let mut slots: Vec<Option<(i64, u64)>> = vec![None; events.len()];
    for row in rows {
        let version: i64 = row.try_get("placed_version")?;
        let slot = usize::try_from(version - first_version)
            .ok()
            .and_then(|e| slots.get_mut(e))
            .filter(|slot| slot.is_none());
        let Some(slot) = slot else {
            return Err(sqlx::Error::Protocol(
                "the append returned a row that was not sent, or one twice".into(),
            ));
        };
        *slot = Some((row.try_get("placed_position")?, parse_tx(row.try_get("placed_tx")?)?));
    }
    let Some(placed) = slots.into_iter().collect::<Option<Vec<_>>>() else {
        return Err(sqlx::Error::Protocol("the append did not place every event".into()));
    };
    Ok((head, vec![Some(placed)]))
}

/// Appends every event of `appends` whose expected version holds in one statement; returns the
/// head they follow and each append's placements (`None`: refused as stale).
pub(super) async fn insert<'e, E>(
    executor: E,
    appends: &[Append],
    node: &str,
) -> Result<(Checkpoint, Vec<Placed>), sqlx::Error>
where
    E: Executor<'e, Database = Postgres>,
{
    let n: usize = appends.iter().map(|a| a.prepared.len()).sum();
    let mut ids = Vec::with_capacity(n);
    let mut stream_types = Vec::with_capacity(n);
    let mut stream_ids = Vec::with_capacity(n);
    let mut versions = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    let mut type_versions = Vec::with_capacity(n);
    let mut payloads = Vec::with_capacity(n);
    let mut metadatas = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    let mut hashes = Vec::with_capacity(n);
    let mut append_of = Vec::with_capacity(n);
    let mut slot: HashMap<(&str, &str, i64), (usize, usize)> = HashMap::with_capacity(n);
    for (a, append) in appends.iter().enumerate() {
        for p in &append.prepared {
            ids.push(p.event_id);
            stream_types.push(append.stream.stream_type.as_str());
            stream_ids.push(append.stream.stream_id.as_str());
            versions.push(p.version);
            types.push(p.event_type.as_str());
            type_versions.push(p.event_version);
            payloads.push(p.payload_text.as_str());
            metadatas.push(p.metadata_text.as_str());
            times.push(p.recorded_at);
            hashes.push(p.hash.as_slice());
            append_of.push(i32::try_from(a).map_err(|_| sqlx::Error::Protocol("too many appends".into()))?);
        }
    }
    let rows = sqlx::query(
        "SELECT placed_position, placed_tx, placed_stream_type, placed_stream_id, placed_version, \
                refused_append, head_position \
         FROM netia_append_each($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::int[], \
                                $7::text[], $8::text[], $9::timestamptz[], $10::bytea[], $11::int[], $12)",
    )
    .bind(&ids)
    .bind(&stream_types)
    .bind(&stream_ids)
    .bind(&versions)
    .bind(&types)
    .bind(&type_versions)
    .bind(&payloads)
    .bind(&metadatas)
    .bind(&times)
    .bind(&hashes)
    .bind(&append_of)
    .bind(node)
    .fetch_all(executor)
    .await?;
    let mut placed: Vec<Placed> = appends.iter().map(|a| Some(vec![(0, 0); a.prepared.len()])).collect();
    let mut head = Checkpoint::default();
    for row in &rows {
        head = Checkpoint::at(row.try_get("head_position")?);
        if let Some(refused) = row.try_get::<Option<i32>, _>("refused_append")? {
            let slot = usize::try_from(refused).ok().and_then(|a| placed.get_mut(a));
            let Some(slot) = slot else {
                return Err(sqlx::Error::Protocol(
                    "the append refused an append that was not sent".into(),
                ));
            };
            *slot = None;
        }
    }
    // Placed rows belong to accepted appends only (a refused one may share a stream and version
    // with an accepted one; accepted ones never overlap).
    for (a, append) in appends.iter().enumerate() {
        if placed[a].is_some() {
            for (e, p) in append.prepared.iter().enumerate() {
                slot.insert(
                    (&append.stream.stream_type, &append.stream.stream_id, p.version),
                    (a, e),
                );
            }
        }
    }
    let mut filled = 0;
    for row in rows {
        if row.try_get::<Option<i32>, _>("refused_append")?.is_some() {
            continue;
        }
        let stream_type: String = row.try_get("placed_stream_type")?;
        let stream_id: String = row.try_get("placed_stream_id")?;
        let version: i64 = row.try_get("placed_version")?;
        let tx_id = parse_tx(row.try_get("placed_tx")?)?;
        let Some(&(a, e)) = slot.get(&(stream_type.as_str(), stream_id.as_str(), version)) else {
            return Err(sqlx::Error::Protocol(
                "the append returned a row that was not sent".into(),
            ));
        };
        if let Some(events) = placed[a].as_mut() {
            events[e] = (row.try_get("placed_position")?, tx_id);
            filled += 1;
        }
    }
    if filled != slot.len() {
        return Err(sqlx::Error::Protocol(
            "the append did not place every accepted event".into(),
        ));
    }
    Ok((head, placed))
}

pub(super) fn parse_tx(text: String) -> Result<u64, sqlx::Error> {
    text.parse::<u64>()
        .map_err(|e| sqlx::Error::Decode(format!("tx_id {text:?}: {e}").into()))
}
