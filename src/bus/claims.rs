//! Claim before act: a consumer claims `(consumer, event_id)` in `consumer_processed` before its
//! effect (see [`super::process`]).

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use netia_events::chain::format_time;
use sqlx::AnyPool;

/// What claiming an event for a consumer found.
pub(super) enum Claim {
    /// Ours until the time it names (stored as `claimed_until`, this claim's token): act, then mark
    /// it done.
    Won(String),
    /// Handled before.
    Done,
    /// Claimed by another delivery until then.
    Held(DateTime<Utc>),
}

/// Claims `(consumer, event_id)` atomically for `ttl`: a new claim, or one whose holder's time is up.
/// The claim's token (its expiry, to the microsecond) is chosen before the first try, and the
/// statement is retried while the database is unavailable (for at most `ttl`): a claim stored by
/// a try whose answer was lost (the connection broke after the commit) is then recognised as ours
/// instead of holding the event until it expires.
pub(super) async fn claim(db: &AnyPool, consumer: &str, event_id: &str, ttl: Duration) -> Result<Claim, sqlx::Error> {
    let now = Utc::now();
    let until = now + chrono::TimeDelta::from_std(ttl).unwrap_or(chrono::TimeDelta::MAX);
    let (now, token) = (format_time(now), format_time(until));
    while_unavailable(|| try_claim(db, consumer, event_id, &now, &token), ttl).await
}

async fn try_claim(db: &AnyPool, consumer: &str, event_id: &str, now: &str, token: &str) -> Result<Claim, sqlx::Error> {
    let won: Option<i64> = sqlx::query_scalar(
        "INSERT INTO consumer_processed (consumer, event_id, processed_at, state, claimed_until) \
         VALUES ($1, $2, $3, 'claimed', $4) \
         ON CONFLICT (consumer, event_id) DO UPDATE \
         SET processed_at = excluded.processed_at, claimed_until = excluded.claimed_until \
         WHERE consumer_processed.state = 'claimed' AND consumer_processed.claimed_until < $3 \
         RETURNING 1",
    )
    .bind(consumer)
    .bind(event_id)
    .bind(now)
    .bind(token)
    .fetch_optional(db)
    .await?;
    if won.is_some() {
        return Ok(Claim::Won(token.to_owned()));
    }
    let row: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT state, claimed_until FROM consumer_processed WHERE consumer = $1 AND event_id = $2")
            .bind(consumer)
            .bind(event_id)
            .fetch_optional(db)
            .await?;
    Ok(match row {
        Some((state, _)) if state == "done" => Claim::Done,
        // Stored by an earlier try of this claim whose answer was lost.
        Some((_, Some(until))) if until == token => Claim::Won(token.to_owned()),
        Some((_, until)) => Claim::Held(
            until
                .and_then(|u| DateTime::parse_from_rfc3339(&u).ok())
                .map_or_else(Utc::now, |u| u.with_timezone(&Utc)),
        ),
        // Released between the two statements (its handler failed): look again shortly.
        None => Claim::Held(Utc::now()),
    })
}

/// Marks a claimed event handled. Its effect has happened: were this mark lost to a database
/// restart, the claim would expire and another delivery would repeat the effect (a second email),
/// so it is retried while the database is unavailable, for at most `within` (the claim's time).
pub(super) async fn done(db: &AnyPool, consumer: &str, event_id: &str, within: Duration) -> Result<(), sqlx::Error> {
    let mark = || async {
        sqlx::query(
            "UPDATE consumer_processed SET state = 'done', processed_at = $3, claimed_until = NULL \
             WHERE consumer = $1 AND event_id = $2",
        )
        .bind(consumer)
        .bind(event_id)
        .bind(format_time(Utc::now()))
        .execute(db)
        .await
        .map(drop)
    };
    while_unavailable(mark, within).await
}

/// Gives back our claim (`token`) of an event whose handler failed, so that the retry (or a
/// replay) may claim it at once rather than after the claim's expiry; retried like [`done`].
pub(super) async fn release(
    db: &AnyPool,
    consumer: &str,
    event_id: &str,
    token: &str,
    within: Duration,
) -> Result<(), sqlx::Error> {
    let release = || async {
        sqlx::query(
            "DELETE FROM consumer_processed WHERE consumer = $1 AND event_id = $2 AND state = 'claimed' \
             AND claimed_until = $3",
        )
        .bind(consumer)
        .bind(event_id)
        .bind(token)
        .execute(db)
        .await
        .map(drop)
    };
    while_unavailable(release, within).await
}

/// Runs `statement` again (after 100 ms, doubling to 2 s) while it fails because the database is
/// unavailable ([`crate::store::database_unavailable`]), for at most `within` in all; not once the
/// pool is closed (the node is stopping), which no wait undoes.
async fn while_unavailable<T, F, Fut>(statement: F, within: Duration) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .with_factor(2.0)
        .without_max_times()
        .with_total_delay(Some(within));
    statement
        .retry(backoff)
        .when(|e| !matches!(e, sqlx::Error::PoolClosed) && crate::store::database_unavailable(e))
        .notify(|e, _| tracing::warn!(error = %e, "consumer bookkeeping failed; retrying"))
        .await
}
