//! The SQLite event store (embedded mode): one writer at a time, same semantics as PostgreSQL.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use netia_events::chain::{Chain, ChainKey, GENESIS, format_time};
use netia_events::{Checkpoint, NewEvent, RecordedEvent, StreamRef};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite};
use tokio::sync::watch;
use uuid::Uuid;

use super::{Backend, EventStore, Recent, StoreError, StreamBound, prepare, to_recorded};

const SELECT_COLUMNS: &str = "global_position, tx_id, event_id, stream_type, stream_id, version, event_type, \
     event_version, payload, metadata, recorded_at, hash";

/// [`SELECT_COLUMNS`] without the metadata (read as JSON `null`): for `read_all_payloads`.
const PAYLOAD_COLUMNS: &str = "global_position, tx_id, event_id, stream_type, stream_id, version, event_type, \
     event_version, payload, 'null' AS metadata, recorded_at, hash";

/// SQLite allows 32,766 bound parameters per statement; an event takes 11.
const ROWS_PER_INSERT: usize = 2_000;

pub struct SqliteStore {
    /// A single connection: SQLite has one writer, and serializing here avoids busy retries.
    writer: SqlitePool,
    readers: SqlitePool,
    /// This process's latest appends and what it knows of the head; wakes tailers.
    recent: Recent,
    chain: Chain,
}

impl SqliteStore {
    /// Opens (creating if needed, with its directory) the database at a `sqlite://` URL.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        if let Some(dir) = Path::new(options.get_filename()).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        }
        let writer = super::pool_options::<sqlx::Sqlite>()
            .max_connections(1)
            .acquire_timeout(super::SQLITE_ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await?;
        let readers = super::pool_options::<sqlx::Sqlite>()
            .max_connections(max_connections.max(1))
            .acquire_timeout(super::SQLITE_ACQUIRE_TIMEOUT)
            .connect_with(options.read_only(false))
            .await?;
        Ok(Self {
            writer,
            readers,
            recent: Recent::default(),
            chain: Chain::Plain,
        })
    }

    /// Links appends with `chain` (plain SHA-256 until this is called).
    pub fn with_chain(mut self, chain: Chain) -> Self {
        self.chain = chain;
        self
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.readers
    }
}

/// A second event at a stream's version (not, say, a reused event id).
fn is_version_conflict(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation() && db.message().contains("events.version"))
}

fn decode_row(row: &sqlx::sqlite::SqliteRow) -> Result<RecordedEvent, StoreError> {
    let position: i64 = row.try_get("global_position")?;
    let corrupt = |what: &str, e: &dyn std::fmt::Display| StoreError::Corrupt {
        position,
        reason: format!("{what}: {e}"),
    };
    let tx_id: i64 = row.try_get("tx_id")?;
    let event_id: String = row.try_get("event_id")?;
    let payload: String = row.try_get("payload")?;
    let metadata: String = row.try_get("metadata")?;
    let recorded_at: String = row.try_get("recorded_at")?;
    Ok(RecordedEvent {
        global_position: position,
        tx_id: u64::try_from(tx_id).map_err(|e| corrupt("tx_id", &e))?,
        event_id: Uuid::parse_str(&event_id).map_err(|e| corrupt("event_id", &e))?,
        stream_type: row.try_get("stream_type")?,
        stream_id: row.try_get("stream_id")?,
        version: row.try_get("version")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload: serde_json::from_str(&payload).map_err(|e| corrupt("payload", &e))?,
        metadata: serde_json::from_str(&metadata).map_err(|e| corrupt("metadata", &e))?,
        recorded_at: DateTime::parse_from_rfc3339(&recorded_at)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| corrupt("recorded_at", &e))?,
        hash: row.try_get("hash")?,
        decoded: Default::default(),
    })
}

