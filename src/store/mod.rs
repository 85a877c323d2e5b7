//! The event store: one trait, two backends (PostgreSQL, SQLite) with the same semantics.

mod failures;
mod links;
mod pg_listen;
mod pg_writer;
mod postgres;
mod recent;
mod roles;
mod shredding;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use netia_events::chain::{self, BrokenLink, Chain, ChainInput, ChainKey};
use netia_events::{Checkpoint, NewEvent, RecordedEvent, StreamRef};
use serde_json::Value;
use tokio::sync::watch;

pub use failures::{database_unavailable, subject_erased_in, unavailable_in, unstorable_text_in};
pub use links::{Rekeyed, Rewrite};
pub use postgres::PgStore;
pub use roles::migrate_as_owner;
pub use shredding::{KEY_CACHE_TTL, ShreddingStore};
pub use sqlite::SqliteStore;

pub use recent::LogMark;
pub(crate) use recent::Recent;

/// A pooled connection idle at least this long is pinged before it is handed out.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// How long a PostgreSQL statement waits for a pooled connection before it fails with
/// [`sqlx::Error::PoolTimedOut`] (a 503 with `Retry-After` over HTTP, `unavailable` on a socket).
/// Short on purpose: while the database is away every acquire waits this long trying to connect,
/// and a client that gave up meanwhile (the `phoenix` client's push timeout is 10 s) would leave its
/// work queued for the database's return, where it would delay the clients still waiting (the
/// crash suite's PostgreSQL restart went without a single acknowledged message for a minute).
pub const PG_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// The same for SQLite, where one connection writes and a long write (a rebuild) may hold it:
/// as long as SQLite's own busy timeout.
pub const SQLITE_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Options for every pool of the server. sqlx pings each connection on every acquire by default:
/// one more round trip (and two wake-ups on each side) per statement, which under load doubled the
/// database's work. A connection in steady use is handed out as it is; one that sat idle is pinged,
/// so that a connection broken meanwhile (a database restart) is replaced before it is used.
pub fn pool_options<DB: sqlx::Database>() -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new()
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

/// Which database holds the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// Times one append, from the call to its answer (committed, conflicting or failed), into
/// `netia_store_append_duration_seconds{backend}` when dropped.
pub(crate) struct AppendTimer {
    backend: Backend,
    started: std::time::Instant,
}

impl AppendTimer {
    pub(crate) fn start(backend: Backend) -> Self {
        Self {
            backend,
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for AppendTimer {
    fn drop(&mut self) {
        metrics::histogram!("netia_store_append_duration_seconds", "backend" => self.backend.name())
            .record(self.started.elapsed().as_secs_f64());
    }
}

/// How long an append may take, from the call to its commit, before it fails with
/// [`StoreError::Unavailable`] (queued, never written) or, once a statement has it, with the
/// outcome that statement has.
pub const APPEND_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// How much of a stream to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamBound {
    All,
    /// Events with `version <= v`.
    UpToVersion(i64),
    /// Events with `version > v` (what a cached state has not seen yet).
    After(i64),
    /// The stream as it stood at the instant: every version up to the last one recorded at or
    /// before it (a prefix, even if clocks disagreed between writers).
    AsOf(DateTime<Utc>),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("concurrency conflict on {stream}: expected version {expected}, found {actual}")]
    Conflict {
        stream: StreamRef,
        expected: i64,
        actual: i64,
    },
    /// The connection failed while an append ran: it may or may not be stored. Not retried
    /// automatically, since a retry could store it twice; reload the stream to find out.
    #[error("the append's outcome is unknown ({0}); reload to see whether it was stored")]
    OutcomeUnknown(String),
    #[error("invalid append: {0}")]
    Invalid(String),
    /// A task of the store (PostgreSQL's writer or NOTIFY listener) failed and waits to restart.
    #[error("the event store's {0} is down, restarting")]
    TaskDown(String),
    /// The database could not take the append in time ([`APPEND_DEADLINE`]) or could not be
    /// reached: nothing was stored, and the same append may be tried again.
    #[error("the event store is unavailable ({0}); nothing was stored, try again")]
    Unavailable(String),
    /// A customer's data key (ADR 0023) cannot be made or opened: `NETIA_SECRET_KEY` is not the
    /// key the data keys were wrapped with, or the row was altered.
    #[error("personal data cannot be sealed or opened: {0}")]
    Keys(String),
    /// The append holds personal data of a person who was erased (GDPR art. 17, ADR 0023): their
    /// key is destroyed, so nothing more is recorded about them. Nothing was stored.
    #[error("the customer {0} was erased: nothing more is recorded about them")]
    SubjectErased(String),
    #[error("stored event at position {position} is corrupt: {reason}")]
    Corrupt { position: i64, reason: String },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }

