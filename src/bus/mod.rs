//! The bus: committed events reach the consumers that react to them (LLM reply, email, channels).
//!
//! - With RabbitMQ (`AMQP_URL`): the [`relay`] publishes every committed event to the durable topic
//!   exchange `netia.events` and moves its checkpoint only after the broker's confirms; each consumer
//!   owns a durable queue bound to the routing keys it wants ([`amqp`]).
//! - Embedded (no `AMQP_URL`): each consumer follows the log itself from its own checkpoint
//!   ([`embedded`]).
//!
//! Both run every delivery through [`process`]: a consumer claims `(consumer, event_id)` before the
//! effect and marks it done after (`consumer_processed`), so an event already handled is skipped and
//! a second copy arriving while the first is handled waits ([`Outcome::Busy`]); a failure is retried with exponential backoff, and after the last attempt
//! the event is parked (`consumer_parked`, plus the consumer's parking queue on RabbitMQ) while the
//! consumer goes on with the next one.

pub mod amqp;
mod claims;
pub mod embedded;
mod names;
pub mod parked;
pub mod relay;

pub use names::{DEFAULT_PREFIX, exchange, is_prefix, prefix_of};

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use netia_events::RecordedEvent;
use netia_projections::ProjectionError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::AnyPool;
use uuid::Uuid;

use crate::store::StoreError;
use crate::supervisor::{MakeRun, Run};

/// Why a consumer could not handle an event.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Worth another attempt later (a vendor down, a timeout).
    #[error("{0}")]
    Retry(String),
    /// Will never work (a malformed event): parked at once.
    #[error("{0}")]
    Permanent(String),
}

impl Failure {
    /// A vendor's error: retried when `transient` (rate limit, 5xx, network), else parked at once.
    pub fn of_vendor(transient: bool, error: impl std::fmt::Display) -> Self {
        if transient {
            Self::Retry(error.to_string())
        } else {
            Self::Permanent(error.to_string())
        }
    }
}

/// Why the bus's own bookkeeping failed: a log follower's checkpoint, or a message that is not an
/// event.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// A message body that is not a [`WireEvent`].
    #[error("not an event: {0}")]
    Body(#[from] serde_json::Error),
    /// A [`WireEvent`] whose `hash` is not hex.
    #[error("hash: {0}")]
    Hash(#[from] hex::FromHexError),
    /// Reading, placing or moving a checkpoint.
    #[error(transparent)]
    Checkpoint(#[from] ProjectionError),
    /// Reading the log's head.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Something that reacts to committed events. `handle` must be safe to run again for the same event
/// (its effect goes through a command that names the event), though the runtime skips events it has
/// seen handled.
#[async_trait]
pub trait Consumer: Send + Sync + 'static {
    /// Names its queue (`netia.<name>`) and its bookkeeping rows.
    fn name(&self) -> &'static str;
    /// Routing keys it wants, `<stream_type>.<event_type>` with AMQP topic wildcards (`*`, `#`).
    fn bindings(&self) -> Vec<String>;
    async fn handle(&self, event: &RecordedEvent) -> Result<(), Failure>;
    /// Whether `event` may need handling at all; when not, it is acknowledged without a claim or
    /// any bookkeeping (e.g. no webhook subscription wants it). When in doubt, say yes.
    async fn concerns(&self, _event: &RecordedEvent) -> bool {
        true
    }
    /// Called once when `event` is parked (its last attempt failed, or it failed for good), before
    /// the parking is recorded: the place to record the failure as an event (e.g. `SlackPostFailed`).
    async fn parked(&self, _event: &RecordedEvent, _failure: &Failure) {}
    /// How long one `handle` may take at most: its claim on an event holds this long (plus a
    /// margin) before another delivery may take the event over. [`CLAIM_TTL`] unless said.
    fn claim_ttl(&self) -> Duration {
        CLAIM_TTL
    }
}

/// How deliveries are retried (`BUS_MAX_ATTEMPTS`, `BUS_RETRY_BASE_MS`, `BUS_PREFETCH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts before an event is parked (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the second attempt; each later one doubles it.
    pub base: Duration,
    /// Unacknowledged deliveries a consumer holds at once (RabbitMQ).
    pub prefetch: u16,
    /// Deliveries a consumer handles at once on RabbitMQ (`BUS_CONCURRENCY`), never two of one
    /// stream (one conversation) at once; at most `prefetch` in effect.
    pub concurrency: u16,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base: Duration::from_secs(1),
            prefetch: 16,
            concurrency: 8,
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        self.base
            .saturating_mul(1 << attempt.saturating_sub(1).min(16))
            .min(Duration::from_secs(3600))
    }
}