impl SqliteStore {
    /// Up to `limit` events after `after` in position order, with `columns` (a SELECT list).
    async fn read_after(
        &self,
        columns: &str,
        after: Checkpoint,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!("SELECT {columns} FROM events WHERE global_position > ?1 ORDER BY global_position LIMIT ?2");
        let rows = sqlx::query(&sql)
            .bind(after.position)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(decode_row).collect()
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    #[tracing::instrument(level = "debug", skip_all, fields(stream = %stream, expected_version), err(level = "debug"))]
    async fn append(
        &self,
        stream: &StreamRef,
        expected_version: i64,
        events: Vec<NewEvent>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let _timer = super::AppendTimer::start(Backend::Sqlite);
        // BEGIN IMMEDIATE takes the write lock now, so positions follow commit order.
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let head = sqlx::query(
            "SELECT version, hash FROM events WHERE stream_type = ?1 AND stream_id = ?2 \
             ORDER BY version DESC LIMIT 1",
        )
        .bind(&stream.stream_type)
        .bind(&stream.stream_id)
        .fetch_optional(&mut *tx)
        .await?;
        let (version, prev_hash): (i64, Vec<u8>) = match head {
            Some(row) => (row.try_get("version")?, row.try_get("hash")?),
            None => (0, GENESIS.to_vec()),
        };
        if version != expected_version {
            return Err(StoreError::Conflict {
                stream: stream.clone(),
                expected: expected_version,
                actual: version,
            });
        }
        let prepared = prepare(&self.chain, stream, expected_version, &prev_hash, events)?;
        // The head under the write lock: these events follow it, and nothing can come between.
        let head: Option<i64> =
            sqlx::query_scalar("SELECT global_position FROM events ORDER BY global_position DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
        let head = head.map_or(Checkpoint::START, Checkpoint::at);
        let tx_id = head.position + 1;
        let recorded_at = format_time(prepared[0].recorded_at);
        for (chunk_index, chunk) in prepared.chunks(ROWS_PER_INSERT).enumerate() {
            let mut insert: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO events (global_position, tx_id, event_id, stream_type, stream_id, version, \
                 event_type, event_version, payload, metadata, recorded_at, hash) ",
            );
            insert.push_values(chunk.iter().enumerate(), |mut b, (i, p)| {
                b.push_bind(tx_id + (chunk_index * ROWS_PER_INSERT + i) as i64)
                    .push_bind(tx_id)
                    .push_bind(p.event_id.to_string())
                    .push_bind(&stream.stream_type)
                    .push_bind(&stream.stream_id)
                    .push_bind(p.version)
                    .push_bind(&p.event_type)
                    .push_bind(p.event_version)
                    .push_bind(&p.payload_text)
                    .push_bind(&p.metadata_text)
                    .push_bind(&recorded_at)
                    .push_bind(p.hash.as_slice());
            });
            match insert.build().execute(&mut *tx).await {
                Ok(_) => {}
                Err(e) if is_version_conflict(&e) => {
                    return Err(StoreError::Conflict {
                        stream: stream.clone(),
                        expected: expected_version,
                        actual: version,
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        tx.commit().await?;
        let recorded: Vec<RecordedEvent> = prepared
            .into_iter()
            .enumerate()
            .map(|(i, p)| to_recorded(stream, p, tx_id + i as i64, tx_id as u64))
            .collect();
        self.recent.committed(head, recorded.clone());
        Ok(recorded)
    }

    async fn read_stream(&self, stream: &StreamRef, bound: StreamBound) -> Result<Vec<RecordedEvent>, StoreError> {
        let base = format!("SELECT {SELECT_COLUMNS} FROM events WHERE stream_type = ?1 AND stream_id = ?2");
        let query = match bound {
            StreamBound::All => base,
            StreamBound::UpToVersion(_) => format!("{base} AND version <= ?3"),
            StreamBound::After(_) => format!("{base} AND version > ?3"),
            StreamBound::AsOf(_) => format!(
                "{base} AND version <= (SELECT COALESCE(MAX(version), 0) FROM events \
                 WHERE stream_type = ?1 AND stream_id = ?2 AND recorded_at <= ?3)"
            ),
        } + " ORDER BY version";
        let q = sqlx::query(&query).bind(&stream.stream_type).bind(&stream.stream_id);
        let q = match bound {
            StreamBound::All => q,
            StreamBound::UpToVersion(v) | StreamBound::After(v) => q.bind(v),
            StreamBound::AsOf(t) => q.bind(format_time(t)),
        };
        let rows = q.fetch_all(&self.readers).await?;
        rows.iter().map(decode_row).collect()
    }

    async fn read_event(&self, event_id: uuid::Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        let row = sqlx::query(&format!("SELECT {SELECT_COLUMNS} FROM events WHERE event_id = ?1"))
            .bind(event_id.to_string())
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(decode_row).transpose()
    }

    async fn stream_version(&self, stream: &StreamRef) -> Result<i64, StoreError> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM events WHERE stream_type = ?1 AND stream_id = ?2")
                .bind(&stream.stream_type)
                .bind(&stream.stream_id)
                .fetch_one(&self.readers)
                .await?;
        Ok(v.unwrap_or(0))
    }

    async fn read_all(&self, after: Checkpoint, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        // Writers are serialized and positions assigned under the write lock, so every committed
        // position is final: position order is commit order.
        if let Some(events) = self.recent.read(after, limit) {
            return Ok(events);
        }
        let epoch = self.recent.epoch();
        let events = self.read_after(SELECT_COLUMNS, after, limit).await?;
        if events.len() < limit {
            self.recent.read_database(epoch, after, &events);
        }
        Ok(events)
    }

    async fn read_all_payloads(&self, after: Checkpoint, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        // Not through `recent`: what it keeps is read by readers that want the metadata.
        self.read_after(PAYLOAD_COLUMNS, after, limit).await
    }

    async fn head(&self) -> Result<Checkpoint, StoreError> {
        let position: Option<i64> =
            sqlx::query_scalar("SELECT global_position FROM events ORDER BY global_position DESC LIMIT 1")
                .fetch_optional(&self.readers)
                .await?;
        Ok(position.map_or(Checkpoint::START, Checkpoint::at))
    }

    async fn lag(&self, after: Checkpoint) -> Result<(i64, Option<DateTime<Utc>>), StoreError> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n, MIN(recorded_at) AS oldest FROM events WHERE global_position > ?1")
                .bind(after.position)
                .fetch_one(&self.readers)
                .await?;
        let oldest: Option<String> = row.try_get("oldest")?;
        let oldest = match oldest {
            Some(text) => Some(
                DateTime::parse_from_rfc3339(&text)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| StoreError::Corrupt {
                        position: after.position,
                        reason: format!("recorded_at: {e}"),
                    })?,
            ),
            None => None,
        };
        Ok((row.try_get("n")?, oldest))
    }

    fn wake(&self) -> watch::Receiver<u64> {
        self.recent.wake()
    }

    fn log_mark(&self) -> Option<super::LogMark> {
        Some(self.recent.mark())
    }

    async fn stream_since(
        &self,
        stream: &StreamRef,
        version: i64,
        mark: &super::LogMark,
    ) -> Result<Option<(Vec<RecordedEvent>, super::LogMark)>, StoreError> {
        Ok(self.recent.stream_since(mark, stream, version))
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/sqlite").run(&self.writer).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }

    fn chain(&self) -> &Chain {
        &self.chain
    }

    async fn chain_marker(&self) -> Result<Option<String>, StoreError> {
        super::links::marker_sqlite(&self.readers).await
    }

    async fn mark_keyed_if_empty(&self, key: &ChainKey) -> Result<bool, StoreError> {
        super::links::mark_empty_sqlite(&self.writer, key).await
    }

    fn stored(&self) -> &dyn EventStore {
        self
    }

    async fn rekey(&self, from: &Chain, to: &ChainKey, owner_url: Option<&str>) -> Result<super::Rekeyed, StoreError> {
        if owner_url.is_some() {
            return Err(StoreError::Invalid(
                "DATABASE_MIGRATE_URL is for PostgreSQL only".into(),
            ));
        }
        super::links::rekey_sqlite(&self.writer, SELECT_COLUMNS, decode_row, from, to).await
    }

    async fn rewrite(
        &self,
        owner_url: Option<&str>,
        rewrite: super::Rewrite<'_>,
    ) -> Result<super::Rekeyed, StoreError> {
        if owner_url.is_some() {
            return Err(StoreError::Invalid(
                "DATABASE_MIGRATE_URL is for PostgreSQL only".into(),
            ));
        }
        let chain = self.chain().clone();
        super::links::relink_sqlite(
            &self.writer,
            SELECT_COLUMNS,
            decode_row,
            (&chain, &chain),
            rewrite,
            None,
        )
        .await
    }

    async fn streams(&self) -> Result<Vec<StreamRef>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT stream_type, stream_id FROM events ORDER BY 1, 2")
            .fetch_all(&self.readers)
            .await?;
        rows.iter()
            .map(|r| Ok(StreamRef::new(r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?)))
            .collect()
    }
}
