//! Parked events: deliveries a consumer gave up on (`consumer_parked`), for operators to list,
//! inspect, replay or drop (`netia bus parked …`).

use std::sync::Arc;

use netia_events::RecordedEvent;
use sqlx::{AnyPool, FromRow};
use uuid::Uuid;

use super::{Consumer, Outcome, RetryPolicy, process};
use crate::store::{EventStore, StoreError};

/// One parked delivery.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize)]
pub struct Parked {
    pub consumer: String,
    pub event_id: String,
    /// Attempts made before it was parked.
    pub attempts: i64,
    /// The last failure.
    pub error: String,
    pub parked_at: String,
}

const COLUMNS: &str = "consumer, event_id, CAST(attempts AS BIGINT) AS attempts, error, parked_at";

/// The parked deliveries, oldest first; of one consumer if named.
pub async fn list(db: &AnyPool, consumer: Option<&str>) -> Result<Vec<Parked>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM consumer_parked WHERE ($1 = '' OR consumer = $1) ORDER BY parked_at, consumer, event_id"
    ))
    .bind(consumer.unwrap_or_default().to_owned())
    .fetch_all(db)
    .await
}

/// One parked delivery, if it is parked.
pub async fn get(db: &AnyPool, consumer: &str, event_id: Uuid) -> Result<Option<Parked>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM consumer_parked WHERE consumer = $1 AND event_id = $2"
    ))
    .bind(consumer.to_owned())
    .bind(event_id.to_string())
    .fetch_optional(db)
    .await
}

/// Forgets a parked delivery without running it; whether it was parked.
pub async fn drop_parked(db: &AnyPool, consumer: &str, event_id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM consumer_parked WHERE consumer = $1 AND event_id = $2")
        .bind(consumer.to_owned())
        .bind(event_id.to_string())
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{consumer} has no parked delivery of event {event_id}")]
    NotParked { consumer: String, event_id: Uuid },
    #[error("no consumer named {0} runs with these settings")]
    UnknownConsumer(String),
    #[error("event {0} is not in the log")]
    EventGone(Uuid),
    #[error("the consumer failed again: {0}; it stays parked")]
    FailedAgain(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Runs a parked delivery through its consumer once more, with a delivery's bookkeeping: it is
/// taken off the parked list first (so of two replays at once only one runs it), an event the
/// consumer has handled already is not handled again, and a failure parks it again with the new
/// error — so replaying it twice has one effect. Handled (or found handled), it leaves the parked list; failing again,
/// it stays, with the new error. Returns what became of it.
pub async fn replay(
    db: &AnyPool,
    store: &dyn EventStore,
    consumers: &[Arc<dyn Consumer>],
    consumer: &str,
    event_id: Uuid,
) -> Result<Outcome, ReplayError> {
    let not_parked = || ReplayError::NotParked {
        consumer: consumer.to_owned(),
        event_id,
    };
    let parked = get(db, consumer, event_id).await?.ok_or_else(not_parked)?;
    let runner = consumers
        .iter()
        .find(|c| c.name() == consumer)
        .ok_or_else(|| ReplayError::UnknownConsumer(consumer.to_owned()))?;
    let event: RecordedEvent = store
        .read_event(event_id)
        .await?
        .ok_or(ReplayError::EventGone(event_id))?;
    // Taken off the list first: of two replays at once, only the one that removed it runs it.
    if !drop_parked(db, consumer, event_id).await? {
        return Err(not_parked());
    }
    // One attempt: a failure parks it again straight away.
    let policy = RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    };
    let outcome = match process(db, runner.as_ref(), &event, 1, &policy).await {
        Ok(outcome) => outcome,
        Err(e) => {
            // The bookkeeping failed: back on the list, so that it is not lost.
            let _ = super::park(db, consumer, &event_id.to_string(), 1, &e.to_string()).await;
            return Err(e.into());
        }
    };
    match &outcome {
        Outcome::Handled | Outcome::NotConcerned | Outcome::Duplicate => Ok(outcome),
        // Another delivery of it holds a claim (perhaps a replay that died): back on the list, so
        // that it is not lost, to be replayed once the claim is over.
        Outcome::Busy(_) => {
            super::park(
                db,
                consumer,
                &event_id.to_string(),
                1,
                "being handled by another delivery; replay later",
            )
            .await?;
            Err(ReplayError::FailedAgain(
                "another delivery of this event holds its claim; try again in a few minutes".into(),
            ))
        }
        // `process` parked it again (one attempt), with the new error.
        Outcome::Parked | Outcome::RetryAfter(_) => {
            let error = get(db, consumer, event_id).await?.map_or(parked.error, |p| p.error);
            Err(ReplayError::FailedAgain(error))
        }
    }
}