/// Pauses before reconnecting to RabbitMQ (the relay, each consumer): 200 ms doubling to 5 s.
pub(crate) fn reconnect_backoff() -> crate::backoff::Backoff {
    crate::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(5))
}

/// The routing key of an event: `<stream_type>.<event_type>`.
pub fn routing_key(event: &RecordedEvent) -> String {
    format!("{}.{}", event.stream_type, event.event_type)
}

/// Whether `key` matches the AMQP topic `pattern` (`*` is one word, `#` zero or more).
pub fn matches(pattern: &str, key: &str) -> bool {
    fn go(pattern: &[&str], key: &[&str]) -> bool {
        match (pattern.split_first(), key.split_first()) {
            (None, None) => true,
            (Some((&"#", rest)), _) => go(rest, key) || (!key.is_empty() && go(pattern, &key[1..])),
            (Some((&"*", rest)), Some((_, key_rest))) => go(rest, key_rest),
            (Some((word, rest)), Some((k, key_rest))) => word == k && go(rest, key_rest),
            _ => false,
        }
    }
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = key.split('.').collect();
    go(&pattern, &key)
}

/// An event as it travels on RabbitMQ (the body of a message on `netia.events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireEvent {
    pub event_id: Uuid,
    pub global_position: i64,
    pub tx_id: u64,
    pub stream_type: String,
    pub stream_id: String,
    pub version: i64,
    pub event_type: String,
    pub event_version: i32,
    pub payload: Value,
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
    pub hash: String,
}

impl From<&RecordedEvent> for WireEvent {
    fn from(e: &RecordedEvent) -> Self {
        Self {
            event_id: e.event_id,
            global_position: e.global_position,
            tx_id: e.tx_id,
            stream_type: e.stream_type.clone(),
            stream_id: e.stream_id.clone(),
            version: e.version,
            event_type: e.event_type.clone(),
            event_version: e.event_version,
            payload: e.payload.clone(),
            metadata: e.metadata.clone(),
            recorded_at: e.recorded_at,
            hash: hex::encode(&e.hash),
        }
    }
}

impl WireEvent {
    /// The event as the log recorded it; [`BusError::Hash`] when `hash` is not hex.
    pub fn into_recorded(self) -> Result<RecordedEvent, BusError> {
        Ok(RecordedEvent {
            global_position: self.global_position,
            tx_id: self.tx_id,
            event_id: self.event_id,
            stream_type: self.stream_type,
            stream_id: self.stream_id,
            version: self.version,
            event_type: self.event_type,
            event_version: self.event_version,
            payload: self.payload,
            metadata: self.metadata,
            recorded_at: self.recorded_at,
            hash: hex::decode(&self.hash)?,
            decoded: Default::default(),
        })
    }
}

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Handled,
    /// Not the consumer's business ([`Consumer::concerns`] said no): nothing done, nothing
    /// recorded. Counted as handled.
    NotConcerned,
    /// Handled before (a redelivery): nothing done.
    Duplicate,
    /// Failed; try again after this long (attempt `attempt + 1`).
    RetryAfter(Duration),
    /// Failed for the last time (or for good): parked.
    Parked,
    /// Another delivery of the same event is being handled (its claim holds): look again after
    /// this long, without counting an attempt. If it succeeds this copy becomes a
    /// [`Outcome::Duplicate`]; if its handler crashed, the claim expires ([`CLAIM_TTL`]) and this
    /// copy takes it over.
    Busy(Duration),
}

/// How long a claim holds by default before another delivery may take the event over (its holder
/// crashed); consumers whose handling may take longer say so ([`Consumer::claim_ttl`]).
pub const CLAIM_TTL: Duration = Duration::from_secs(120);
/// Added to a consumer's own bound, for the bookkeeping around it.
const CLAIM_MARGIN: Duration = Duration::from_secs(10);

