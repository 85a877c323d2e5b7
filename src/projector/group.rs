//! Every projection of the server in one task: each batch of the log is read once and applied to all
//! of them in one transaction, which moves all their checkpoints with one statement (four projectors
//! took four reads and four transactions, each a few round trips). A projection that fails, or whose
//! checkpoint moved under it (a rebuild swapped its tables in), leaves the group, catches up alone
//! with backoff, and rejoins once it stands where the group does.

use std::sync::Arc;
use std::time::Duration;

use netia_events::{Checkpoint, RecordedEvent};
use netia_projections::{Checkpoints, ProjectionError};
use sqlx::{AnyConnection, AnyPool, Connection};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{FIRST_RETRY, LAST_RETRY, Projector, ProjectorError, begin_statement};
use crate::backoff::{Backoff, sleep_or_stop};
use crate::store::EventStore;
use crate::tail::Tailer;

/// Events read per batch.
const BATCH: usize = 500;
/// Shortest time from one transaction of the group to the next. Under a steady stream of events
/// they gather into fewer, larger batches (at 1,000 events/s, one transaction per ten events instead
/// of per two or three), which leaves more of the processor to appends and broadcasts; an event after
/// a quiet spell is applied at once. (Measured in docs/adr/0006-serialized-appends.md.)
const PACE: Duration = Duration::from_millis(10);

pub struct ProjectorGroup {
    store: Arc<dyn EventStore>,
    db: AnyPool,
    members: Vec<Member>,
}

struct Member {
    projector: Projector,
    /// Its checkpoint, as this task last committed or read it.
    at: Checkpoint,
    /// While it fails: when to try it again, and the delays of the attempts after that.
    retry: Option<(Instant, Backoff)>,
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
    pub fn new(store: Arc<dyn EventStore>, db: AnyPool, projectors: Vec<Projector>) -> Self {
        let members = projectors
            .into_iter()
            .map(|projector| Member {
                projector,
                at: Checkpoint::START,
                retry: None,
            })
            .collect();
        Self { store, db, members }
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
            match self.lead(lease, &mut stop).await {
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
                member.at = Checkpoints::init(&mut conn, member.projector.name(), Checkpoint::START).await?;
                member.retry = None;
            }
        }
        let mut at = self.store.head().await?;
        let mut tailer = Tailer::new(self.store.clone(), at).with_batch(BATCH);
        let mut next = Instant::now();
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return Ok(()),
                _ = tokio::time::sleep_until(next) => {}
            }
            self.catch_up(lease.as_mut(), at).await?;
            let retry_at = self
                .members
                .iter()
                .filter_map(|m| m.retry.as_ref().map(|(when, _)| *when))
                .min();
            let events = tokio::select! {
                _ = stop.wait_for(|s| *s) => return Ok(()),
                _ = sleep_until(retry_at) => continue,
                events = tailer.next_batch() => events?,
            };
            let Some(to) = events.last().map(RecordedEvent::checkpoint) else {
                continue;
            };
            self.apply(lease.as_mut(), at, to, &events).await?;
            at = to;
            next = Instant::now() + PACE;
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
            .filter(|&i| self.members[i].at == from && self.members[i].retry.is_none())
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

    /// Brings every member that is not in step (and not waiting to retry) to `target` on its own,
    /// writing over `lease` (fenced). A broken lease connection ends the leadership (`Err`).
    async fn catch_up(
        &mut self,
        mut lease: Option<&mut AnyConnection>,
        target: Checkpoint,
    ) -> Result<(), ProjectorError> {
        let now = Instant::now();
        for member in &mut self.members {
            if member.at == target || member.retry.as_ref().is_some_and(|(when, _)| *when > now) {
                continue;
            }
            match member
                .projector
                .catch_up_to(lease.as_deref_mut(), member.at, target)
                .await
            {
                Ok(at) => {
                    member.at = at;
                    member.retry = None;
                }
                Err(e) if lease.is_some() && connection_lost(&e) => return Err(e),
                Err(e) => {
                    tracing::error!(projection = member.projector.name(), error = %e, "projection stalled; retrying");
                    if let Ok(at) = member.projector.checkpoint().await {
                        member.at = at;
                    }
                    member.failed();
                }
            }
        }
        Ok(())
    }
}

/// Whether `e` is the connection's (it broke or closed) rather than a statement the database
/// refused or a projection's own failure.
fn connection_lost(e: &ProjectorError) -> bool {
    let sql = match e {
        ProjectorError::Database(e)
        | ProjectorError::Apply {
            source: ProjectionError::Database(e),
            ..
        } => e,
        _ => return false,
    };
    !matches!(sql, sqlx::Error::Database(_))
}

impl Member {
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

async fn sleep_until(when: Option<Instant>) {
    match when {
        Some(when) => tokio::time::sleep_until(when).await,
        None => std::future::pending().await,
    }
}
