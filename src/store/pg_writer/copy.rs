//! Large appends by `COPY` (ADR 0026): a statement of at least [`COPY_MIN_ROWS`] rows is sent as
//! `COPY events FROM STDIN (FORMAT binary)` in a transaction, checked by `netia_append_copied`
//! (migration `20261205000003_append_copied.sql`) and committed. PostgreSQL's COPY inserts
//! through its multi-insert path: about two thirds of the backend's time a row of the
//! `INSERT … SELECT FROM UNNEST` in `netia_append_each`, which bounds serialized appends.
//!
//! The rules are the append statements' (each append's first version must follow its stream's
//! head as the appends before it in the batch left it), but the COPY cannot refuse one append and
//! keep the others: a stale append fails the COPY on the unique `(stream, version)` index (a
//! reused event id on the event-id index), and an append ahead of its stream is found by
//! `netia_append_copied`. Either way the transaction is rolled back, nothing of it stays, and the
//! caller sends the batch through the append statement, which answers per append.

use netia_events::Checkpoint;
use sqlx::encode::IsNull;
use sqlx::postgres::{PgArgumentBuffer, PgConnection};
use sqlx::{Connection, Encode, Postgres, Row};

use super::statements::parse_tx;
use super::{Append, Placed};

/// Statements of at least this many rows go by COPY. The transaction costs four more round trips
/// than an append statement (BEGIN, the COPY's start, the check, COMMIT), about as much as COPY
/// saves on a hundred rows: one writer of 100-event appends ran at about 0.9x by COPY, eight
/// writers' 700-800-row statements at 1.18-1.32x (ADR 0026).
pub(super) const COPY_MIN_ROWS: usize = 256;

const COPY_EVENTS: &str = "COPY events (event_id, stream_type, stream_id, version, event_type, event_version, \
                           payload, metadata, recorded_at, hash) FROM STDIN (FORMAT binary)";

/// The binary COPY header: the 11-byte signature, 32-bit flags (none: no OIDs) and the 32-bit
/// length of the header extension (none) — PostgreSQL's documentation, COPY, "Binary Format".
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// Fields a tuple, as a 16-bit count before each tuple; the file trailer is a count of -1.
const FIELDS: i16 = 10;
const TRAILER: i16 = -1;

/// Copies every event of `appends` in one transaction. `Ok(None)`: some append did not hold (a
/// stale or skipped version, or a reused event id); the transaction was rolled back (when the
/// connection is next used) and nothing was stored. Otherwise the head the rows follow and each
/// append's placements.
pub(super) async fn insert_copied(
    conn: &mut PgConnection,
    appends: &[Append],
    node: &str,
) -> Result<Option<(Checkpoint, Vec<Placed>)>, sqlx::Error> {
    let data = encode(appends)?;
    let mut stream_types = Vec::with_capacity(appends.len());
    let mut stream_ids = Vec::with_capacity(appends.len());
    let mut first_versions = Vec::with_capacity(appends.len());
    let mut offsets = Vec::with_capacity(appends.len());
    let mut copied: i64 = 0;
    for append in appends {
        stream_types.push(append.stream.stream_type.as_str());
        stream_ids.push(append.stream.stream_id.as_str());
        first_versions.push(append.prepared.first().map_or(0, |p| p.version));
        offsets.push(copied);
        copied += i64::try_from(append.prepared.len()).map_err(|_| sqlx::Error::Protocol("too many rows".into()))?;
    }
    // Dropped without a commit, the transaction is rolled back before the connection's next use.
    let mut tx = conn.begin().await?;
    let mut copy = tx.copy_in_raw(COPY_EVENTS).await?;
    copy.send(data.as_slice()).await?;
    match copy.finish().await {
        Ok(rows) if i64::try_from(rows).ok() == Some(copied) => {}
        Ok(rows) => {
            return Err(sqlx::Error::Protocol(format!("COPY inserted {rows} rows of {copied}")));
        }
        // Any unique violation (a stale version, or a reused event id, which the event-id index
        // may report first): the append statements say which append and why.
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23505") => return Ok(None),
        Err(e) => return Err(e),
    }
    let rows = sqlx::query(
        "SELECT first_position, placed_tx, head_position, refused_append \
         FROM netia_append_copied($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5, $6)",
    )
    .bind(&stream_types)
    .bind(&stream_ids)
    .bind(&first_versions)
    .bind(&offsets)
    .bind(copied)
    .bind(node)
    .fetch_all(&mut *tx)
    .await?;
    let [row] = rows.as_slice() else {
        return Ok(None); // one row per append left ahead of its stream
    };
    if row.try_get::<Option<i32>, _>("refused_append")?.is_some() {
        return Ok(None);
    }
    let head = Checkpoint::at(row.try_get("head_position")?);
    let Some(first_position) = row.try_get::<Option<i64>, _>("first_position")? else {
        return Err(sqlx::Error::Protocol("the copy's check placed nothing".into()));
    };
    let tx_id = parse_tx(row.try_get("placed_tx")?)?;
    tx.commit().await?;
    // The rows hold consecutive positions in the order sent (netia_append_copied checked the
    // range and where each append starts in it).
    let placed = appends
        .iter()
        .zip(offsets)
        .map(|(append, offset)| {
            Some(
                (0..append.prepared.len())
                    .map(|e| (first_position + offset + e as i64, tx_id))
                    .collect(),
            )
        })
        .collect();
    Ok(Some((head, placed)))
}

/// The appends' rows in PostgreSQL's binary COPY format, each field encoded by sqlx's own binary
/// encoders (the ones that bind the append statements' parameters).
fn encode(appends: &[Append]) -> Result<PgArgumentBuffer, sqlx::Error> {
    let mut buf = PgArgumentBuffer::default();
    buf.extend_from_slice(HEADER);
    for append in appends {
        let stream = &append.stream;
        for p in &append.prepared {
            buf.extend_from_slice(&FIELDS.to_be_bytes());
            field(&mut buf, &p.event_id)?;
            field(&mut buf, &stream.stream_type.as_str())?;
            field(&mut buf, &stream.stream_id.as_str())?;
            field(&mut buf, &p.version)?;
            field(&mut buf, &p.event_type.as_str())?;
            field(&mut buf, &p.event_version)?;
            field(&mut buf, &p.payload_text.as_str())?;
            field(&mut buf, &p.metadata_text.as_str())?;
            field(&mut buf, &p.recorded_at)?;
            field(&mut buf, &p.hash.as_slice())?;
        }
    }
    buf.extend_from_slice(&TRAILER.to_be_bytes());
    Ok(buf)
}

/// One field: its 32-bit length (-1 for NULL), then its bytes in the column type's binary form.
fn field<'q, T: Encode<'q, Postgres>>(buf: &mut PgArgumentBuffer, value: &T) -> Result<(), sqlx::Error> {
    let at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    let len = match value.encode_by_ref(buf).map_err(sqlx::Error::Encode)? {
        IsNull::No => {
            i32::try_from(buf.len() - at - 4).map_err(|_| sqlx::Error::Protocol("a field over 2 GiB".into()))?
        }
        IsNull::Yes => -1,
    };
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}
