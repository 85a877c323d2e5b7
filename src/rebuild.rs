//! `netia projections rebuild`: replays the whole log into shadow tables while the live ones keep
//! serving, then swaps them in atomically. Several projections are rebuilt in one pass over the
//! log ([`rebuild_all`]). Interrupted rebuilds resume where they stopped.
//!
//! The projection's SQL runs unchanged against the shadow: on PostgreSQL a schema of its own
//! (`netia_rebuild_<name>`, through `search_path`), on SQLite a database file of its own beside the
//! main one. The shadow keeps its own checkpoint, which is what makes a rebuild resumable. The swap
//! moves (PostgreSQL) or copies (SQLite) the tables and sets the live checkpoint in one transaction;
//! a live projector then finds its checkpoint moved and continues from the new one.
//!
//! A shadow is written without the indexes only queries use ([`Projection::query_indexes`]): those
//! are built once it is full (PostgreSQL: in the shadow, before the swap; SQLite: after the swap's
//! copy).

use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use netia_events::Checkpoint;
use netia_projections::{Checkpoints, Projection};
use sqlx::{AnyConnection, Connection};

use crate::projector::ProjectorError;
use crate::store::{Backend, EventStore};
use crate::tail::Tailer;

#[derive(Debug, Clone)]
pub struct RebuildOptions {
    /// Events per transaction of each shadow (default 20,000: every batch rewrites the rows of the
    /// conversations it touches, so fewer batches write less; 10,000 was ~5% slower over 100k
    /// events, 40,000 no faster and ~370 MB). The first read is an eighth of it.
    pub batch: usize,
    /// Stop (resumably) after this many batches: for tests and for spreading work.
    pub max_batches: Option<usize>,
    pub progress: bool,
}

