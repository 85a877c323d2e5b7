//! The PostgreSQL event store: short append transactions, gap-free reads in commit order.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use netia_events::chain::GENESIS;
use netia_events::{Checkpoint, NewEvent, RecordedEvent, StreamRef};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Row};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{Backend, EventStore, StoreError, StreamBound, prepare, to_recorded};

/// The NOTIFY channel that wakes tailers after each append.
pub const NOTIFY_CHANNEL: &str = "netia_events";

const SELECT_COLUMNS: &str = "global_position, tx_id::text AS tx_id, event_id, stream_type, stream_id, version, \
     event_type, event_version, payload, metadata, recorded_at, hash";

pub struct PgStore {
    pool: PgPool,
    wake_tx: watch::Sender<u64>,
    listener: JoinHandle<()>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl PgStore {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?
            .application_name("netia")
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(Self::from_pool(pool))
    }

    /// Wraps an existing pool; starts the LISTEN task that feeds [`EventStore::wake`].
    pub fn from_pool(pool: PgPool) -> Self {
        let (wake_tx, _) = watch::channel(0u64);
        let listener = tokio::spawn(listen(pool.clone(), wake_tx.clone()));
        Self {
            pool,
            wake_tx,
            listener,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }


    async fn head(&self, stream: &StreamRef) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
        let row = sqlx::query(
            "SELECT version, hash FROM events WHERE stream_type = $1 AND stream_id = $2 \
             ORDER BY version DESC LIMIT 1",
        )
        .bind(&stream.stream_type)
        .bind(&stream.stream_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(row) => Some((row.try_get("version")?, row.try_get("hash")?)),
            None => None,
        })
    }

    async fn conflict(&self, stream: &StreamRef, expected: i64) -> StoreError {
        let actual = self.stream_version(stream).await.unwrap_or(-1);
        StoreError::Conflict {
            stream: stream.clone(),
            expected,
            actual,
        }
    }
}

