//! `netia status`: where every follower of the log stands (projections, the relay, embedded
//! consumers), who holds each lease, the scheduler's backlog and the parked deliveries — what an
//! operator looks at first.

use std::sync::Arc;

use chrono::Utc;
use netia_events::Checkpoint;
use netia_events::chain::format_time;
use netia_projections::Checkpoints;
use serde::Serialize;
use sqlx::AnyPool;

use crate::store::{Backend, EventStore, StoreError};

/// One follower of the log.
#[derive(Debug, Clone, Serialize)]
pub struct Follower {
    pub name: String,
    /// `projection`, `relay` or `consumer` (embedded; RabbitMQ consumers follow their queues).
    pub kind: &'static str,
    pub checkpoint: Checkpoint,
    /// Events after its checkpoint, and how old the oldest of them is.
    pub lag_events: i64,
    pub lag_seconds: f64,
    /// PostgreSQL: the database session holding its lease (`pid … from … since …`); `None` when
    /// nobody holds it (or on SQLite, where one process has everything).
    pub lease_holder: Option<String>,
}

/// The scheduler's delayed jobs.
#[derive(Debug, Clone, Serialize)]
pub struct Backlog {
    /// Jobs due now or overdue, not done.
    pub due: i64,
    /// Jobs not done yet, due or not.
    pub pending: i64,
    /// When the next pending job is due.
    pub next_due_at: Option<String>,
    pub lease_holder: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub followers: Vec<Follower>,
    pub scheduler: Backlog,
    /// Deliveries consumers gave up on (`netia bus parked list`).
    pub parked: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Checkpoint(#[from] netia_projections::ProjectionError),
    #[error(transparent)]
    Projector(#[from] crate::projector::ProjectorError),
}

/// Reads the node-independent state of the deployment from the log and its database.
pub async fn status(store: &Arc<dyn EventStore>, db: &AnyPool) -> Result<Status, StatusError> {
    // Creates the read models' tables if no server has yet, so that a fresh database answers too.
    crate::projector::status(store, db).await?;
    let followers = followers(store, db, true).await?;
    let due = due_jobs(db).await?;
    let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM scheduled_jobs WHERE done_at IS NULL")
        .fetch_one(db)
        .await?;
    let next_due_at: Option<String> =
        sqlx::query_scalar("SELECT MIN(due_at) FROM scheduled_jobs WHERE done_at IS NULL")
            .fetch_one(db)
            .await?;
    let parked: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM consumer_parked")
        .fetch_one(db)
        .await?;
    Ok(Status {
        followers,
        scheduler: Backlog {
            due,
            pending,
            next_due_at,
            lease_holder: lease_holder(db, store.backend(), "scheduler").await?,
        },
        parked,
    })
}

/// Every follower of the log with its checkpoint and lag; with `leases`, who holds each lease
/// (PostgreSQL; one more query per follower).
pub async fn followers(store: &Arc<dyn EventStore>, db: &AnyPool, leases: bool) -> Result<Vec<Follower>, StatusError> {
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM projection_checkpoints ORDER BY name")
        .fetch_all(db)
        .await?;
    let mut followers = Vec::new();
    let mut conn = db.acquire().await?;
    for name in names {
        let checkpoint = Checkpoints::load(&mut conn, &name).await?;
        let (lag_events, oldest) = store.lag(checkpoint).await?;
        let kind = if name == crate::bus::relay::NAME {
            "relay"
        } else if name.starts_with("consumer:") {
            "consumer"
        } else {
            "projection"
        };
        let lease_holder = if leases {
            lease_holder(db, store.backend(), &name).await?
        } else {
            None
        };
        followers.push(Follower {
            lease_holder,
            name,
            kind,
            checkpoint,
            lag_events,
            lag_seconds: oldest.map_or(0.0, |t| (Utc::now() - t).as_seconds_f64().max(0.0)),
        });
    }
    Ok(followers)
}

/// Scheduled jobs due now or overdue, not done.
pub async fn due_jobs(db: &AnyPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM scheduled_jobs WHERE done_at IS NULL AND due_at <= $1")
        .bind(format_time(Utc::now()))
        .fetch_one(db)
        .await
}

/// The session holding lease `name` (see [`crate::lease`]), on PostgreSQL.
async fn lease_holder(db: &AnyPool, backend: Backend, name: &str) -> Result<Option<String>, sqlx::Error> {
    if backend != Backend::Postgres {
        return Ok(None);
    }
    // A bigint advisory lock shows as classid (high 32 bits) and objid (low 32 bits), objsubid 1.
    let holder: Option<String> = sqlx::query_scalar(
        "SELECT 'pid ' || l.pid::text || COALESCE(' from ' || host(a.client_addr), '') || \
         ' since ' || to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND ((l.classid::bigint << 32) | l.objid::bigint) = $1 LIMIT 1",
    )
    .bind(crate::lease::lock_key(name))
    .fetch_optional(db)
    .await?;
    Ok(holder)
}

/// `netia status` as text: one line per follower (checkpoint, lag, lease holder), then the rest.
pub fn render(status: &Status) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:<10} {:>22} {:>10} {:>8}  lease",
        "follower", "kind", "checkpoint", "lag", "lag s"
    );
    for f in &status.followers {
        let at = f.checkpoint.position;
        let _ = writeln!(
            out,
            "{:<24} {:<10} {at:>22} {:>10} {:>8.1}  {}",
            f.name,
            f.kind,
            f.lag_events,
            f.lag_seconds,
            f.lease_holder.as_deref().unwrap_or("-")
        );
    }
    let s = &status.scheduler;
    let _ = writeln!(
        out,
        "scheduler: {} due, {} pending{}; lease {}",
        s.due,
        s.pending,
        s.next_due_at
            .as_ref()
            .map(|t| format!(" (next at {t})"))
            .unwrap_or_default(),
        s.lease_holder.as_deref().unwrap_or("-")
    );
    let _ = writeln!(out, "parked deliveries: {}", status.parked);
    out
}