    /// A failure to reach the database (I/O, pool timeout, closed pool) as
    /// [`StoreError::Unavailable`]; for errors of a step that stores nothing.
    pub fn unreachable(self) -> Self {
        match self {
            StoreError::Database(e) if database_unavailable(&e) => StoreError::Unavailable(e.to_string()),
            other => other,
        }
    }
}

/// The append-only log. Every method is safe to call from many tasks and many processes.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// Appends `events` to `stream` if its current version is `expected_version` (0: the stream
    /// must not exist), atomically; returns them as recorded. A mismatch is [`StoreError::Conflict`].
    async fn append(
        &self,
        stream: &StreamRef,
        expected_version: i64,
        events: Vec<NewEvent>,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The stream's events in version order, up to `bound`.
    async fn read_stream(&self, stream: &StreamRef, bound: StreamBound) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The stream's current version (0 when it does not exist).
    async fn stream_version(&self, stream: &StreamRef) -> Result<i64, StoreError>;

    /// One event by its id (for operators: a parked delivery names only its event).
    async fn read_event(&self, event_id: uuid::Uuid) -> Result<Option<RecordedEvent>, StoreError>;

    /// Up to `limit` committed events after `after`, in `global_position` order (ADR 0016). Appends
    /// are serialized (commit order is log order), so every committed event is final: a reader that
    /// advances its checkpoint to the last event returned never skips one.
    async fn read_all(&self, after: Checkpoint, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// [`EventStore::read_all`] for readers that need only payloads (a rebuild's projections):
    /// each event's `metadata` may be `Value::Null`. Over a 100k-event log the metadata is a
    /// quarter of the JSON that PostgreSQL prints and Netia parses (137 of 549 bytes an event).
    /// Stores that cannot leave it out return it.
    async fn read_all_payloads(&self, after: Checkpoint, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_all(after, limit).await
    }

    /// The checkpoint of the last event a reader can see now: a reader starting there gets every
    /// event committed later and none before (for tailers that only care about what happens next).
    async fn head(&self) -> Result<Checkpoint, StoreError>;

    /// How far a reader at `after` is behind: the number of events after it, and when the oldest
    /// of them was recorded.
    async fn lag(&self, after: Checkpoint) -> Result<(i64, Option<DateTime<Utc>>), StoreError>;

    /// A signal that changes whenever new events may have been committed (by this process or,
    /// on PostgreSQL, by any process through LISTEN/NOTIFY). Readers still poll as a fallback.
    fn wake(&self) -> watch::Receiver<u64>;

    /// Where this process stands in the log now, for [`EventStore::stream_since`]: take it before
    /// the read or append whose result it stands for. `None` for stores that keep no memory of
    /// their commits.
    fn log_mark(&self) -> Option<LogMark> {
        None
    }

    /// The events of `stream` after `version` committed since `mark`, answered from this
    /// process's memory of its own commits without reading the database, with the mark to use
    /// next time; `Ok(None)` when memory cannot answer (another process committed since — a
    /// PostgreSQL NOTIFY arrived —, a commit since is no longer kept, or the mark is older than
    /// 200 ms): then read the stream. A commit by another process whose NOTIFY has not arrived
    /// yet is not seen; an append decided on such a state fails its expected version.
    async fn stream_since(
        &self,
        _stream: &StreamRef,
        _version: i64,
        _mark: &LogMark,
    ) -> Result<Option<(Vec<RecordedEvent>, LogMark)>, StoreError> {
        Ok(None)
    }

    /// Brings the schema up to date (idempotent; safe with several nodes starting at once).
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Every stream in the log, for audits.
    async fn streams(&self) -> Result<Vec<StreamRef>, StoreError>;

    /// Checks a stream's hash chain under [`EventStore::chain`]; `Some` names the first version
    /// that does not verify.
    async fn verify_stream(&self, stream: &StreamRef) -> Result<Option<BrokenLink>, StoreError> {
        let events = self.read_stream(stream, StreamBound::All).await?;
        Ok(self
            .chain()
            .first_broken_link(events.iter().map(|e| (chain_input(e), e.hash.as_slice()))))
    }

    /// How this store links what it appends and verifies what it reads: plain SHA-256 unless it
    /// was opened with the `AUDIT_KEY` (ADR 0021).
    fn chain(&self) -> &Chain;

    /// The id of the key the log's links use, as the `audit_chain` row records it (`None`: plain).
    async fn chain_marker(&self) -> Result<Option<String>, StoreError>;

    /// Records that the log is keyed with `key`, if it holds no event yet (under the append lock);
    /// `false`, and nothing recorded, if it does.
    async fn mark_keyed_if_empty(&self, key: &ChainKey) -> Result<bool, StoreError>;

    /// Relinks every stream, in one transaction, from `from` (checked on the way: a log that does
    /// not verify is left as it was) to HMAC-SHA256 under `to`, and records the key's id. On
    /// PostgreSQL it needs the events table's owner: `owner_url` (`DATABASE_MIGRATE_URL`), or
    /// the store's own connection when that is the owner. Appends wait meanwhile.
    async fn rekey(&self, from: &Chain, to: &ChainKey, owner_url: Option<&str>) -> Result<Rekeyed, StoreError>;

    /// Rewrites stored payloads in place and relinks every stream under the store's chain, in one
    /// transaction with appends waiting (`netia gdpr seal-existing`, ADR 0023): `rewrite` sees every
    /// event in `(stream, version)` order and gives its new payload, or `None` to keep it. The old
    /// links are checked first: a log that does not verify is left as it was. Needs the events
    /// table's owner on PostgreSQL (`owner_url`, `DATABASE_MIGRATE_URL`).
    async fn rewrite(&self, owner_url: Option<&str>, rewrite: Rewrite<'_>) -> Result<Rekeyed, StoreError> {
        let _ = (owner_url, rewrite);
        Err(StoreError::Invalid("this store cannot rewrite its events".into()))
    }

    /// Seals the personal fields still stored in the clear (events written before sealing, or
    /// without a key) with their customers' keys, through [`EventStore::rewrite`].
    ///
    /// Errors: [`StoreError::Invalid`] when this store does not seal personal data.
    async fn seal_existing(&self, owner_url: Option<&str>) -> Result<Rekeyed, StoreError> {
        let _ = owner_url;
        Err(StoreError::Invalid(
            "personal data is not sealed on this deployment (NETIA_SECRET_KEY is not set)".into(),
        ))
    }

    /// The store as the log holds it: below any wrapper that changes what reads return (the
    /// [`ShreddingStore`] opens sealed fields; audits hash what is stored).
    fn stored(&self) -> &dyn EventStore;

    /// Whether personal fields are sealed with per-customer keys, so that they can be erased
    /// (ADR 0023): false without `NETIA_SECRET_KEY` on PostgreSQL.
    fn seals_personal_data(&self) -> bool {
        false
    }

    /// Destroys `subject`'s data key: every personal field sealed with it reads as erased from
    /// now on, on every node within [`KEY_CACHE_TTL`]. Idempotent.
    ///
    /// Errors: [`StoreError::Invalid`] when this store does not seal personal data.
    async fn erase_subject(&self, subject: &str) -> Result<(), StoreError> {
        let _ = subject;
        Err(StoreError::Invalid(
            "personal data is not sealed on this deployment (NETIA_SECRET_KEY is not set), so it cannot be erased"
                .into(),
        ))
    }
}

/// Opens the store named by a database URL: `postgres://…` or `sqlite://…`, with plain links.
pub async fn connect(url: &str, max_connections: u32) -> Result<Arc<dyn EventStore>, StoreError> {
    connect_with_chain(url, max_connections, Chain::Plain).await
}

/// [`connect`], linking appends (and verifying) with `chain`.
pub async fn connect_with_chain(
    url: &str,
    max_connections: u32,
    chain: Chain,
) -> Result<Arc<dyn EventStore>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(
            PgStore::connect(url, max_connections).await?.with_chain(chain),
        ))
    } else {
        Ok(Arc::new(
            SqliteStore::connect(url, max_connections).await?.with_chain(chain),
        ))
    }
}