/// Relays NOTIFYs into the watch channel, reconnecting after errors.
async fn listen(pool: PgPool, wake_tx: watch::Sender<u64>) {
    loop {
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => {
                if let Err(e) = listener.listen(NOTIFY_CHANNEL).await {
                    tracing::warn!(error = %e, "LISTEN failed; retrying");
                } else {
                    // Anything committed while we were not listening is found by the next read.
                    wake_tx.send_modify(|n| *n += 1);
                    loop {
                        match listener.recv().await {
                            Ok(_) => wake_tx.send_modify(|n| *n += 1),
                            Err(e) => {
                                tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                                break;
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot open LISTEN connection; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

fn decode_row(row: &sqlx::postgres::PgRow) -> Result<RecordedEvent, StoreError> {
    let position: i64 = row.try_get("global_position")?;
    let tx_text: String = row.try_get("tx_id")?;
    let tx_id = tx_text.parse::<u64>().map_err(|e| StoreError::Corrupt {
        position,
        reason: format!("tx_id {tx_text:?}: {e}"),
    })?;
    Ok(RecordedEvent {
        global_position: position,
        tx_id,
        event_id: row.try_get::<Uuid, _>("event_id")?,
        stream_type: row.try_get("stream_type")?,
        stream_id: row.try_get("stream_id")?,
        version: row.try_get("version")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload: row.try_get("payload")?,
        metadata: row.try_get("metadata")?,
        recorded_at: row.try_get::<DateTime<Utc>, _>("recorded_at")?,
        hash: row.try_get("hash")?,
    })
}

#[async_trait]
impl EventStore for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    #[tracing::instrument(skip_all, fields(stream = %stream, expected_version), err(level = "debug"))]
    async fn append(
        &self,
        stream: &StreamRef,
        expected_version: i64,
        events: Vec<NewEvent>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let (version, prev_hash) = self.head(stream).await?.unwrap_or((0, GENESIS.to_vec()));
        if version != expected_version {
            return Err(StoreError::Conflict {
                stream: stream.clone(),
                expected: expected_version,
                actual: version,
            });
        }
        let prepared = prepare(stream, expected_version, &prev_hash, events)?;
        let n = prepared.len();
        let mut ids = Vec::with_capacity(n);
        let mut versions = Vec::with_capacity(n);
        let mut types = Vec::with_capacity(n);
        let mut type_versions = Vec::with_capacity(n);
        let mut payloads = Vec::with_capacity(n);
        let mut metadatas = Vec::with_capacity(n);
        let mut times = Vec::with_capacity(n);
        let mut hashes = Vec::with_capacity(n);
        for p in &prepared {
            ids.push(p.event_id);
            versions.push(p.version);
            types.push(p.event_type.as_str());
            type_versions.push(p.event_version);
            payloads.push(p.payload_text.as_str());
            metadatas.push(p.metadata_text.as_str());
            times.push(p.recorded_at);
            hashes.push(p.hash.to_vec());
        }
        // One statement: atomic on its own, so no explicit transaction (and no extra round trips).
        // The NOTIFY is sent when it commits.
        let rows = sqlx::query(
            "WITH ins AS ( \
                INSERT INTO events (event_id, stream_type, stream_id, version, event_type, event_version, \
                                    payload, metadata, recorded_at, hash) \
                SELECT e, $2, $3, v, t, tv, p::jsonb, m::jsonb, r, h \
                FROM UNNEST($1::uuid[], $4::bigint[], $5::text[], $6::int[], $7::text[], $8::text[], \
                            $9::timestamptz[], $10::bytea[]) AS u(e, v, t, tv, p, m, r, h) \
                RETURNING global_position, tx_id, version) \
             SELECT ins.global_position, ins.tx_id::text AS tx_id \
             FROM ins CROSS JOIN (SELECT pg_notify($11, '')) AS n ORDER BY ins.version",
        )
        .bind(&ids)
        .bind(&stream.stream_type)
        .bind(&stream.stream_id)
        .bind(&versions)
        .bind(&types)
        .bind(&type_versions)
        .bind(&payloads)
        .bind(&metadatas)
        .bind(&times)
        .bind(&hashes)
        .bind(NOTIFY_CHANNEL)
        .fetch_all(&self.pool)
        .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) if is_unique_violation(&e) => return Err(self.conflict(stream, expected_version).await),
            Err(e) => return Err(e.into()),
        };
        if rows.len() != n {
            return Err(StoreError::Invalid(format!("inserted {} of {n} events", rows.len())));
        }
        let mut recorded = Vec::with_capacity(n);
        for (p, row) in prepared.into_iter().zip(rows) {
            let position: i64 = row.try_get("global_position")?;
            let tx: String = row.try_get("tx_id")?;
            let tx_id = tx.parse::<u64>().map_err(|e| StoreError::Corrupt {
                position,
                reason: e.to_string(),
            })?;
            recorded.push(to_recorded(stream, p, position, tx_id));
        }
        self.wake_tx.send_modify(|n| *n += 1);
        Ok(recorded)
    }

    async fn read_stream(&self, stream: &StreamRef, bound: StreamBound) -> Result<Vec<RecordedEvent>, StoreError> {
        let base = format!("SELECT {SELECT_COLUMNS} FROM events WHERE stream_type = $1 AND stream_id = $2");
        let query = match bound {
            StreamBound::All => base,
            StreamBound::UpToVersion(_) => format!("{base} AND version <= $3"),
            StreamBound::AsOf(_) => format!("{base} AND recorded_at <= $3"),
        } + " ORDER BY version";
        let q = sqlx::query(&query).bind(&stream.stream_type).bind(&stream.stream_id);
        let q = match bound {
            StreamBound::All => q,
            StreamBound::UpToVersion(v) => q.bind(v),
            StreamBound::AsOf(t) => q.bind(t),
        };
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(decode_row).collect()
    }

    async fn stream_version(&self, stream: &StreamRef) -> Result<i64, StoreError> {
        Ok(self.head(stream).await?.map(|(v, _)| v).unwrap_or(0))
    }

    async fn read_all(&self, after: Checkpoint, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SELECT_COLUMNS} FROM events \
             WHERE (tx_id, global_position) > ($1::text::xid8, $2) \
               AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY tx_id, global_position LIMIT $3"
        ))
        .bind(after.tx_id.to_string())
        .bind(after.position)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_row).collect()
    }

    fn wake(&self) -> watch::Receiver<u64> {
        self.wake_tx.subscribe()
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/postgres").run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn streams(&self) -> Result<Vec<StreamRef>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT stream_type, stream_id FROM events ORDER BY 1, 2")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok(StreamRef::new(r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?)))
            .collect()
    }
}
