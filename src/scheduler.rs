//! The scheduler: time-driven work, run by one node at a time (a lease).
//!
//! - Every tick: wake snoozed conversations whose time has come, and run due delayed jobs
//!   (`scheduled_jobs`, e.g. the reply email), retrying a failed job with backoff and giving up after
//!   [`MAX_JOB_ATTEMPTS`].
//! - Hourly: archive conversations closed for more than 14 days. The last run is stored
//!   (`scheduler_runs`), so after downtime a missed run happens once, at start.
//!
//! Every effect is a command (`Wake`, `Archive`, …), so the aggregates decide and repeat nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use netia_commands::{Conversation, ConversationCommand};
use netia_events::chain::format_time;
use netia_events::{Actor, ConversationId, Metadata};
use serde_json::Value;
use sqlx::AnyPool;
use tokio::sync::watch;

use crate::backoff::sleep_or_stop;
use crate::command_bus::CommandBus;
use crate::store::EventStore;

pub const TICK: Duration = Duration::from_secs(1);
pub const ARCHIVE_EVERY: chrono::TimeDelta = chrono::TimeDelta::hours(1);
pub const MAX_JOB_ATTEMPTS: i64 = 8;
/// Candidates examined per tick (the rest wait for the next one).
const BATCH: i64 = 500;
/// How long a claimed job is a scheduler's alone: longer than any job may run ([`JOB_RUN_LIMIT`]);
/// after it, the job is another's to run (its scheduler died mid-job).
pub const JOB_CLAIM: chrono::TimeDelta = chrono::TimeDelta::seconds(90);
/// How long one run of a job may take (an SMTP send, each of its commands bounded at 30 s) before
/// it counts as failed and is retried: well inside [`JOB_CLAIM`], so that no run outlives its claim.
pub const JOB_RUN_LIMIT: Duration = Duration::from_secs(60);

/// Why a scheduler tick stopped short (the next tick tries again).
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// `scheduler_runs.last_run_at` of `job` is not an RFC 3339 time.
    #[error("the last run of {job} is stored as {stored:?}, not a time: {source}")]
    LastRun {
        job: String,
        stored: String,
        #[source]
        source: chrono::ParseError,
    },
}

/// Why a delayed job did not run to completion. Its text is kept in `scheduled_jobs.error`; the
/// job is retried with backoff, up to [`MAX_JOB_ATTEMPTS`] attempts.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// No handler of this node runs jobs of this kind.
    #[error("no handler for job kind {0:?}")]
    NoHandler(String),
    /// The stored payload is not JSON.
    #[error("unreadable payload: {0}")]
    Payload(#[from] serde_json::Error),
    /// The run took longer than [`JOB_RUN_LIMIT`].
    #[error("the job took longer than {0:?}")]
    TimedOut(Duration),
    /// The handler failed: its own error (e.g. [`crate::email::EmailError`]).
    #[error(transparent)]
    Handler(Box<dyn std::error::Error + Send + Sync>),
}

impl JobError {
    /// Wraps a handler's own error.
    pub fn handler(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Handler(Box::new(error))
    }
}

/// Runs one kind of delayed job.
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// The `scheduled_jobs.kind` it runs.
    fn kind(&self) -> &'static str;
    /// Runs one job with its stored `payload`; an error ([`JobError::Handler`]) has it retried
    /// later.
    async fn run(&self, payload: &Value) -> Result<(), JobError>;
}

/// Queues job `id` (idempotent: a job already queued under that id stays as it is).
pub async fn schedule(
    db: &AnyPool,
    id: &str,
    kind: &str,
    payload: &Value,
    due: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO scheduled_jobs (id, kind, payload, due_at, attempts) VALUES ($1, $2, $3, $4, 0) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(kind)
    .bind(payload.to_string())
    .bind(format_time(due))
    .execute(db)
    .await?;
    Ok(())
}

#[derive(Clone)]
pub struct Scheduler {
    pub store: Arc<dyn EventStore>,
    pub db: AnyPool,
    pub handlers: Vec<Arc<dyn JobHandler>>,
}

fn meta() -> Metadata {
    Metadata::new(Actor::System {
        component: "scheduler".into(),
    })
}

