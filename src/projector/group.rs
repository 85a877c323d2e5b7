//! Every projection of the server in one task: each batch of the log is read once and applied to all
//! of them in one transaction, which moves all their checkpoints with one statement (four projectors
//! took four reads and four transactions, each a few round trips). A projection that is behind — new,
//! failed, or whose checkpoint moved under it (a rebuild swapped its tables in) — leaves the group
//! and catches up alone in a background task (with backoff after failures), and rejoins once it
//! stands where the group does: a lagging member never holds the others back. A projection whose
//! code version is newer than its stored tables' is rebuilt in its shadow in the background while
//! the old tables keep serving, then swapped in (ADR 0019).

use std::cmp::Ordering;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering as MemoryOrdering};
use std::time::Duration;

use netia_events::{Checkpoint, RecordedEvent};
use netia_projections::{Checkpoints, ProjectionError};
use sqlx::{AnyConnection, AnyPool, Connection};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{FIRST_RETRY, LAST_RETRY, Projector, ProjectorError, begin_statement};
use crate::backoff::{Backoff, sleep_or_stop};
use crate::store::EventStore;
use crate::tail::Tailer;

/// Events read per batch.
const BATCH: usize = 500;
/// Shortest time from one transaction of the group to the next while a reader of this process
/// waits for a read model (read-your-writes). Under a steady stream of events they gather into
/// fewer, larger batches (at 1,000 events/s, one transaction per ten events instead of per two or
/// three), which leaves more of the processor to appends and broadcasts; an event after a quiet
/// spell is applied at once. (Measured in docs/adr/0006-serialized-appends.md.)
const PACE: Duration = Duration::from_millis(10);
/// The same while nobody waits: at a chat's 50 messages/s, a transaction per two or three
/// messages instead of one each (ADR 0004). A reader who starts waiting ends the pause at once;
/// one on another node (which polls the checkpoints) may wait up to this much longer.
const STREAM_PACE: Duration = Duration::from_millis(50);
/// How long the group waits after the log could not be read in time before reading again.
const READ_RETRY: Duration = Duration::from_millis(500);

pub struct ProjectorGroup {
    store: Arc<dyn EventStore>,
    db: AnyPool,
    /// The database's URL, for rebuilds in a shadow.
    url: String,
    members: Vec<Member>,
    /// Told when a member's background job ends, so that it rejoins (or catches up the rest)
    /// without waiting for the next event.
    job_ended: Arc<Notify>,
    /// Told when a reader starts waiting for a member ([`super::Progress::waiting`]): the group
    /// applies what it has at once instead of pausing.
    waiting: Arc<Notify>,
    /// The pause between transactions while nobody waits ([`STREAM_PACE`]).
    stream_pace: Duration,
}

struct Member {
    projector: Arc<Projector>,
    /// Its checkpoint, as this task last committed or read it.
    at: Checkpoint,
    /// While it fails: when to try it again, and the delays of the attempts after that.
    retry: Option<(Instant, Backoff)>,
    /// Its stored tables' version against its code's.
    tables: Tables,
    /// The background task bringing it to the group, while one runs.
    job: Option<Job>,
}

/// The version of a projection's stored tables, against the version of its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tables {
    Current,
    /// Built by an older version: rebuilt in the shadow, then swapped in.
    Older,
    /// Built by a newer version (a node with newer code ran): left alone.
    Newer,
}

/// A background task bringing one member where the group is: a catch-up on its live tables, or a
/// rebuild in its shadow. It ends with the member's checkpoint. Dropping it stops the task.
struct Job {
    handle: JoinHandle<Result<Checkpoint, ProjectorError>>,
    rebuild: bool,
    /// Set by the task as it ends (just before it returns its result).
    done: Arc<AtomicBool>,
}

