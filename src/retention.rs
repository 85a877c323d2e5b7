//! Retention of the bus's and scheduler's bookkeeping (`RETENTION_DAYS`, default 30): which
//! deliveries each consumer handled (`consumer_processed`) and finished delayed jobs
//! (`scheduled_jobs` with a `done_at`) and outbound webhook deliveries (`webhook_deliveries`) are
//! forgotten once older than that, so these tables stop growing with the log. The log itself,
//! pending jobs and parked deliveries are never pruned here.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use netia_events::chain::format_time;
use sqlx::AnyPool;
use tokio::sync::watch;

/// How often the pruning runs.
pub const EVERY: Duration = Duration::from_secs(3600);

/// Rows deleted by one pruning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub processed: u64,
    pub jobs: u64,
    pub webhook_deliveries: u64,
}

/// Deletes the bookkeeping older than `cutoff`: handled deliveries, and delayed jobs finished
/// (done or given up) before it.
pub async fn prune(db: &AnyPool, cutoff: DateTime<Utc>) -> Result<Pruned, sqlx::Error> {
    let cutoff = format_time(cutoff);
    let processed = sqlx::query("DELETE FROM consumer_processed WHERE processed_at < $1")
        .bind(cutoff.clone())
        .execute(db)
        .await?
        .rows_affected();
    let jobs = sqlx::query("DELETE FROM scheduled_jobs WHERE done_at IS NOT NULL AND done_at < $1")
        .bind(cutoff.clone())
        .execute(db)
        .await?
        .rows_affected();
    let webhook_deliveries = sqlx::query("DELETE FROM webhook_deliveries WHERE state <> 'parked' AND updated_at < $1")
        .bind(cutoff)
        .execute(db)
        .await?
        .rows_affected();
    Ok(Pruned {
        processed,
        jobs,
        webhook_deliveries,
    })
}

/// Prunes what is older than `keep` at start and then every [`EVERY`], until `stop` turns true.
/// (Deleting is idempotent, so every node may run it.)
pub async fn run(db: AnyPool, keep: TimeDelta, mut stop: watch::Receiver<bool>) {
    loop {
        match prune(&db, Utc::now() - keep).await {
            Ok(pruned) if pruned != Pruned::default() => {
                tracing::info!(
                    processed = pruned.processed,
                    jobs = pruned.jobs,
                    webhook_deliveries = pruned.webhook_deliveries,
                    "retention: old bookkeeping pruned"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention: pruning failed; trying again later"),
        }
        if crate::backoff::sleep_or_stop(&mut stop, EVERY).await {
            return;
        }
    }
}