pub(crate) fn chain_input(e: &RecordedEvent) -> ChainInput<'_> {
    ChainInput {
        event_id: e.event_id,
        stream_type: &e.stream_type,
        stream_id: &e.stream_id,
        version: e.version,
        event_type: &e.event_type,
        event_version: e.event_version,
        payload: &e.payload,
        metadata: &e.metadata,
        recorded_at: e.recorded_at,
    }
}

/// An event with everything but its position: what both backends insert.
pub(crate) struct PreparedEvent {
    pub event_id: uuid::Uuid,
    pub version: i64,
    pub event_type: String,
    pub event_version: i32,
    pub payload: Value,
    pub metadata: Value,
    pub payload_text: String,
    pub metadata_text: String,
    pub recorded_at: DateTime<Utc>,
    pub hash: [u8; 32],
}

/// Validates an append and computes versions, times and the hash chain from the stream's head.
pub(crate) fn prepare(
    chain: &Chain,
    stream: &StreamRef,
    expected_version: i64,
    prev_hash: &[u8],
    events: Vec<NewEvent>,
) -> Result<Vec<PreparedEvent>, StoreError> {
    if events.is_empty() {
        return Err(StoreError::Invalid("nothing to append".into()));
    }
    if expected_version < 0 {
        return Err(StoreError::Invalid("expected version cannot be negative".into()));
    }
    check_name("stream type", &stream.stream_type, 64)?;
    check_name("stream id", &stream.stream_id, 200)?;
    let recorded_at = chain::truncate_to_micros(Utc::now());
    let mut prev = prev_hash.to_vec();
    let mut prepared = Vec::with_capacity(events.len());
    for (i, event) in events.into_iter().enumerate() {
        check_name("event type", &event.event_type, 100)?;
        if event.event_version < 1 {
            return Err(StoreError::Invalid("event version must be at least 1".into()));
        }
        if !event.payload.is_object() || !event.metadata.is_object() {
            return Err(StoreError::Invalid("payload and metadata must be JSON objects".into()));
        }
        let payload_text = serde_json::to_string(&event.payload).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let metadata_text = serde_json::to_string(&event.metadata).map_err(|e| StoreError::Invalid(e.to_string()))?;
        // PostgreSQL's text and jsonb (the read models, the bus) cannot hold U+0000; refuse it on both
        // backends alike.
        if payload_text.contains("\\u0000") || metadata_text.contains("\\u0000") {
            return Err(StoreError::Invalid("JSON text cannot contain U+0000".into()));
        }
        let version = expected_version + 1 + i as i64;
        let hash = chain.link(
            &prev,
            &ChainInput {
                event_id: event.event_id,
                stream_type: &stream.stream_type,
                stream_id: &stream.stream_id,
                version,
                event_type: &event.event_type,
                event_version: event.event_version,
                payload: &event.payload,
                metadata: &event.metadata,
                recorded_at,
            },
        );
        prev = hash.to_vec();
        prepared.push(PreparedEvent {
            event_id: event.event_id,
            version,
            event_type: event.event_type,
            event_version: event.event_version,
            payload: event.payload,
            metadata: event.metadata,
            payload_text,
            metadata_text,
            recorded_at,
            hash,
        });
    }
    Ok(prepared)
}

