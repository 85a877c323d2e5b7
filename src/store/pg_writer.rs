//! Group commit for PostgreSQL: appends that arrive together share one INSERT statement, so one
//! commit (one WAL flush) serves many of them. A statement is atomic by itself; if it fails (a
//! conflict in any one append), each append is retried alone so that only the conflicting ones fail.

use std::collections::HashMap;
use std::sync::Arc;

use netia_events::StreamRef;
use sqlx::postgres::PgPool;
use sqlx::{Executor, Postgres, Row};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::PreparedEvent;

/// Statements in flight at once per store: one executes while the next batch gathers.
pub(super) const WRITERS: usize = 2;
const MAX_APPENDS_PER_BATCH: usize = 256;
const MAX_ROWS_PER_BATCH: usize = 5_000;

/// Where each inserted event landed: `(global_position, tx_id)`, in version order.
pub(super) type Placed = Vec<(i64, u64)>;

pub(super) struct Append {
    pub stream: StreamRef,
    pub prepared: Vec<PreparedEvent>,
    /// Gets the events back with their placements, or why they were not placed.
    pub reply: oneshot::Sender<Result<(Vec<PreparedEvent>, Placed), WriteError>>,
}

#[derive(Debug)]
pub(super) enum WriteError {
    /// The unique `(stream, version)` constraint refused the append: nothing of it was stored.
    Conflict,
    /// The database refused the statement: nothing of it was stored.
    Refused(sqlx::Error),
    /// The connection failed while the statement ran: it may or may not have committed.
    Unknown(String),
}

impl From<sqlx::Error> for WriteError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db)
                if db.code().as_deref() == Some("23505") && db.constraint() == Some("events_stream_version") =>
            {
                WriteError::Conflict
            }
            sqlx::Error::Database(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => WriteError::Refused(e),
            _ => WriteError::Unknown(e.to_string()),
        }
    }
}

/// Starts the writer tasks; appends are sent through the returned channel.
pub(super) fn spawn(pool: PgPool) -> (mpsc::Sender<Append>, Vec<tokio::task::JoinHandle<()>>) {
    let (tx, rx) = mpsc::channel::<Append>(4 * MAX_APPENDS_PER_BATCH);
    let rx = Arc::new(Mutex::new(rx));
    let tasks = (0..WRITERS)
        .map(|_| tokio::spawn(write_batches(pool.clone(), rx.clone())))
        .collect();
    (tx, tasks)
}

async fn write_batches(pool: PgPool, rx: Arc<Mutex<mpsc::Receiver<Append>>>) {
    loop {
        let batch = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut rows = first.prepared.len();
            let mut batch = vec![first];
            while batch.len() < MAX_APPENDS_PER_BATCH && rows < MAX_ROWS_PER_BATCH {
                match rx.try_recv() {
                    Ok(next) => {
                        rows += next.prepared.len();
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            batch
        };
        if batch.len() > 1 {
            match insert(&pool, &batch).await.map_err(WriteError::from) {
                Ok(mut placed) => {
                    for append in batch.into_iter().rev() {
                        let placed = placed.pop().unwrap_or_default();
                        let _ = append.reply.send(Ok((append.prepared, placed)));
                    }
                    continue;
                }
                // Some append conflicts, or the database refused the statement: nothing was
                // stored, so each append can safely be tried alone.
                Err(WriteError::Conflict | WriteError::Refused(_)) => {}
                // Retrying after a possible commit could store events twice: report, don't retry.
                Err(WriteError::Unknown(reason)) => {
                    for append in batch {
                        let _ = append.reply.send(Err(WriteError::Unknown(reason.clone())));
                    }
                    continue;
                }
            }
        }
        for append in batch {
            let result = insert(&pool, std::slice::from_ref(&append)).await;
            let result = result
                .map(|mut placed| (append.prepared, placed.pop().unwrap_or_default()))
                .map_err(WriteError::from);
            let _ = append.reply.send(result);
        }
    }
}

/// Inserts every event of `appends` in one statement; returns each append's placements.
async fn insert<'e, E>(executor: E, appends: &[Append]) -> Result<Vec<Placed>, sqlx::Error>
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
    let mut slot: HashMap<(&str, &str, i64), (usize, usize)> = HashMap::with_capacity(n);
    for (a, append) in appends.iter().enumerate() {
        for (e, p) in append.prepared.iter().enumerate() {
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
            slot.insert(
                (&append.stream.stream_type, &append.stream.stream_id, p.version),
                (a, e),
            );
        }
    }
    let rows = sqlx::query(
        "INSERT INTO events (event_id, stream_type, stream_id, version, event_type, event_version, \
                             payload, metadata, recorded_at, hash) \
         SELECT e, st, si, v, t, tv, p::jsonb, m::jsonb, r, h \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::int[], $7::text[], \
                     $8::text[], $9::timestamptz[], $10::bytea[]) AS u(e, st, si, v, t, tv, p, m, r, h) \
         RETURNING global_position, tx_id::text AS tx_text, stream_type, stream_id, version",
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
    .fetch_all(executor)
    .await?;
    let mut placed: Vec<Placed> = appends.iter().map(|a| vec![(0, 0); a.prepared.len()]).collect();
    for row in rows {
        let stream_type: String = row.try_get("stream_type")?;
        let stream_id: String = row.try_get("stream_id")?;
        let version: i64 = row.try_get("version")?;
        let tx_text: String = row.try_get("tx_text")?;
        let tx_id = tx_text
            .parse::<u64>()
            .map_err(|e| sqlx::Error::Decode(format!("tx_id {tx_text:?}: {e}").into()))?;
        let Some(&(a, e)) = slot.get(&(stream_type.as_str(), stream_id.as_str(), version)) else {
            return Err(sqlx::Error::Protocol("INSERT returned a row that was not sent".into()));
        };
        placed[a][e] = (row.try_get("global_position")?, tx_id);
    }
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_connection_leaves_the_outcome_unknown() {
        let io = sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset"));
        assert!(matches!(WriteError::from(io), WriteError::Unknown(_)));
    }

    #[test]
    fn a_statement_never_sent_was_not_stored() {
        assert!(matches!(
            WriteError::from(sqlx::Error::PoolTimedOut),
            WriteError::Refused(_)
        ));
        assert!(matches!(
            WriteError::from(sqlx::Error::PoolClosed),
            WriteError::Refused(_)
        ));
    }
}