impl Drop for Job {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Why a transaction of the group did not commit.
enum Refused {
    /// Member `usize` could not apply the batch.
    Member(usize, ProjectorError),
    /// Some checkpoint had moved (another writer): the members' positions must be read again.
    Moved,
    /// The connection failed: the group stops leading until it has one (and its leases) again.
    Connection(ProjectorError),
}

impl ProjectorGroup {
    /// The group of `projectors` over `store`, with read models in `db` (at `url`).
    pub fn new(store: Arc<dyn EventStore>, db: AnyPool, url: &str, projectors: Vec<Projector>) -> Self {
        let members = projectors
            .into_iter()
            .map(|projector| Member {
                projector: Arc::new(projector),
                at: Checkpoint::START,
                retry: None,
                tables: Tables::Current,
                job: None,
            })
            .collect();
        Self {
            store,
            db,
            url: url.to_owned(),
            members,
            job_ended: Arc::new(Notify::new()),
            waiting: Arc::new(Notify::new()),
            stream_pace: STREAM_PACE,
        }
    }

    #[cfg(test)]
    pub(crate) fn with_stream_pace(mut self, pace: Duration) -> Self {
        self.stream_pace = pace;
        self
    }

    /// Ends the group's pause between transactions when `waiting` is told (a reader waits).
    pub fn with_waiting(mut self, waiting: Arc<Notify>) -> Self {
        self.waiting = waiting;
        self
    }

    /// Creates the checkpoint table and every projection's tables.
    pub async fn setup(&self) -> Result<(), ProjectorError> {
        for member in &self.members {
            member.projector.setup().await?;
        }
        Ok(())
    }

    fn names(&self) -> Vec<&'static str> {
        self.members.iter().map(|m| m.projector.name()).collect()
    }

