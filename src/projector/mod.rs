//! The projector runtime: feeds a projection committed events in log order and advances its
//! checkpoint in the same transaction as its writes (exactly once per event), one active instance
//! per projection across nodes. The server runs them all together ([`group`]).

pub mod group;

use std::sync::Arc;
use std::time::Duration;

use netia_events::{Checkpoint, RecordedEvent};
use netia_projections::{Checkpoints, Projection, ProjectionError};
use sqlx::{AnyConnection, AnyPool, Connection};
use tokio::sync::{Notify, watch};

use crate::backoff::{Backoff, sleep_or_stop};
use crate::store::{EventStore, StoreError};
use crate::tail::Tailer;

/// First pause before retrying a failed batch (or checkpoint read, or group run).
pub(crate) const FIRST_RETRY: Duration = Duration::from_millis(100);
/// Longest pause between retries; each pause doubles the one before up to this.
pub(crate) const LAST_RETRY: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error("projection {name} failed at position {position}: {source}")]
    Apply {
        name: &'static str,
        position: i64,
        #[source]
        source: ProjectionError,
    },
    #[error("the checkpoint of {0} moved under this projector (another instance or a rebuild); restarting")]
    Moved(&'static str),
    #[error("the log ended before the other projections' position while catching up {0}")]
    LogEnds(&'static str),
    #[error("the background task of {0} ended abnormally: {1}")]
    Job(&'static str, String),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Read-your-writes: waits (at most `timeout`) until projection `name` has applied the event at
/// `target`. True when it has; false on timeout (the caller answers from a slightly older view).
pub async fn wait_for(db: &AnyPool, name: &str, target: Checkpoint, timeout: Duration) -> Result<bool, ProjectorError> {
    let deadline = tokio::time::Instant::now() + timeout;
    // A poll, not a retry (nothing failed): every 1 ms at first, doubling to every 20 ms.
    let mut pauses = Backoff::new(Duration::from_millis(1), Duration::from_millis(20));
    loop {
        let reached = {
            let mut conn = db.acquire().await?;
            Checkpoints::load(&mut conn, name).await? >= target
        };
        if reached {
            return Ok(true);
        }
        let pause = pauses.next_delay();
        if tokio::time::Instant::now() + pause > deadline {
            return Ok(false);
        }
        tokio::time::sleep(pause).await;
    }
}

/// Every read model the server keeps up to date.
pub fn projections() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(netia_projections::CustomerProjection),
        Arc::new(netia_projections::InboxProjection),
        Arc::new(netia_projections::ConversationProjection),
        Arc::new(netia_projections::ReportingProjection),
        Arc::new(netia_projections::AiOutcomesProjection),
    ]
}

/// Where a projection stands.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProjectionStatus {
    pub name: &'static str,
    /// The version of this code's projection.
    pub version: i64,
    /// The version that built the stored tables (none before its first checkpoint). Lower than
    /// `version` while a rebuild in the shadow runs.
    pub stored_version: Option<i64>,
    pub checkpoint: Checkpoint,
    /// Events committed after the checkpoint.
    pub lag_events: i64,
    /// Age of the oldest event not yet applied (0 when caught up).
    pub lag_seconds: f64,
}

/// The status of every projection.
pub async fn status(store: &Arc<dyn EventStore>, db: &AnyPool) -> Result<Vec<ProjectionStatus>, ProjectorError> {
    let mut out = Vec::new();
    for projection in projections() {
        let projector = Projector::new(store.clone(), db.clone(), projection);
        projector.setup().await?;
        let stored = {
            let mut conn = db.acquire().await?;
            Checkpoints::find_versioned(&mut conn, projector.name()).await?
        };
        let checkpoint = stored.map_or(Checkpoint::START, |(at, _)| at);
        let (lag_events, oldest) = store.lag(checkpoint).await?;
        let lag_seconds = oldest.map_or(0.0, |t| (chrono::Utc::now() - t).as_seconds_f64().max(0.0));
        out.push(ProjectionStatus {
            name: projector.name(),
            version: projector.projection().version(),
            stored_version: stored.map(|(_, version)| version),
            checkpoint,
            lag_events,
            lag_seconds,
        });
    }
    Ok(out)
}

