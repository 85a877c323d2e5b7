//! Claim before act: a consumer claims `(consumer, event_id)` in `consumer_processed` before its
//! effect (see [`super::process`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
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
pub(super) async fn claim(db: &AnyPool, consumer: &str, event_id: &str, ttl: Duration) -> Result<Claim, sqlx::Error> {
    let now = Utc::now();
    let until = now + chrono::TimeDelta::from_std(ttl).unwrap_or(chrono::TimeDelta::MAX);
    let format = netia_events::chain::format_time;
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
    .bind(format(now))
    .bind(format(until))
    .fetch_optional(db)
    .await?;
    if won.is_some() {
        return Ok(Claim::Won(format(until)));
    }
    let row: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT state, claimed_until FROM consumer_processed WHERE consumer = $1 AND event_id = $2")
            .bind(consumer)
            .bind(event_id)
            .fetch_optional(db)
            .await?;
    Ok(match row {
        Some((state, _)) if state == "done" => Claim::Done,
        Some((_, until)) => Claim::Held(
            until
                .and_then(|u| DateTime::parse_from_rfc3339(&u).ok())
                .map_or(now, |u| u.with_timezone(&Utc)),
        ),
        // Released between the two statements (its handler failed): look again shortly.
        None => Claim::Held(now),
    })
}