fn check_name(what: &str, value: &str, max: usize) -> Result<(), StoreError> {
    if value.is_empty() || value.len() > max || value.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "{what} must be 1 to {max} printable bytes"
        )));
    }
    Ok(())
}

pub(crate) fn to_recorded(stream: &StreamRef, p: PreparedEvent, global_position: i64, tx_id: u64) -> RecordedEvent {
    RecordedEvent {
        global_position,
        tx_id,
        event_id: p.event_id,
        stream_type: stream.stream_type.clone(),
        stream_id: stream.stream_id.clone(),
        version: p.version,
        event_type: p.event_type,
        event_version: p.event_version,
        payload: p.payload,
        metadata: p.metadata,
        recorded_at: p.recorded_at,
        hash: p.hash.to_vec(),
        decoded: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command_bus::CommandError;

    #[derive(Debug, thiserror::Error)]
    #[error("signing out failed")]
    struct Wrapper(#[source] CommandError<std::fmt::Error>);

    #[test]
    fn an_unavailable_store_is_found_through_wrappers() {
        let wrapped = Wrapper(CommandError::Store(StoreError::Unavailable("pool timed out".into())));
        assert!(unavailable_in(&wrapped));
        let anyhow = anyhow::Error::new(wrapped).context("handling a request");
        assert!(unavailable_in(&*anyhow));
        let conflict = Wrapper(CommandError::Store(StoreError::Invalid("empty append".into())));
        assert!(
            !unavailable_in(&conflict),
            "an invalid append is ours, not unavailability"
        );
        let corrupt = Wrapper(CommandError::Domain(std::fmt::Error));
        assert!(!unavailable_in(&corrupt), "a refusal is not unavailability");
    }
}