/// Opens a pool for read models on the events' database (`postgres://…` or `sqlite://…`).
pub async fn read_model_pool(url: &str, max_connections: u32) -> Result<AnyPool, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let acquire_timeout = if url.starts_with("sqlite:") {
        crate::store::SQLITE_ACQUIRE_TIMEOUT
    } else {
        crate::store::PG_ACQUIRE_TIMEOUT
    };
    let sqlite = url.starts_with("sqlite:");
    crate::store::pool_options::<sqlx::Any>()
        .max_connections(max_connections.max(1))
        .acquire_timeout(acquire_timeout)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if sqlite {
                    // Deleted and overwritten rows are zeroed in the file, not left in free space
                    // (an erased customer's read-model rows, email originals, webhook bodies).
                    sqlx::query("PRAGMA secure_delete = ON").execute(conn).await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await
}

/// How a projector's transaction begins. On SQLite it takes the write lock up front: a transaction
/// that reads first and writes later cannot upgrade once another writer (the event store) has
/// committed meanwhile. On PostgreSQL a read model and its checkpoint commit together, and both can
/// be replayed from the log: losing the last few milliseconds of them in a crash loses nothing, so
/// they need not wait for their own WAL flush (the events themselves do).
pub(crate) fn begin_statement(backend: crate::store::Backend) -> &'static str {
    match backend {
        crate::store::Backend::Sqlite => "BEGIN IMMEDIATE",
        crate::store::Backend::Postgres => "BEGIN; SET LOCAL synchronous_commit = off",
    }
}

pub struct Projector {
    store: Arc<dyn EventStore>,
    db: AnyPool,
    projection: Arc<dyn Projection>,
    batch: usize,
    progress: Option<watch::Sender<Checkpoint>>,
}

/// The checkpoints of the projectors running in this process, as they commit: read-your-writes
/// waits on these instead of polling the database (and polls only slowly, for a projector that
/// runs on another node).
#[derive(Clone, Default)]
pub struct Progress {
    senders: std::collections::HashMap<&'static str, watch::Sender<Checkpoint>>,
    /// Told when a reader starts waiting, so that a projector group pacing itself applies at once.
    waiting: Arc<Notify>,
}

impl Progress {
    pub fn new(names: &[&'static str]) -> Self {
        Self {
            senders: names
                .iter()
                .map(|name| (*name, watch::channel(Checkpoint::default()).0))
                .collect(),
            waiting: Arc::new(Notify::new()),
        }
    }

    pub fn sender(&self, name: &str) -> Option<watch::Sender<Checkpoint>> {
        self.senders.get(name).cloned()
    }

    /// Notified each time a reader starts waiting for a projection of this process (a waiter is
    /// a receiver of the projection's sender while it waits).
    pub fn waiting(&self) -> Arc<Notify> {
        self.waiting.clone()
    }

    /// Waits (at most `timeout`) until projection `name` has applied the event at `target`.
    pub async fn wait_for(
        &self,
        db: &AnyPool,
        name: &str,
        target: Checkpoint,
        timeout: Duration,
    ) -> Result<bool, ProjectorError> {
        let Some(sender) = self.senders.get(name) else {
            return wait_for(db, name, target, timeout).await;
        };
        let mut local = sender.subscribe();
        if *local.borrow() >= target {
            return Ok(true);
        }
        self.waiting.notify_one();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // The local projector reports at once; the database is asked now and then in case the
            // active projector is another node's.
            let step = tokio::time::Instant::now() + Duration::from_millis(50);
            // The watch's guard is dropped here, not held across the awaits below (the future
            // stays `Send`, for consumers).
            let reached = tokio::time::timeout_at(step.min(deadline), local.wait_for(|at| *at >= target))
                .await
                .map(|waited| waited.is_ok());
            match reached {
                Ok(true) => return Ok(true),
                Ok(false) => return wait_for(db, name, target, deadline - tokio::time::Instant::now()).await,
                Err(_) => {}
            }
            let mut conn = db.acquire().await?;
            if Checkpoints::load(&mut conn, name).await? >= target {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
        }
    }
}

impl Projector {
    pub fn new(store: Arc<dyn EventStore>, db: AnyPool, projection: Arc<dyn Projection>) -> Self {
        Self {
            store,
            db,
            projection,
            batch: 500,
            progress: None,
        }
    }

