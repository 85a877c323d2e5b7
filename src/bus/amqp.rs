//! Consumers on RabbitMQ. Each consumer owns:
//! - `netia.<name>`: durable, bound to `netia.events` with its routing keys; deliveries are acked
//!   after the effect (manual ack, bounded prefetch), so a crash redelivers;
//! - `netia.<name>.retry.<ms>ms`: durable, one per backoff delay, holding a failed event for that
//!   many milliseconds (queue TTL) and then dead-lettering it back to `netia.<name>`; one queue per
//!   delay so that a long delay never holds a short one up. The delay is in the name because
//!   RabbitMQ refuses (406) to redeclare a queue with other arguments: a node started with another
//!   `BUS_RETRY_BASE_MS` declares and uses queues of its own delays, and events waiting in the old
//!   ones still go back to `netia.<name>` when their time is up;
//! - `netia.<name>.parked`: where an event goes after its last attempt (also recorded in
//!   `consumer_parked`).
//!
//! Consumers on several nodes share the queues (competing consumers). Each handles up to
//! `BUS_CONCURRENCY` deliveries at once, never two of one stream at once (a conversation's events
//! are handled one after the other, in order), acknowledging each on its own.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Confirmation};
use sqlx::AnyPool;
use tokio::sync::watch;

use super::{BusError, Consumer, Outcome, RetryPolicy, WireEvent, exchange, park, process};
use crate::backoff::sleep_or_stop;

/// Why a consumer's session on RabbitMQ ended (it reconnects after a backoff).
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    /// The connection, the channel, a declaration, a publish or an acknowledgement.
    #[error("RabbitMQ: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker cancelled the consumer")]
    Cancelled,
    /// A failed event could not be moved to its retry or parking queue.
    #[error("the broker did not take a retried event")]
    NotTaken,
    /// Recording a parked event.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The broker did not answer within [`super::relay::BROKER_TIMEOUT`]: the connection is taken
    /// for dead (what was not acknowledged is redelivered).
    #[error("RabbitMQ did not answer in time")]
    Timeout,
}

/// `operation` on the broker, or [`AmqpError::Timeout`]: a broker stopped mid-session can leave a
/// confirm or an acknowledgement pending on a connection not yet seen dead, and a handler waiting
/// on it would keep the session (and its consumer) from ever reconnecting.
async fn broker<T>(operation: impl std::future::Future<Output = lapin::Result<T>>) -> Result<T, AmqpError> {
    tokio::time::timeout(super::relay::BROKER_TIMEOUT, operation)
        .await
        .map_err(|_| AmqpError::Timeout)?
        .map_err(AmqpError::from)
}

/// The header carrying a delivery's attempt number (from 1).
pub const ATTEMPT: &str = "x-netia-attempt";

/// The main queue of consumer `name` in the deployment `prefix`: `<prefix>.<name>`.
pub fn queue(prefix: &str, name: &str) -> String {
    format!("{prefix}.{name}")
}

/// The queue that holds `name`'s failed events for `delay` (whole milliseconds).
pub fn retry_queue(prefix: &str, name: &str, delay: Duration) -> String {
    format!("{prefix}.{name}.retry.{}ms", delay.as_millis())
}

pub fn parked_queue(prefix: &str, name: &str) -> String {
    format!("{prefix}.{name}.parked")
}