    /// Follows the log until `stop` turns true. The group holds every projection's lease (one
    /// connection on PostgreSQL, which its transactions also use), so one node runs them.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let names = self.names();
        let mut backoff = Backoff::new(FIRST_RETRY, LAST_RETRY);
        loop {
            let lease = tokio::select! {
                lease = crate::lease::acquire_all(&self.db, self.store.backend(), &names) => lease,
                _ = stop.wait_for(|s| *s) => return,
            };
            tracing::info!(projections = ?names, "projectors active");
            let led = self.lead(lease, &mut stop).await;
            // Another node may lead next: no background work goes on without the leases.
            for member in &mut self.members {
                member.job = None;
            }
            match led {
                Ok(()) => return,
                Err(e) => {
                    tracing::error!(error = %e, "projectors stopped; starting again");
                    if sleep_or_stop(&mut stop, backoff.next_delay()).await {
                        return;
                    }
                }
            }
        }
    }

    /// Runs the projections while `lease` (on PostgreSQL) holds their leases. Returns when stopped,
    /// or with the error that broke the connection.
    async fn lead(
        &mut self,
        mut lease: Option<AnyConnection>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), ProjectorError> {
        if let Some(conn) = lease.as_mut() {
            // This connection only ever writes read models (see `begin_statement`).
            sqlx::query("SET synchronous_commit = off").execute(&mut *conn).await?;
        }
        {
            let mut conn = self.db.acquire().await?;
            for member in &mut self.members {
                let (name, version) = (member.projector.name(), member.projector.projection().version());
                let (at, stored) = Checkpoints::init_versioned(&mut conn, name, Checkpoint::START, version).await?;
                member.at = at;
                member.retry = None;
                member.tables = match stored.cmp(&version) {
                    Ordering::Equal => Tables::Current,
                    Ordering::Less => {
                        tracing::info!(
                            projection = name,
                            stored,
                            version,
                            "read model built by an older version; rebuilding it in the shadow while the old tables serve"
                        );
                        Tables::Older
                    }
                    Ordering::Greater => {
                        tracing::warn!(
                            projection = name,
                            stored,
                            version,
                            "read model built by a newer version of Netia; leaving it alone"
                        );
                        Tables::Newer
                    }
                };
            }
        }
        let mut at = self.store.head().await?;
        let mut tailer = Tailer::new(self.store.clone(), at).with_batch(BATCH);
        let mut next = Instant::now();
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return Ok(()),
                _ = tokio::time::sleep_until(next) => {}
                () = self.waiting.notified() => {}
            }
            self.tend(at).await?;
            let retry_at = self
                .members
                .iter()
                .filter_map(|m| m.retry.as_ref().map(|(when, _)| *when))
                .min();
            let events = tokio::select! {
                _ = stop.wait_for(|s| *s) => return Ok(()),
                _ = sleep_until(retry_at) => continue,
                () = self.job_ended.notified() => continue,
                events = tailer.next_batch() => events,
            };
            let events = match events {
                Ok(events) => events,
                // The log could not be read in time (requests retrying by the thousand after
                // PostgreSQL came back fill the store's pool): the leases stay held, and are given
                // up only if their session is gone too. Starting over would queue for them again
                // behind the same requests.
                Err(e) if crate::store::unavailable_in(&e) && session_alive(lease.as_mut()).await => {
                    tracing::warn!(error = %e, "projectors cannot read the log; retrying");
                    next = Instant::now() + READ_RETRY;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let Some(to) = events.last().map(RecordedEvent::checkpoint) else {
                continue;
            };
            self.apply(lease.as_mut(), at, to, &events).await?;
            at = to;
            let awaited = self.members.iter().any(|m| m.projector.awaited());
            next = Instant::now() + if awaited { PACE } else { self.stream_pace };
        }
    }

    /// Applies `events` (from `from` to `to`) to every member standing at `from`, together.
    async fn apply(
        &mut self,
        mut lease: Option<&mut AnyConnection>,
        from: Checkpoint,
        to: Checkpoint,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectorError> {
        let mut in_step: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].in_step(from))
            .collect();
        while !in_step.is_empty() {
            match self.together(lease.as_deref_mut(), &in_step, from, to, events).await {
                Ok(()) => {
                    for &i in &in_step {
                        self.members[i].at = to;
                        self.members[i].projector.reached(to);
                    }
                    return Ok(());
                }
                Err(Refused::Member(i, e)) => {
                    tracing::error!(projection = self.members[i].projector.name(), error = %e, "projection stalled; retrying alone");
                    self.members[i].failed();
                    in_step.retain(|&j| j != i);
                }
                Err(Refused::Moved) => {
                    let mut conn = self.db.acquire().await?;
                    for &i in &in_step {
                        let member = &mut self.members[i];
                        member.at = Checkpoints::load(&mut conn, member.projector.name()).await?;
                        if member.at != from {
                            tracing::info!(
                                projection = member.projector.name(),
                                "checkpoint moved (rebuild swapped in?); catching up alone"
                            );
                        }
                    }
                    in_step.retain(|&i| self.members[i].at == from);
                }
                Err(Refused::Connection(e)) => return Err(e),
            }
        }
        Ok(())
    }

    /// One transaction: every member of `in_step` applies `events`, then all their checkpoints move
    /// from `from` to `to` in one statement.
    async fn together(
        &self,
        lease: Option<&mut AnyConnection>,
        in_step: &[usize],
        from: Checkpoint,
        to: Checkpoint,
        events: &[RecordedEvent],
    ) -> Result<(), Refused> {
        let connection = |e: sqlx::Error| Refused::Connection(e.into());
        let mut pooled;
        let (conn, begin) = match lease {
            Some(conn) => (conn, "BEGIN"),
            None => {
                pooled = self.db.acquire().await.map_err(connection)?;
                (&mut *pooled, begin_statement(self.store.backend()))
            }
        };
        let mut tx = conn.begin_with(begin).await.map_err(connection)?;
        for &i in in_step {
            let projector = &self.members[i].projector;
            if let Err((position, source)) = projector.projection().apply_batch(&mut tx, events).await {
                return Err(match source {
                    // A statement the database refused is the projection's; anything else is the
                    // connection's.
                    ProjectionError::Database(e) if !matches!(e, sqlx::Error::Database(_)) => connection(e),
                    source => Refused::Member(
                        i,
                        ProjectorError::Apply {
                            name: projector.name(),
                            position,
                            source,
                        },
                    ),
                });
            }
        }
        let names: Vec<&str> = in_step.iter().map(|&i| self.members[i].projector.name()).collect();
        let moved = Checkpoints::advance_all(&mut tx, &names, from, to)
            .await
            .map_err(|e| Refused::Connection(e.into()))?;
        if moved != names.len() as u64 {
            return Err(Refused::Moved);
        }
        tx.commit().await.map_err(connection)
    }

    /// Collects the background jobs that ended, and starts one for every member that is not in
    /// step with the group at `target` (and not waiting to retry): a catch-up to `target`, or a
    /// rebuild in the shadow for tables of an older version.
    async fn tend(&mut self, target: Checkpoint) -> Result<(), ProjectorError> {
        let now = Instant::now();
        for member in &mut self.members {
            if member
                .job
                .as_ref()
                .is_some_and(|job| job.done.load(MemoryOrdering::Acquire) || job.handle.is_finished())
            {
                member.finish_job().await?;
            }
            if member.job.is_some()
                || member.tables == Tables::Newer
                || member.retry.as_ref().is_some_and(|(when, _)| *when > now)
            {
                continue;
            }
            let (projector, ended) = (member.projector.clone(), self.job_ended.clone());
            let done = Arc::new(AtomicBool::new(false));
            let end = {
                let done = done.clone();
                move || {
                    done.store(true, MemoryOrdering::Release);
                    ended.notify_one();
                }
            };
            if member.tables == Tables::Older {
                let (store, url) = (self.store.clone(), self.url.clone());
                member.job = Some(Job {
                    handle: tokio::spawn(async move {
                        // A server rebuilds beside live traffic, perhaps several projections at
                        // once: half the command's batch, for about half its memory.
                        let options = crate::rebuild::RebuildOptions {
                            batch: 10_000,
                            ..Default::default()
                        };
                        let projections = vec![projector.projection().clone()];
                        let rebuilt = crate::rebuild::rebuild_all(store, &url, projections, &options).await;
                        let result = match rebuilt {
                            Ok(_) => projector.checkpoint().await,
                            Err(e) => Err(e),
                        };
                        end();
                        result
                    }),
                    rebuild: true,
                    done,
                });
            } else if member.at < target {
                let from = member.at;
                member.job = Some(Job {
                    handle: tokio::spawn(async move {
                        let result = projector.catch_up_to(None, from, target).await;
                        end();
                        result
                    }),
                    rebuild: false,
                    done,
                });
            }
        }
        Ok(())
    }
}