    /// Publishes each committed checkpoint on `progress`.
    pub fn with_progress(mut self, progress: Option<watch::Sender<Checkpoint>>) -> Self {
        self.progress = progress;
        self
    }

    /// Whether a reader of this process waits for the projection to reach a checkpoint (see
    /// [`Progress::wait_for`]).
    pub(crate) fn awaited(&self) -> bool {
        self.progress
            .as_ref()
            .is_some_and(|progress| progress.receiver_count() > 0)
    }

    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    pub fn name(&self) -> &'static str {
        self.projection.name()
    }

    /// Creates the checkpoint table and the projection's tables.
    pub async fn setup(&self) -> Result<(), ProjectorError> {
        let mut conn = self.db.acquire().await?;
        Checkpoints::setup(&mut conn).await?;
        self.projection.setup_with_query_indexes(&mut conn).await?;
        Ok(())
    }

    pub async fn checkpoint(&self) -> Result<Checkpoint, ProjectorError> {
        let mut conn = self.db.acquire().await?;
        Ok(Checkpoints::load(&mut conn, self.name()).await?)
    }

    /// Applies `events` (read after `from`) and moves the checkpoint from `from` to the last of them,
    /// all in one transaction.
    pub async fn apply_batch(&self, from: Checkpoint, events: &[RecordedEvent]) -> Result<(), ProjectorError> {
        self.apply_batch_on(None, from, events).await
    }