/// Declares a consumer's queues and bindings (idempotent).
pub async fn declare(
    channel: &Channel,
    prefix: &str,
    consumer: &dyn Consumer,
    policy: &RetryPolicy,
) -> lapin::Result<()> {
    super::relay::declare_exchange(channel, prefix).await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let name = consumer.name();
    let main = queue(prefix, name);
    channel
        .queue_declare(main.clone().into(), durable, FieldTable::default())
        .await?;
    for binding in consumer.bindings() {
        channel
            .queue_bind(
                main.clone().into(),
                exchange(prefix).into(),
                binding.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    for attempt in 1..=last_retry(policy) {
        let delay = policy.backoff(attempt);
        let mut arguments = FieldTable::default();
        let ttl = u32::try_from(delay.as_millis()).unwrap_or(u32::MAX);
        arguments.insert("x-message-ttl".into(), AMQPValue::LongUInt(ttl));
        arguments.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(main.clone().into()),
        );
        channel
            .queue_declare(retry_queue(prefix, name, delay).into(), durable, arguments)
            .await?;
    }
    channel
        .queue_declare(parked_queue(prefix, name).into(), durable, FieldTable::default())
        .await?;
    Ok(())
}

/// The last attempt with a retry queue: one before the last attempt, and at least the first (a
/// busy copy waits in it even when failures are not retried).
fn last_retry(policy: &RetryPolicy) -> u32 {
    policy.max_attempts.saturating_sub(1).max(1)
}

/// Runs `consumer` of the deployment `prefix` on RabbitMQ at `url` until `stop` turns true,
/// reconnecting as needed.
pub async fn run(
    url: String,
    prefix: String,
    db: AnyPool,
    consumer: Arc<dyn Consumer>,
    policy: RetryPolicy,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = super::reconnect_backoff();
    loop {
        match session(&url, &prefix, &db, consumer.as_ref(), &policy, &mut stop).await {
            Ok(()) => return,
            Err(e) => tracing::warn!(consumer = consumer.name(), error = %e, "consumer disconnected; reconnecting"),
        }
        if sleep_or_stop(&mut stop, backoff.next_delay()).await {
            return;
        }
    }
}

async fn session(
    url: &str,
    prefix: &str,
    db: &AnyPool,
    consumer: &dyn Consumer,
    policy: &RetryPolicy,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), AmqpError> {
    let (connection, channel) = broker(super::relay::open(url)).await?;
    let result = async {
        broker(declare(&channel, prefix, consumer, policy)).await?;
        broker(channel.basic_qos(policy.prefetch, BasicQosOptions::default())).await?;
        let mut deliveries = broker(channel.basic_consume(
            queue(prefix, consumer.name()).into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ))
        .await?;
        tracing::info!(consumer = consumer.name(), "consumer listening");
        let limit = usize::from(policy.concurrency.clamp(1, policy.prefetch.max(1)));
        // Up to `limit` handlers run at once, at most one per stream: a delivery whose stream has
        // a handler running waits behind it (in `waiting`, still unacknowledged), in order.
        let mut running = FuturesUnordered::new();
        let mut waiting: HashMap<String, VecDeque<Delivery>> = HashMap::new();
        let run = |key: String, delivery: Delivery| {
            let channel = &channel;
            async move { (key, handle(channel, prefix, db, consumer, policy, delivery).await) }
        };
        // The first error ends the session, but only once the handlers under way have finished:
        // one dropped mid-effect would keep its claim until the claim expires, holding back the
        // redelivered copy that long.
        let mut failure = None;
        loop {
            tokio::select! {
                delivery = deliveries.next(), if running.len() < limit => {
                    let delivery = match delivery {
                        Some(Ok(delivery)) => delivery,
                        Some(Err(e)) => {
                            failure = Some(e.into());
                            break;
                        }
                        None => {
                            failure = Some(AmqpError::Cancelled);
                            break;
                        }
                    };
                    let key = ordering_key(&delivery);
                    match waiting.get_mut(&key) {
                        Some(behind) => behind.push_back(delivery),
                        None => {
                            waiting.insert(key.clone(), VecDeque::new());
                            running.push(run(key, delivery));
                        }
                    }
                }
                Some((key, handled)) = running.next() => {
                    if let Err(e) = handled {
                        failure = Some(e);
                        break;
                    }
                    match waiting.get_mut(&key).and_then(VecDeque::pop_front) {
                        Some(next) => running.push(run(key, next)),
                        None => {
                            waiting.remove(&key);
                        }
                    }
                }
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        // Let the effects under way finish (bounded by the shutdown timeout and by each
        // consumer's claim); what waits unacknowledged is redelivered, here or on another node.
        while let Some((_, handled)) = running.next().await {
            if let Err(e) = handled {
                failure.get_or_insert(e);
            }
        }
        failure.map_or(Ok(()), Err)
    }
    .await;
    let _ = tokio::time::timeout(super::relay::BROKER_TIMEOUT, connection.close(200, "bye".into())).await;
    result
}

/// Whether this deployment's log holds `event` (same stream, version and hash).
async fn in_log(db: &AnyPool, event: &netia_events::RecordedEvent) -> Result<bool, sqlx::Error> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM events WHERE stream_type = $1 AND stream_id = $2 AND version = $3 AND hash = $4",
    )
    .bind(&event.stream_type)
    .bind(&event.stream_id)
    .bind(event.version)
    .bind(event.hash.clone())
    .fetch_optional(db)
    .await?;
    Ok(found.is_some())
}

/// What orders deliveries: the event's stream (one conversation, one customer), so that two events
/// of one stream are never handled at once, nor out of order; an unreadable body stands alone.
fn ordering_key(delivery: &Delivery) -> String {
    #[derive(serde::Deserialize)]
    struct Stream {
        stream_type: String,
        stream_id: String,
    }
    match serde_json::from_slice::<Stream>(&delivery.data) {
        Ok(s) => format!("{}:{}", s.stream_type, s.stream_id),
        Err(_) => format!("unreadable:{}", delivery.delivery_tag),
    }
}

fn attempt_of(delivery: &Delivery) -> u32 {
    let header = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(ATTEMPT).cloned());
    match header {
        Some(AMQPValue::LongUInt(n)) => n.max(1),
        Some(AMQPValue::LongLongInt(n)) => u32::try_from(n).unwrap_or(1).max(1),
        Some(AMQPValue::LongInt(n)) => u32::try_from(n).unwrap_or(1).max(1),
        _ => 1,
    }
}

