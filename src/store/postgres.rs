//! The PostgreSQL event store: short append transactions, gap-free reads in commit order.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use netia_events::chain::{Chain, ChainKey, GENESIS};
use netia_events::{Checkpoint, NewEvent, RecordedEvent, StreamRef};
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{ConnectOptions, Row};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use super::pg_writer::{self, WriteError};
use super::{APPEND_DEADLINE, Backend, EventStore, Recent, StoreError, StreamBound, prepare};
use crate::supervisor::{Components, supervise};

/// The NOTIFY channel that wakes tailers after each append (sent by `netia_append` at commit).
pub const NOTIFY_CHANNEL: &str = "netia_events";

const SELECT_COLUMNS: &str = "global_position, tx_id::text AS tx_id, event_id, stream_type, stream_id, version, \
     event_type, event_version, payload, metadata, recorded_at, hash";

/// [`SELECT_COLUMNS`] without the metadata (read as JSON `null`): for `read_all_payloads`.
const PAYLOAD_COLUMNS: &str = "global_position, tx_id::text AS tx_id, event_id, stream_type, stream_id, version, \
     event_type, event_version, payload, 'null'::json AS metadata, recorded_at, hash";

/// Heads remembered per stream; cleared when it grows past this many streams.
const HEAD_CACHE_LIMIT: usize = 100_000;