    /// [`Self::apply_batch`] on `lease` (the connection holding the projection's lease, so that a
    /// deposed holder cannot move the checkpoint), or on a pooled connection if `None`.
    pub(crate) async fn apply_batch_on(
        &self,
        lease: Option<&mut AnyConnection>,
        from: Checkpoint,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectorError> {
        let Some(last) = events.last() else { return Ok(()) };
        let mut pooled;
        let (conn, begin) = match lease {
            Some(conn) => (conn, "BEGIN"),
            None => {
                pooled = self.db.acquire().await?;
                // On SQLite take the write lock up front: a transaction that reads first and
                // writes later cannot upgrade once another writer (the event store) has committed
                // meanwhile.
                (&mut *pooled, begin_statement(self.store.backend()))
            }
        };
        let mut tx = conn.begin_with(begin).await?;
        if let Err((position, source)) = self.projection.apply_batch(&mut tx, events).await {
            return Err(ProjectorError::Apply {
                name: self.name(),
                position,
                source,
            });
        }
        if !Checkpoints::advance(&mut tx, self.name(), from, last.checkpoint()).await? {
            return Err(ProjectorError::Moved(self.name()));
        }
        tx.commit().await?;
        self.reached(last.checkpoint());
        Ok(())
    }

    /// Publishes that the projection has committed everything up to `to`.
    pub(crate) fn reached(&self, to: Checkpoint) {
        if let Some(progress) = &self.progress {
            progress.send_if_modified(|at| {
                let newer = to > *at;
                if newer {
                    *at = to;
                }
                newer
            });
        }
    }

    pub(crate) fn projection(&self) -> &Arc<dyn Projection> {
        &self.projection
    }

    /// Applies the events after `from` up to `target` (all committed), in batches of their own
    /// transactions (on `lease` if given); returns the checkpoint it stored last (that of the last
    /// event at or before `target`, or `from` if there was none). Not the tailer's position: the
    /// tailer may have read past `target`, and a member put there would never be in step again.
    pub(crate) async fn catch_up_to(
        &self,
        mut lease: Option<&mut AnyConnection>,
        from: Checkpoint,
        target: Checkpoint,
    ) -> Result<Checkpoint, ProjectorError> {
        let mut tailer = Tailer::new(self.store.clone(), from).with_batch(self.batch);
        let mut reached = from;
        while tailer.checkpoint() < target {
            let mut events = tailer.try_next_batch().await?;
            events.retain(|e| e.checkpoint() <= target);
            let Some(last) = events.last().map(RecordedEvent::checkpoint) else {
                if tailer.checkpoint() >= target {
                    break; // what was read past `from` lies beyond `target`
                }
                // Everything up to `target` was read before, so it is there to read now.
                return Err(ProjectorError::LogEnds(self.name()));
            };
            self.apply_batch_on(lease.as_deref_mut(), reached, &events).await?;
            reached = last;
        }
        Ok(reached)
    }

    /// Applies everything committed so far; returns how many events it applied.
    pub async fn catch_up(&self) -> Result<usize, ProjectorError> {
        let mut tailer = Tailer::new(self.store.clone(), self.checkpoint().await?).with_batch(self.batch);
        let mut applied = 0;
        loop {
            let from = tailer.checkpoint();
            let events = tailer.try_next_batch().await?;
            if events.is_empty() {
                return Ok(applied);
            }
            self.apply_batch(from, &events).await?;
            applied += events.len();
        }
    }

    /// Follows the log until `stop` turns true. Only one instance per projection is active across
    /// nodes (a PostgreSQL advisory lock held on a dedicated connection); the others wait for it.
    /// A failing batch is retried with backoff: nothing after it is applied until it succeeds.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let name = self.name();
        let lease = tokio::select! {
            lease = self.lease() => lease,
            _ = stop.wait_for(|s| *s) => return,
        };
        tracing::info!(projection = name, "projector active");
        // A lost lease stops the work at once (another node has it); the supervisor starts again.
        tokio::select! {
            () = self.follow(&mut stop) => {}
            () = lease.lost() => {}
        }
    }

    /// Applies the log from the checkpoint until `stop` turns true.
    async fn follow(&self, stop: &mut watch::Receiver<bool>) {
        let name = self.name();
        let mut backoff = Backoff::new(FIRST_RETRY, LAST_RETRY);
        loop {
            let from = match self.checkpoint().await {
                Ok(from) => from,
                Err(e) => {
                    tracing::error!(projection = name, error = %e, "cannot read checkpoint");
                    if sleep_or_stop(stop, backoff.next_delay()).await {
                        return;
                    }
                    continue;
                }
            };
            let mut tailer = Tailer::new(self.store.clone(), from).with_batch(self.batch);
            loop {
                let from = tailer.checkpoint();
                let events = tokio::select! {
                    events = tailer.next_batch() => events,
                    _ = stop.wait_for(|s| *s) => return,
                };
                let result = match events {
                    Ok(events) => self.apply_batch(from, &events).await,
                    Err(e) => Err(e.into()),
                };
                if let Err(ProjectorError::Moved(_)) = result {
                    tracing::info!(projection = name, "checkpoint moved (rebuild swapped in?); reloading");
                    break;
                }
                if let Err(e) = result {
                    tracing::error!(projection = name, error = %e, "projection stalled; retrying");
                    if sleep_or_stop(stop, backoff.next_delay()).await {
                        return;
                    }
                    break; // restart from the stored checkpoint
                }
                backoff.reset();
            }
        }
    }

    /// Waits until this instance may run the projection.
    /// The lease is a session lock on a connection taken out of the pool; dropping it closes the
    /// connection, which releases the lock.
    async fn lease(&self) -> crate::lease::Lease {
        crate::lease::acquire(&self.db, self.store.backend(), self.name()).await
    }
}

#[cfg(test)]
mod tests;