/// Sends a copy of `delivery` to `queue` (through the default exchange) with attempt `attempt`;
/// `mandatory`, so a queue that does not exist is an error, never a silent loss.
async fn forward(channel: &Channel, delivery: &Delivery, queue: String, attempt: u32) -> Result<(), AmqpError> {
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert(ATTEMPT.into(), AMQPValue::LongUInt(attempt));
    let properties = delivery.properties.clone().with_headers(headers).with_delivery_mode(2);
    let confirm = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            &delivery.data,
            properties,
        )
        .await?;
    match broker(confirm).await? {
        Confirmation::Ack(None) => Ok(()),
        _ => Err(AmqpError::NotTaken),
    }
}

async fn handle(
    channel: &Channel,
    prefix: &str,
    db: &AnyPool,
    consumer: &dyn Consumer,
    policy: &RetryPolicy,
    delivery: Delivery,
) -> Result<(), AmqpError> {
    let name = consumer.name();
    let attempt = attempt_of(&delivery);
    let event = serde_json::from_slice::<WireEvent>(&delivery.data)
        .map_err(BusError::from)
        .and_then(WireEvent::into_recorded);
    let event = match event {
        Ok(event) => event,
        Err(e) => {
            // Unreadable: no attempt will do better.
            let id = delivery
                .properties
                .message_id()
                .as_ref()
                .map_or_else(|| "(no message id)".to_owned(), |m| m.to_string());
            tracing::error!(consumer = name, message = %id, error = %e, "unreadable event parked");
            forward(channel, &delivery, parked_queue(prefix, name), attempt).await?;
            park(db, name, &id, attempt, &format!("unreadable: {e}")).await?;
            broker(delivery.ack(BasicAckOptions::default())).await?;
            return Ok(());
        }
    };
    if !in_log(db, &event).await? {
        // Another deployment's event (a shared vhost, a leftover queue): never acted on here.
        let id = event.event_id.to_string();
        tracing::error!(consumer = name, event = %id, stream = %event.stream_id, "an event this deployment's log does not hold; parked");
        forward(channel, &delivery, parked_queue(prefix, name), attempt).await?;
        park(
            db,
            name,
            &id,
            attempt,
            "not in this deployment's log (another deployment's event?)",
        )
        .await?;
        broker(delivery.ack(BasicAckOptions::default())).await?;
        return Ok(());
    }
    match process(db, consumer, &event, attempt, policy).await {
        Ok(Outcome::Handled | Outcome::NotConcerned | Outcome::Duplicate) => {}
        Ok(Outcome::RetryAfter(delay)) => {
            forward(channel, &delivery, retry_queue(prefix, name, delay), attempt + 1).await?
        }
        // Another copy is being handled: back through the attempt's own delay queue, same attempt.
        Ok(Outcome::Busy(_)) => {
            let delay = policy.backoff(attempt.clamp(1, last_retry(policy)));
            forward(channel, &delivery, retry_queue(prefix, name, delay), attempt).await?;
        }
        Ok(Outcome::Parked) => forward(channel, &delivery, parked_queue(prefix, name), attempt).await?,
        Err(e) => {
            // Bookkeeping failed (the database): give the delivery back and slow down.
            tracing::warn!(consumer = name, error = %e, "consumer bookkeeping failed; requeued");
            tokio::time::sleep(Duration::from_secs(1)).await;
            let requeue = BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            };
            broker(delivery.nack(requeue)).await?;
            return Ok(());
        }
    }
    broker(delivery.ack(BasicAckOptions::default())).await?;
    Ok(())
}