impl Scheduler {
    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let lease = tokio::select! {
            lease = crate::lease::acquire(&self.db, self.store.backend(), "scheduler") => lease,
            _ = stop.wait_for(|s| *s) => return,
        };
        tracing::info!("scheduler active");
        // A lost lease stops the ticks at once (another node has it); the supervisor starts again.
        // A job under way is cut short; its claim keeps the new holder from running it meanwhile.
        let ticks = async {
            loop {
                if let Err(e) = self.tick(Utc::now()).await {
                    tracing::warn!(error = %e, "scheduler tick failed; trying again next tick");
                }
                if sleep_or_stop(&mut stop, TICK).await {
                    return;
                }
            }
        };
        tokio::select! {
            () = ticks => {}
            () = lease.lost() => {}
        }
    }

    /// Everything due at `now`. A failed job is no error (it is retried later); a
    /// [`SchedulerError`] means the scheduler's own tables could not be read or written.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<(), SchedulerError> {
        self.wake_snoozed(now).await?;
        self.run_jobs(now).await?;
        if self.due("archive", ARCHIVE_EVERY, now).await? {
            self.archive(now).await?;
            metrics::counter!("netia_scheduler_runs_total", "job" => "archive", "outcome" => "ok").increment(1);
            self.ran("archive", now).await?;
        }
        Ok(())
    }

    async fn wake_snoozed(&self, now: DateTime<Utc>) -> Result<(), SchedulerError> {
        let due: Vec<String> = sqlx::query_scalar(
            "SELECT conversation_id FROM inbox WHERE status = 'snoozed' AND snoozed_until <= $1 \
             ORDER BY snoozed_until LIMIT $2",
        )
        .bind(format_time(now))
        .bind(BATCH)
        .fetch_all(&self.db)
        .await?;
        self.each(due, |_| ConversationCommand::Wake { at: now }).await;
        Ok(())
    }

    async fn archive(&self, now: DateTime<Utc>) -> Result<(), SchedulerError> {
        let cutoff = now - chrono::TimeDelta::days(netia_commands::conversation::ARCHIVE_AFTER_DAYS);
        // Closed conversations quiet since the cutoff; the aggregate checks the closing time itself.
        let candidates: Vec<String> = sqlx::query_scalar(
            "SELECT conversation_id FROM inbox WHERE status = 'closed' AND archived = 0 AND last_activity_at < $1 \
             ORDER BY last_activity_at LIMIT $2",
        )
        .bind(format_time(cutoff))
        .bind(BATCH * 20)
        .fetch_all(&self.db)
        .await?;
        self.each(candidates, |_| ConversationCommand::Archive { at: now })
            .await;
        Ok(())
    }

    /// Sends `command` to each conversation; refusals (not due, not closed long enough) are normal.
    async fn each(&self, ids: Vec<String>, command: impl Fn(ConversationId) -> ConversationCommand) {
        let bus = CommandBus::new(self.store.clone());
        for id in ids {
            let Ok(id) = id.parse::<ConversationId>() else { continue };
            if let Err(e) = bus.execute::<Conversation>(id, command(id), &meta()).await {
                tracing::debug!(conversation = %id, error = %e, "scheduled command not applied");
            }
        }
    }

    async fn due(&self, job: &str, every: chrono::TimeDelta, now: DateTime<Utc>) -> Result<bool, SchedulerError> {
        let last: Option<String> = sqlx::query_scalar("SELECT last_run_at FROM scheduler_runs WHERE job = $1")
            .bind(job)
            .fetch_optional(&self.db)
            .await?;
        let Some(last) = last else { return Ok(true) };
        let last = DateTime::parse_from_rfc3339(&last)
            .map_err(|source| SchedulerError::LastRun {
                job: job.to_owned(),
                stored: last.clone(),
                source,
            })?
            .with_timezone(&Utc);
        Ok(now - last >= every)
    }

    async fn ran(&self, job: &str, now: DateTime<Utc>) -> Result<(), SchedulerError> {
        sqlx::query(
            "INSERT INTO scheduler_runs (job, last_run_at) VALUES ($1, $2) \
             ON CONFLICT (job) DO UPDATE SET last_run_at = excluded.last_run_at",
        )
        .bind(job)
        .bind(format_time(now))
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn run_jobs(&self, now: DateTime<Utc>) -> Result<(), SchedulerError> {
        let handlers: HashMap<&str, &Arc<dyn JobHandler>> = self.handlers.iter().map(|h| (h.kind(), h)).collect();
        let due: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT id, kind, payload, attempts FROM scheduled_jobs WHERE done_at IS NULL AND due_at <= $1 \
             AND (claimed_until IS NULL OR claimed_until < $1) ORDER BY due_at LIMIT $2",
        )
        .bind(format_time(now))
        .bind(BATCH)
        .fetch_all(&self.db)
        .await?;
        for (id, kind, payload, attempts) in due {
            // Claim it, row by row: another scheduler (a deposed lease holder) may have it already.
            // The claim's expiry is also its token: only its holder records the outcome.
            let token = format_time(now + JOB_CLAIM);
            let claimed = sqlx::query(
                "UPDATE scheduled_jobs SET claimed_until = $1 WHERE id = $2 AND done_at IS NULL AND attempts = $3 \
                 AND (claimed_until IS NULL OR claimed_until < $4)",
            )
            .bind(&token)
            .bind(&id)
            .bind(attempts)
            .bind(format_time(now))
            .execute(&self.db)
            .await;
            let claimed = match claimed {
                Ok(claimed) => claimed,
                Err(e) => {
                    // It may have been claimed all the same: give the claim back rather than leave
                    // the job waiting for its expiry.
                    let release = Outcome::release(&id, &token);
                    let _ = self.record(&release, now + JOB_CLAIM).await;
                    return Err(e.into());
                }
            };
            if claimed.rows_affected() != 1 {
                continue;
            }
            let result = match (handlers.get(kind.as_str()), serde_json::from_str::<Value>(&payload)) {
                (Some(handler), Ok(payload)) => tokio::time::timeout(JOB_RUN_LIMIT, handler.run(&payload))
                    .await
                    .unwrap_or(Err(JobError::TimedOut(JOB_RUN_LIMIT))),
                (None, _) => Err(JobError::NoHandler(kind.clone())),
                (_, Err(e)) => Err(JobError::Payload(e)),
            };
            let ok = if result.is_ok() { "ok" } else { "failed" };
            metrics::counter!("netia_scheduler_runs_total", "job" => kind, "outcome" => ok).increment(1);
            let attempts = attempts + 1;
            let outcome = match result {
                Ok(()) => Outcome {
                    done_at: Some(format_time(now)),
                    ..Outcome::release(&id, &token).attempt(attempts)
                },
                Err(error) if attempts >= MAX_JOB_ATTEMPTS => {
                    tracing::error!(job = %id, %error, "job failed for the last time");
                    Outcome {
                        done_at: Some(format_time(now)),
                        error: Some(error.to_string()),
                        ..Outcome::release(&id, &token).attempt(attempts)
                    }
                }
                Err(error) => {
                    tracing::warn!(job = %id, attempt = attempts, %error, "job failed; will retry");
                    let backoff = chrono::TimeDelta::seconds(5 * (1 << attempts.min(10)));
                    Outcome {
                        due_at: Some(format_time(now + backoff)),
                        error: Some(error.to_string()),
                        ..Outcome::release(&id, &token).attempt(attempts)
                    }
                }
            };
            self.record(&outcome, now + JOB_CLAIM).await?;
        }
        Ok(())
    }

    /// Writes `outcome`, trying again (250 ms, doubling to 5 s) while the database is unavailable
    /// and the claim lasts (until `claim_ends`): a job that ran must not run again because its
    /// outcome could not be written during a database restart, nor wait for its claim to expire.
    async fn record(&self, outcome: &Outcome, claim_ends: DateTime<Utc>) -> Result<(), SchedulerError> {
        let mut pauses = crate::backoff::Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
        loop {
            let written = sqlx::query(
                "UPDATE scheduled_jobs SET attempts = COALESCE($1, attempts), done_at = $2, \
                 due_at = COALESCE($3, due_at), error = CASE WHEN $1 IS NULL THEN error ELSE $4 END, claimed_until = NULL \
                 WHERE id = $5 AND claimed_until = $6",
            )
            .bind(outcome.attempts)
            .bind(outcome.done_at.clone())
            .bind(outcome.due_at.clone())
            .bind(outcome.error.clone())
            .bind(&outcome.id)
            .bind(&outcome.token)
            .execute(&self.db)
            .await;
            match written {
                Ok(_) => return Ok(()),
                Err(e) if crate::store::database_unavailable(&e) && Utc::now() < claim_ends => {
                    tracing::warn!(job = %outcome.id, error = %e, "cannot record the job's outcome yet; trying again");
                    tokio::time::sleep(pauses.next_delay()).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// What becomes of a claimed job: its claim given back, with the attempt counted (and its error,
/// or none), and done or due again (`None` leaves `done_at` or `due_at` as it is).
struct Outcome {
    id: String,
    /// The claim's `claimed_until`: the row is written only while this claim holds it.
    token: String,
    attempts: Option<i64>,
    done_at: Option<String>,
    due_at: Option<String>,
    error: Option<String>,
}

impl Outcome {
    /// The claim given back, nothing else changed.
    fn release(id: &str, token: &str) -> Self {
        Self {
            id: id.to_owned(),
            token: token.to_owned(),
            attempts: None,
            done_at: None,
            due_at: None,
            error: None,
        }
    }

    fn attempt(self, attempts: i64) -> Self {
        Self {
            attempts: Some(attempts),
            ..self
        }
    }
}