pub struct PgStore {
    pool: PgPool,
    /// This process's latest appends and what it knows of the head; wakes tailers.
    recent: Arc<Recent>,
    /// Each stream's last known `(version, hash)`. A cached head is exact for its version (rows never
    /// change), so an append at that version skips reading the head; a newer row makes the insert
    /// fail on the unique constraint, which is the conflict it should be.
    heads: Mutex<HashMap<StreamRef, (i64, Vec<u8>)>>,
    appends: mpsc::Sender<pg_writer::Append>,
    /// The writer (`store_writer`) and the NOTIFY listener (`store_listener`), supervised: one
    /// that panics is restarted after a backoff, shown at `/metrics`, and fails [`EventStore::ping`]
    /// (so `/health/ready`) meanwhile.
    components: Arc<Components>,
    stop: watch::Sender<bool>,
    chain: Chain,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl PgStore {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?
            .application_name("netia")
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        let pool = super::pool_options::<sqlx::Postgres>()
            .max_connections(max_connections.max(2))
            .acquire_timeout(super::PG_ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Ok(Self::from_pool(pool))
    }

    /// Wraps an existing pool; starts the LISTEN task that feeds [`EventStore::wake`].
    /// Finds out whether an append whose statement's outcome is unknown (the connection broke
    /// mid-statement, or it took too long) was stored, by looking its event ids up: all there, it
    /// succeeded; none, it did not ([`StoreError::Unavailable`]: try again). A statement is atomic,
    /// so it is one or the other. [`StoreError::OutcomeUnknown`] only if the log cannot be read
    /// for a few seconds.
    async fn resolve(
        &self,
        stream: &StreamRef,
        ids: &[Uuid],
        reason: String,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if let Ok(mut heads) = self.heads.lock() {
            heads.remove(stream);
        }
        let sql = format!("SELECT {SELECT_COLUMNS} FROM events WHERE event_id = ANY($1) ORDER BY version");
        for _ in 0..6 {
            let lookup = tokio::time::timeout(
                Duration::from_secs(1),
                sqlx::query(&sql).bind(ids).fetch_all(&self.pool),
            );
            match lookup.await.unwrap_or(Err(sqlx::Error::PoolTimedOut)) {
                Ok(rows) if rows.len() == ids.len() => {
                    let recorded = rows.iter().map(decode_row).collect::<Result<Vec<_>, _>>()?;
                    tracing::info!(%stream, "an append of unknown outcome was stored after all");
                    return Ok(recorded);
                }
                Ok(rows) if rows.is_empty() => {
                    return Err(StoreError::Unavailable(format!("{reason}; the append was not stored")));
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(%stream, error = %e, "cannot look an append of unknown outcome up yet");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        Err(StoreError::OutcomeUnknown(reason))
    }

    pub fn from_pool(pool: PgPool) -> Self {
        let recent = Arc::new(Recent::default());
        // Tells this store's NOTIFYs from other nodes'.
        let node = uuid::Uuid::now_v7().simple().to_string();
        let components = Arc::new(Components::default());
        let (stop, _) = watch::channel(false);
        {
            let (pool, recent, node) = (pool.clone(), recent.clone(), node.clone());
            supervise(components.clone(), "store_listener", stop.subscribe(), move |stop| {
                super::pg_listen::listen(pool.clone(), recent.clone(), node.clone(), stop)
            });
        }
        let committed = pg_writer::Committed {
            recent: recent.clone(),
            node,
        };
        let appends = pg_writer::spawn(pool.clone(), committed, &components, &stop);
        Self {
            pool,
            recent,
            heads: Mutex::new(HashMap::new()),
            appends,
            components,
            stop,
            chain: Chain::Plain,
        }
    }

    /// Links appends with `chain` (plain SHA-256 until this is called).
    pub fn with_chain(mut self, chain: Chain) -> Self {
        self.chain = chain;
        self
    }

    fn cached_head(&self, stream: &StreamRef) -> Option<(i64, Vec<u8>)> {
        self.heads.lock().ok()?.get(stream).cloned()
    }

    fn remember_head(&self, stream: &StreamRef, version: i64, hash: &[u8]) {
        if let Ok(mut heads) = self.heads.lock() {
            if heads.len() >= HEAD_CACHE_LIMIT {
                heads.clear();
            }
            heads.insert(stream.clone(), (version, hash.to_vec()));
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
        decoded: Default::default(),
    })
}

impl PgStore {
    /// Up to `limit` events after `after` in position order, with `columns` (a SELECT list).
    async fn read_after(
        &self,
        columns: &str,
        after: Checkpoint,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!("SELECT {columns} FROM events WHERE global_position > $1 ORDER BY global_position LIMIT $2");
        let rows = sqlx::query(&sql)
            .bind(after.position)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode_row).collect()
    }

    /// A connection as the events table's owner: `owner_url`, or the store's own.
    async fn owner(&self, owner_url: Option<&str>) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, StoreError> {
        Ok(match owner_url {
            Some(url) => {
                let owner = super::pool_options::<sqlx::Postgres>()
                    .max_connections(1)
                    .connect(url)
                    .await?;
                owner.acquire().await?
            }
            None => self.pool.acquire().await?,
        })
    }
}

#[async_trait]
impl EventStore for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    #[tracing::instrument(level = "debug", skip_all, fields(stream = %stream, expected_version), err(level = "debug"))]
    async fn append(
        &self,
        stream: &StreamRef,
        expected_version: i64,
        events: Vec<NewEvent>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let _timer = super::AppendTimer::start(Backend::Postgres);
        let head = match self.cached_head(stream) {
            Some((version, hash)) if version == expected_version => Some((version, hash)),
            // A failure to read the head stores nothing: with the database away, try again later.
            _ => self.head(stream).await.map_err(StoreError::unreachable)?,
        };
        let (version, prev_hash) = head.unwrap_or((0, GENESIS.to_vec()));
        if version != expected_version {
            return Err(StoreError::Conflict {
                stream: stream.clone(),
                expected: expected_version,
                actual: version,
            });
        }
        let prepared = prepare(&self.chain, stream, expected_version, &prev_hash, events)?;
        let ids: Vec<Uuid> = prepared.iter().map(|p| p.event_id).collect();
        let (reply, mut placed) = oneshot::channel();
        let state = Arc::new(AtomicU8::new(pg_writer::QUEUED));
        let append = pg_writer::Append {
            stream: stream.clone(),
            prepared,
            reply,
            state: state.clone(),
        };
        let started = tokio::time::Instant::now();
        match tokio::time::timeout(APPEND_DEADLINE, self.appends.send(append)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(StoreError::Database(sqlx::Error::PoolClosed)),
            // Never queued, so never written.
            Err(_) => return Err(StoreError::Unavailable("the writer's queue stayed full".into())),
        }
        let left = APPEND_DEADLINE.saturating_sub(started.elapsed());
        let outcome = match tokio::time::timeout(left, &mut placed).await {
            Ok(outcome) => outcome,
            Err(_) => {
                // Still queued: given up, so the writer will skip it.
                if state
                    .compare_exchange(
                        pg_writer::QUEUED,
                        pg_writer::ABANDONED,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_ok()
                {
                    return Err(StoreError::Unavailable(format!(
                        "not written within {} s",
                        APPEND_DEADLINE.as_secs()
                    )));
                }
                // In a statement: its outcome decides; if that does not come, the log does.
                match tokio::time::timeout(APPEND_DEADLINE, placed).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        return self
                            .resolve(stream, &ids, "the append statement took too long".into())
                            .await;
                    }
                }
            }
        };
        let recorded = match outcome {
            Ok(Ok(placement)) => placement.events(),
            Ok(Err(WriteError::Conflict)) => {
                if let Ok(mut heads) = self.heads.lock() {
                    heads.remove(stream);
                }
                return Err(self.conflict(stream, expected_version).await);
            }
            Ok(Err(WriteError::Refused(e))) => return Err(e.into()),
            Ok(Err(WriteError::Unreachable(reason))) => return Err(StoreError::Unavailable(reason)),
            Ok(Err(WriteError::Unknown(reason))) => return self.resolve(stream, &ids, reason).await,
            // The writer task is gone (shutdown) mid-append.
            Err(_) => {
                return Err(StoreError::OutcomeUnknown(
                    "the store shut down during the append".into(),
                ));
            }
        };
        if let Some(last) = recorded.last() {
            self.remember_head(stream, last.version, &last.hash);
        }
        Ok(recorded)
    }

    async fn read_stream(&self, stream: &StreamRef, bound: StreamBound) -> Result<Vec<RecordedEvent>, StoreError> {
        let base = format!("SELECT {SELECT_COLUMNS} FROM events WHERE stream_type = $1 AND stream_id = $2");
        let query = match bound {
            StreamBound::All => base,
            StreamBound::UpToVersion(_) => format!("{base} AND version <= $3"),
            StreamBound::After(_) => format!("{base} AND version > $3"),
            StreamBound::AsOf(_) => format!(
                "{base} AND version <= (SELECT COALESCE(MAX(version), 0) FROM events \
                 WHERE stream_type = $1 AND stream_id = $2 AND recorded_at <= $3)"
            ),
        } + " ORDER BY version";
        let q = sqlx::query(&query).bind(&stream.stream_type).bind(&stream.stream_id);
        let q = match bound {
            StreamBound::All => q,
            StreamBound::UpToVersion(v) | StreamBound::After(v) => q.bind(v),
            StreamBound::AsOf(t) => q.bind(t),
        };
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(decode_row).collect()
    }

    async fn read_event(&self, event_id: uuid::Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        let row = sqlx::query(&format!("SELECT {SELECT_COLUMNS} FROM events WHERE event_id = $1"))
            .bind(event_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode_row).transpose()
    }

    async fn stream_version(&self, stream: &StreamRef) -> Result<i64, StoreError> {
        Ok(self.head(stream).await?.map(|(v, _)| v).unwrap_or(0))
    }

    async fn read_all(&self, after: Checkpoint, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
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
                .fetch_optional(&self.pool)
                .await?;
        Ok(position.map_or(Checkpoint::START, Checkpoint::at))
    }

    async fn lag(&self, after: Checkpoint) -> Result<(i64, Option<DateTime<Utc>>), StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(recorded_at) AS oldest FROM events \
             WHERE global_position > $1",
        )
        .bind(after.position)
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("n")?, row.try_get("oldest")?))
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
        sqlx::migrate!("./migrations/postgres").run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if let Some((task, why)) = self.components.down().into_iter().next() {
            return Err(StoreError::TaskDown(format!("{task} ({why})")));
        }
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn chain(&self) -> &Chain {
        &self.chain
    }

    async fn chain_marker(&self) -> Result<Option<String>, StoreError> {
        super::links::marker_pg(&self.pool).await
    }

    async fn mark_keyed_if_empty(&self, key: &ChainKey) -> Result<bool, StoreError> {
        super::links::mark_empty_pg(&self.pool, key).await
    }

    fn stored(&self) -> &dyn EventStore {
        self
    }

    async fn rekey(&self, from: &Chain, to: &ChainKey, owner_url: Option<&str>) -> Result<super::Rekeyed, StoreError> {
        let mut owner = self.owner(owner_url).await?;
        let rekeyed = super::links::rekey_pg(&mut owner, SELECT_COLUMNS, decode_row, from, to).await;
        if let Ok(mut heads) = self.heads.lock() {
            heads.clear();
        }
        rekeyed
    }

    async fn rewrite(
        &self,
        owner_url: Option<&str>,
        rewrite: super::Rewrite<'_>,
    ) -> Result<super::Rekeyed, StoreError> {
        let mut owner = self.owner(owner_url).await?;
        let chain = self.chain().clone();
        let rewritten =
            super::links::relink_pg(&mut owner, SELECT_COLUMNS, decode_row, (&chain, &chain), rewrite, None).await;
        if let Ok(mut heads) = self.heads.lock() {
            heads.clear();
        }
        rewritten
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