impl Member {
    /// Whether it takes the group's next batch, which follows `from`.
    fn in_step(&self, from: Checkpoint) -> bool {
        self.at == from && self.retry.is_none() && self.job.is_none() && self.tables == Tables::Current
    }

    /// Takes the result of its ended job: where it stands now, or a failure to retry later.
    async fn finish_job(&mut self) -> Result<(), ProjectorError> {
        let Some(mut job) = self.job.take() else { return Ok(()) };
        let name = self.projector.name();
        // Ended or about to: it returns right after saying so.
        let result = match (&mut job.handle).await {
            Ok(result) => result,
            Err(e) => Err(ProjectorError::Job(name, e.to_string())),
        };
        match result {
            Ok(at) => {
                self.at = at;
                self.retry = None;
                self.projector.reached(at);
                if job.rebuild {
                    tracing::info!(
                        projection = name,
                        position = at.position,
                        "rebuilt read model swapped in"
                    );
                    self.tables = Tables::Current;
                }
            }
            Err(e) => {
                tracing::error!(projection = name, error = %e, rebuild = job.rebuild, "projection stalled; retrying");
                self.at = self.projector.checkpoint().await?;
                self.failed();
            }
        }
        Ok(())
    }

    /// Waits before the next attempt: [`FIRST_RETRY`] after a first failure, then twice as long as
    /// before, up to [`LAST_RETRY`].
    fn failed(&mut self) {
        let mut delays = match self.retry.take() {
            Some((_, delays)) => delays,
            None => Backoff::new(FIRST_RETRY, LAST_RETRY),
        };
        let wait = delays.next_delay();
        self.retry = Some((Instant::now() + wait, delays));
    }
}

/// Whether the leases' session answers (always on SQLite, which has none).
async fn session_alive(lease: Option<&mut AnyConnection>) -> bool {
    match lease {
        Some(conn) => crate::lease::answers(conn).await,
        None => true,
    }
}

async fn sleep_until(when: Option<Instant>) {
    match when {
        Some(when) => tokio::time::sleep_until(when).await,
        None => std::future::pending().await,
    }
}