impl Default for RebuildOptions {
    fn default() -> Self {
        Self {
            batch: 20_000,
            max_batches: None,
            progress: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RebuildOutcome {
    /// The rebuilt tables are live; `events` were replayed in this run.
    Swapped { events: u64, seconds: f64 },
    /// Stopped before the end; the next run resumes after `at`.
    Interrupted { at: Checkpoint },
}

/// The first read of a rebuild takes this fraction of a batch (see [`rebuild_all`]).
const FIRST_READ_FRACTION: usize = 8;

/// Batches each member may have waiting beside the one it applies: with the one the reader holds,
/// at most three batches are in memory (~200 MB peak over the demo history at 20k events).
const QUEUED_BATCHES: usize = 1;

/// A batch of the log, shared by every member.
type Batch = Arc<Vec<netia_events::RecordedEvent>>;

/// The progress bar of members that move at their own pace: it shows the events every member has
/// applied.
struct Progress {
    bar: ProgressBar,
    applied: std::sync::Mutex<Vec<u64>>,
}

impl Progress {
    fn new(bar: ProgressBar, members: usize) -> Self {
        Self {
            bar,
            applied: std::sync::Mutex::new(vec![0; members]),
        }
    }

    /// Member `index` has applied `events` more.
    fn applied(&self, index: usize, events: u64) {
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        applied[index] += events;
        self.bar.set_position(applied.iter().copied().min().unwrap_or(0));
    }
}

/// Where the shadow lives.
enum Shadow {
    Schema(String),
    File(String),
}

fn shadow_for(backend: Backend, url: &str, name: &str) -> Shadow {
    match backend {
        Backend::Postgres => Shadow::Schema(format!("netia_rebuild_{name}")),
        Backend::Sqlite => {
            let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or(path);
            Shadow::File(format!("{path}.rebuild-{name}"))
        }
    }
}

async fn open_shadow(url: &str, shadow: &Shadow) -> Result<AnyConnection, ProjectorError> {
    sqlx::any::install_default_drivers();
    match shadow {
        Shadow::Schema(schema) => {
            let mut conn = AnyConnection::connect(url).await?;
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .execute(&mut conn)
                .await?;
            sqlx::query(&format!("SET search_path TO {schema}"))
                .execute(&mut conn)
                .await?;
            // A shadow can always be rebuilt again: no need to wait for each commit to be durable.
            sqlx::query("SET synchronous_commit TO off").execute(&mut conn).await?;
            Ok(conn)
        }
        Shadow::File(path) => {
            let mut conn = AnyConnection::connect(&format!("sqlite://{path}?mode=rwc")).await?;
            sqlx::query("PRAGMA synchronous = OFF").execute(&mut conn).await?;
            Ok(conn)
        }
    }
}

/// Rebuilds `projection` from the whole log and swaps it in.
pub async fn rebuild(
    store: Arc<dyn EventStore>,
    url: &str,
    projection: Arc<dyn Projection>,
    options: &RebuildOptions,
) -> Result<RebuildOutcome, ProjectorError> {
    rebuild_all(store, url, vec![projection], options).await
}

/// One projection being rebuilt: its shadow, the connection to it, how far it has got.
struct Member {
    projection: Arc<dyn Projection>,
    shadow: Shadow,
    conn: AnyConnection,
    at: Checkpoint,
}

impl Member {
    /// Opens `projection`'s shadow, creates its tables if they are not there and loads how far it
    /// has got.
    async fn open(backend: Backend, url: &str, projection: Arc<dyn Projection>) -> Result<Self, ProjectorError> {
        let shadow = shadow_for(backend, url, projection.name());
        let mut conn = open_shadow(url, &shadow).await?;
        Checkpoints::setup(&mut conn).await?;
        projection.setup(&mut conn).await?;
        let at = Checkpoints::load(&mut conn, projection.name()).await?;
        Ok(Self {
            projection,
            shadow,
            conn,
            at,
        })
    }

    /// Applies the events of `batch` after its own checkpoint and moves that to `to`, in one
    /// transaction of its shadow.
    async fn apply(&mut self, batch: &[netia_events::RecordedEvent], to: Checkpoint) -> Result<(), ProjectorError> {
        if self.at >= to {
            return Ok(()); // a resumed member already past this batch
        }
        let name = self.projection.name();
        // The batch is in log order: what this shadow lacks is a tail of it (no copies).
        let first = batch.partition_point(|e| e.checkpoint() <= self.at);
        let events = &batch[first..];
        let mut tx = self.conn.begin().await?;
        if let Err((position, source)) = self.projection.apply_batch(&mut tx, events).await {
            return Err(ProjectorError::Apply { name, position, source });
        }
        if !Checkpoints::advance(&mut tx, name, self.at, to).await? {
            return Err(ProjectorError::Moved(name));
        }
        tx.commit().await?;
        self.at = to;
        Ok(())
    }
}

/// Rebuilds `projections` from the whole log in one pass, and swaps each in: the log is read once
/// (ahead of the applying), and every projection's shadow applies each batch at its own pace, on
/// its own task and connection. Each shadow keeps its own checkpoint, so an
/// interrupted run resumes from the earliest of them, every projection skipping what it already
/// has. Each swap is its own transaction (a projection is consistent on its own; they need not
/// switch together).
pub async fn rebuild_all(
    store: Arc<dyn EventStore>,
    url: &str,
    projections: Vec<Arc<dyn Projection>>,
    options: &RebuildOptions,
) -> Result<RebuildOutcome, ProjectorError> {
    let started = Instant::now();
    // Every shadow set up at once, each on its own connection (one after another this was ~0.13 s
    // of a 100k-event rebuild's 2.7 s).
    let backend = store.backend();
    let members = futures_util::future::try_join_all(
        projections
            .into_iter()
            .map(|projection| Member::open(backend, url, projection)),
    )
    .await?;
    let start = members.iter().map(|m| m.at).min().unwrap_or_default();
    // The first read is an eighth of a batch: nothing is applied until it is in, and the reads
    // after it overlap the applying.
    // Read models are built from payloads alone (the metadata is a quarter of the log's JSON).
    let mut tailer = Tailer::new(store.clone(), start)
        .with_batch(options.batch.div_ceil(FIRST_READ_FRACTION))
        .without_metadata();
    // The progress bar's length: the positions left to the head, one index probe (positions a
    // rolled-back append took are never filled, so this can overstate what is left; counting the
    // events scanned the log, ~0.2 s of PostgreSQL's time for 100k events).
    let (head, first) = tokio::join!(store.head(), tailer.try_next_batch());
    let total = head?.position.saturating_sub(start.position);
    let names: Vec<&str> = members.iter().map(|m| m.projection.name()).collect();
    let bar = if options.progress {
        let bar = ProgressBar::new(u64::try_from(total).unwrap_or(0));
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} events  {per_sec}  ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(names.join(", "));
        bar
    } else {
        ProgressBar::hidden()
    };

    // Each member applies batches on a task of its own, from a queue of its own: a member that
    // finishes a batch goes on to the next while a slower one still writes, instead of every
    // member waiting for the slowest at each batch (in lockstep, one core idled ~20 % of a
    // 100k-event rebuild, at the end of every batch, while the slowest member's server process
    // finished alone). The reader reads ahead while the queues have room.
    let progress = Arc::new(Progress::new(bar.clone(), members.len()));
    let (queues, receivers): (Vec<_>, Vec<_>) = (0..members.len())
        .map(|_| tokio::sync::mpsc::channel::<(Batch, Checkpoint)>(QUEUED_BATCHES))
        .unzip();
    let mut receivers: Vec<_> = receivers.into_iter().map(Some).collect();
    let mut members = members;
    let applying = on_every_member(&mut members, |index, mut member| {
        let batches = receivers.get_mut(index).and_then(Option::take);
        let progress = Arc::clone(&progress);
        async move {
            let Some(mut batches) = batches else {
                return (member, Ok(()));
            };
            while let Some((batch, to)) = batches.recv().await {
                let applied = member.apply(&batch, to).await;
                let events = batch.len() as u64;
                // The last member done with a batch frees it, on a thread of its own: 20k events
                // take ~30 ms to drop, a time this member's next batch would otherwise wait for.
                tokio::task::spawn_blocking(move || drop(batch));
                if let Err(e) = applied {
                    return (member, Err(e));
                }
                progress.applied(index, events);
            }
            (member, Ok(()))
        }
    });
    let reading = read_into(queues, tailer, first, start, options);
    let (applied, read) = tokio::join!(applying, reading);
    // A member's failure first: the reader may only have stopped because of it.
    if let Some(e) = applied.err().or(read.failed) {
        bar.abandon();
        return Err(e);
    }
    if read.interrupted {
        bar.abandon();
        return Ok(RebuildOutcome::Interrupted { at: read.to });
    }
    let (replayed, applied_to) = (read.replayed, read.to);
    // The indexes only queries use, each built in one sort over the full table; on PostgreSQL
    // every shadow's at once (their own connections and tables), on SQLite after the swap's copy.
    on_every_member(&mut members, |_, mut member| async move {
        let indexed = match member.shadow {
            Shadow::Schema(_) => member.projection.create_query_indexes(&mut member.conn).await,
            Shadow::File(_) => Ok(()),
        };
        (member, indexed.map_err(ProjectorError::from))
    })
    .await?;
    let reached = |member: &Member| member.at.max(applied_to);
    match backend {
        // Each swap is its own transaction over its own tables: all at once. The live checkpoint
        // table is made first, so that the swaps do not race to create it.
        Backend::Postgres => {
            let mut live = AnyConnection::connect(url).await?;
            Checkpoints::setup(&mut live).await?;
            live.close().await?;
            // Every swap runs to its end (commit or rollback) even when another fails: one dropped
            // mid-statement could be left waiting on a lock until the server noticed. The first
            // failure is returned, the others logged.
            let swapped = futures_util::future::join_all(members.into_iter().map(|member| {
                let to = reached(&member);
                async move {
                    let name = member.projection.name();
                    member.conn.close().await?;
                    let swapped = swap(url, &member.shadow, member.projection.as_ref(), to).await;
                    if let Err(e) = &swapped {
                        tracing::warn!(projection = name, error = %e, "swap failed");
                    }
                    swapped
                }
            }))
            .await;
            swapped.into_iter().collect::<Result<Vec<()>, ProjectorError>>()?;
        }
        // One writer at a time on a SQLite file.
        Backend::Sqlite => {
            for member in members {
                let to = reached(&member);
                member.conn.close().await?;
                swap(url, &member.shadow, member.projection.as_ref(), to).await?;
            }
        }
    }
    bar.finish();
    Ok(RebuildOutcome::Swapped {
        events: replayed,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Runs `work` on every member at once, each on a task of its own (every member has its own
/// connection and tables), and puts the members back in their order; the first failure, if any.
/// The tasks are aborted if this future is dropped (a server's background rebuild that loses its
/// leases), so no member writes on after it.
async fn on_every_member<F, Fut>(members: &mut Vec<Member>, mut work: F) -> Result<(), ProjectorError>
where
    F: FnMut(usize, Member) -> Fut,
    Fut: std::future::Future<Output = (Member, Result<(), ProjectorError>)> + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    for (index, member) in members.drain(..).enumerate() {
        let work = work(index, member);
        tasks.spawn(async move {
            let (member, done) = work.await;
            (index, member, done)
        });
    }
    let mut done: Vec<Option<Member>> = std::iter::repeat_with(|| None).take(tasks.len()).collect();
    let mut failed = None;
    while let Some(joined) = tasks.join_next().await {
        let (index, member, result) = joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        done[index] = Some(member);
        if let Err(e) = result {
            failed.get_or_insert(e);
        }
    }
    members.extend(done.into_iter().flatten());
    failed.map_or(Ok(()), Err)
}

/// What [`read_into`] did.
struct Read {
    /// Events sent to every member.
    replayed: u64,
    /// The checkpoint of the last batch sent (or where the pass started).
    to: Checkpoint,
    /// Whether it stopped at `max_batches` with more to read.
    interrupted: bool,
    /// A read that failed.
    failed: Option<ProjectorError>,
}

/// Sends `first` and the batches `tailer` reads after it to every member's queue, until the end of
/// the log, `options.max_batches`, a read error or a closed queue (a member that failed). The
/// queues close when it returns, so the members end once they have applied what they were sent.
async fn read_into(
    queues: Vec<tokio::sync::mpsc::Sender<(Batch, Checkpoint)>>,
    tailer: Tailer,
    first: Result<Vec<netia_events::RecordedEvent>, crate::store::StoreError>,
    start: Checkpoint,
    options: &RebuildOptions,
) -> Read {
    let mut read = Read {
        replayed: 0,
        to: start,
        interrupted: false,
        failed: None,
    };
    let mut pending = first;
    let mut pending_to = tailer.checkpoint();
    let mut tailer = tailer.with_batch(options.batch);
    let mut sent = 0;
    loop {
        let batch = match pending {
            Ok(batch) if batch.is_empty() => return read,
            Ok(batch) => Arc::new(batch),
            Err(e) => {
                read.failed = Some(e.into());
                return read;
            }
        };
        if options.max_batches.is_some_and(|max| sent >= max) {
            read.interrupted = true;
            return read;
        }
        let events = batch.len() as u64;
        for queue in &queues {
            // A closed queue is a member that failed: its error is the pass's.
            if queue.send((Arc::clone(&batch), pending_to)).await.is_err() {
                return read;
            }
        }
        drop(batch);
        read.replayed += events;
        read.to = pending_to;
        sent += 1;
        pending = tailer.try_next_batch().await;
        pending_to = tailer.checkpoint();
    }
}

/// Replaces the live tables with the shadow's and sets the live checkpoint, in one transaction.
async fn swap(
    url: &str,
    shadow: &Shadow,
    projection: &dyn Projection,
    reached: Checkpoint,
) -> Result<(), ProjectorError> {
    let mut live = AnyConnection::connect(url).await?;
    match shadow {
        Shadow::Schema(schema) => {
            let current: String = sqlx::query_scalar("SELECT current_schema()::text")
                .fetch_one(&mut live)
                .await?;
            let mut tx = live.begin().await?;
            for table in projection.tables() {
                sqlx::query(&format!("DROP TABLE IF EXISTS {current}.{table}"))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(&format!("ALTER TABLE {schema}.{table} SET SCHEMA {current}"))
                    .execute(&mut *tx)
                    .await?;
            }
            Checkpoints::setup(&mut tx).await?;
            Checkpoints::save_versioned(&mut tx, projection.name(), reached, projection.version()).await?;
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Shadow::File(path) => {
            sqlx::query("ATTACH DATABASE $1 AS rebuild")
                .bind(path.clone())
                .execute(&mut live)
                .await?;
            let mut tx = live.begin().await?;
            for table in projection.tables() {
                sqlx::query(&format!("DROP TABLE IF EXISTS main.{table}"))
                    .execute(&mut *tx)
                    .await?;
            }
            projection.setup(&mut tx).await?;
            for table in projection.tables() {
                sqlx::query(&format!("INSERT INTO main.{table} SELECT * FROM rebuild.{table}"))
                    .execute(&mut *tx)
                    .await?;
            }
            projection.create_query_indexes(&mut tx).await?;
            Checkpoints::setup(&mut tx).await?;
            Checkpoints::save_versioned(&mut tx, projection.name(), reached, projection.version()).await?;
            tx.commit().await?;
            sqlx::query("DETACH DATABASE rebuild").execute(&mut live).await?;
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let _ = std::fs::remove_file(format!("{path}{suffix}"));
            }
        }
    }
    live.close().await?;
    Ok(())
}