/// Runs delivery `attempt` (from 1) of `event` through `consumer`, with the bookkeeping that makes
/// redeliveries harmless and failures bounded.
pub async fn process(
    db: &AnyPool,
    consumer: &dyn Consumer,
    event: &RecordedEvent,
    attempt: u32,
    policy: &RetryPolicy,
) -> Result<Outcome, sqlx::Error> {
    let name = consumer.name();
    let outcome = deliver(db, consumer, event, attempt, policy).await;
    let label = match &outcome {
        Ok(Outcome::Handled | Outcome::NotConcerned) => "handled",
        Ok(Outcome::Duplicate) => "duplicates",
        Ok(Outcome::RetryAfter(_)) => "retried",
        Ok(Outcome::Parked) => "parked",
        Ok(Outcome::Busy(_)) => "busy",
        Err(_) => return outcome,
    };
    metrics::counter!(format!("netia_consumer_{label}_total"), "consumer" => name).increment(1);
    outcome
}

/// [`process`] without the counting.
async fn deliver(
    db: &AnyPool,
    consumer: &dyn Consumer,
    event: &RecordedEvent,
    attempt: u32,
    policy: &RetryPolicy,
) -> Result<Outcome, sqlx::Error> {
    let name = consumer.name();
    let id = event.event_id.to_string();
    if !consumer.concerns(event).await {
        return Ok(Outcome::NotConcerned);
    }
    let ttl = consumer.claim_ttl().saturating_add(CLAIM_MARGIN);
    let token = match claims::claim(db, name, &id, ttl).await? {
        claims::Claim::Won(token) => token,
        claims::Claim::Done => return Ok(Outcome::Duplicate),
        claims::Claim::Held(until) => {
            // Look again when the holder should be done, or its claim over; at most the backoff.
            let left = (until - Utc::now()).to_std().unwrap_or_default();
            let most = policy.backoff(attempt).max(Duration::from_millis(50));
            return Ok(Outcome::Busy(left.max(Duration::from_millis(50)).min(most)));
        }
    };
    let started = std::time::Instant::now();
    let handled = consumer.handle(event).await;
    let outcome = if handled.is_ok() { "ok" } else { "failed" };
    metrics::histogram!("netia_consumer_duration_seconds", "consumer" => name, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    let failure = match handled {
        Ok(()) => {
            claims::done(db, name, &id, ttl.saturating_sub(started.elapsed())).await?;
            return Ok(Outcome::Handled);
        }
        Err(failure) => failure,
    };
    // Let the retry (or a replay) claim it again; only our own claim (it may have been taken over).
    claims::release(db, name, &id, &token, ttl.saturating_sub(started.elapsed())).await?;
    let last = matches!(failure, Failure::Permanent(_)) || attempt >= policy.max_attempts;
    if !last {
        tracing::warn!(consumer = name, event = %id, attempt, error = %failure, "consumer failed; will retry");
        return Ok(Outcome::RetryAfter(policy.backoff(attempt)));
    }
    tracing::error!(consumer = name, event = %id, attempt, error = %failure, "consumer gave up: event parked");
    consumer.parked(event, &failure).await;
    park(db, name, &id, attempt, &failure.to_string()).await?;
    Ok(Outcome::Parked)
}

/// Starts the relay (with RabbitMQ) and `consumers` (on RabbitMQ, or embedded without it) under
/// supervision (`relay`, `consumer:<name>`); they run until the supervisor's stop.
pub async fn start(
    store: Arc<dyn crate::store::EventStore>,
    db: AnyPool,
    amqp_url: Option<String>,
    prefix: &str,
    policy: RetryPolicy,
    consumers: Vec<Arc<dyn Consumer>>,
    supervisor: &crate::supervisor::Supervisor,
) -> Vec<tokio::task::JoinHandle<()>> {
    let supervise = |name: String, make: MakeRun| supervisor.spawn(name, make);
    let mut tasks = Vec::new();
    // Followers of the log place their first checkpoint now, so that every event written once the
    // server is up reaches them.
    let mut followers = Vec::new();
    if amqp_url.is_some() {
        followers.push(relay::NAME.to_owned());
    } else {
        followers.extend(consumers.iter().map(|c| format!("consumer:{}", c.name())));
    }
    for name in followers {
        if let Err(e) = start_at(&db, store.as_ref(), &name).await {
            tracing::warn!(follower = %name, error = %e, "cannot place the first checkpoint yet");
        }
    }
    match amqp_url {
        Some(url) => {
            // The relay declares every consumer's queues at each broker session, before publishing.
            let relay = relay::Relay::new(store, db.clone(), url.clone())
                .with_prefix(prefix)
                .with_topology(consumers.clone(), policy);
            tasks.push(supervise(
                relay::NAME.to_owned(),
                Box::new(move |stop| Box::pin(relay.clone().run(stop)) as Run),
            ));
            for consumer in consumers {
                let name = format!("consumer:{}", consumer.name());
                let (url, db, prefix) = (url.clone(), db.clone(), prefix.to_owned());
                tasks.push(supervise(
                    name,
                    Box::new(move |stop| {
                        let run = amqp::run(url.clone(), prefix.clone(), db.clone(), consumer.clone(), policy, stop);
                        Box::pin(run) as Run
                    }),
                ));
            }
        }
        None => {
            for consumer in consumers {
                let embedded = embedded::Embedded {
                    store: store.clone(),
                    db: db.clone(),
                    policy,
                };
                let name = format!("consumer:{}", consumer.name());
                tasks.push(supervise(
                    name,
                    Box::new(move |stop| Box::pin(embedded.clone().run(consumer.clone(), stop)) as Run),
                ));
            }
        }
    }
    tasks
}

/// Where the log follower `name` (the relay, an embedded consumer) resumes: its checkpoint, or, the
/// first time, the log's head, so that history already there does not set off effects again (no
/// LLM replies to last year's messages). Errors: the database ([`BusError::Database`],
/// [`BusError::Checkpoint`]) or the log ([`BusError::Store`]).
pub async fn start_at(
    db: &AnyPool,
    store: &dyn crate::store::EventStore,
    name: &str,
) -> Result<netia_events::Checkpoint, BusError> {
    use netia_projections::Checkpoints;
    let mut conn = db.acquire().await?;
    if let Some(stored) = Checkpoints::find(&mut conn, name).await? {
        return Ok(stored);
    }
    let head = store.head().await?;
    Ok(Checkpoints::init(&mut conn, name, head).await?)
}

/// Records that `consumer` gave up on `event_id`.
pub async fn park(db: &AnyPool, consumer: &str, event_id: &str, attempts: u32, error: &str) -> Result<(), sqlx::Error> {
    let error: String = error.chars().take(2000).collect();
    sqlx::query(
        "INSERT INTO consumer_parked (consumer, event_id, attempts, error, parked_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (consumer, event_id) DO UPDATE SET attempts = excluded.attempts, error = excluded.error, \
         parked_at = excluded.parked_at",
    )
    .bind(consumer)
    .bind(event_id)
    .bind(i64::from(attempts))
    .bind(error)
    .bind(netia_events::chain::format_time(Utc::now()))
    .execute(db)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_patterns_match_as_rabbitmq_does() {
        let key = "conversation.CustomerMessagePosted";
        for pattern in [
            "#",
            "conversation.*",
            "*.CustomerMessagePosted",
            "conversation.#",
            key,
            "#.CustomerMessagePosted",
        ] {
            assert!(matches(pattern, key), "{pattern}");
        }
        for pattern in [
            "customer.*",
            "conversation",
            "*",
            "conversation.*.x",
            "conversation.AgentMessagePosted",
        ] {
            assert!(!matches(pattern, key), "{pattern}");
        }
        assert!(matches("a.#.b", "a.b") && matches("a.#.b", "a.x.y.b") && !matches("a.#.b", "a.x.c"));
    }

    #[test]
    fn backoff_doubles_from_the_base() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            prefetch: 1,
            concurrency: 1,
        };
        let waits: Vec<u128> = (1..=4).map(|a| policy.backoff(a).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800]);
    }
}
