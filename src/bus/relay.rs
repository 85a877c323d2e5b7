//! The relay: the events table is the outbox. It tails the log from its checkpoint and publishes each
//! committed event to `netia.events` (routing key
//! `<stream_type>.<event_type>`, persistent, `message_id` = event id, the correlation id, JSON body),
//! waits for the broker's confirms of a batch, and only then moves its checkpoint. Each broker
//! session starts by declaring the whole topology (the exchange, every consumer's queue, retry and
//! parking queues, bindings), and the events this node's consumers bind to are published
//! `mandatory`: one the broker cannot route to a queue comes back, fails the batch, and the
//! checkpoint does not move past it, so a queue deleted (or never declared, the broker being down
//! when the node started) cannot swallow events. Every event is published, whatever this node's
//! consumers: other nodes may run consumers this one does not (an LLM key set there only). One relay is active across nodes (a lease). While
//! RabbitMQ is unreachable events keep being accepted; the relay resumes from its checkpoint, in log
//! order, when the broker is back. A crash between the confirms and the checkpoint publishes a batch
//! again: consumers skip what they have handled.

use std::sync::Arc;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use netia_events::{Checkpoint, RecordedEvent};
use netia_projections::Checkpoints;
use sqlx::AnyPool;
use tokio::sync::watch;

use super::{BusError, WireEvent, exchange, routing_key};
use crate::backoff::sleep_or_stop;
use crate::store::{EventStore, StoreError};
use crate::tail::Tailer;

/// The relay's checkpoint name (in `projection_checkpoints`) and lease.
pub const NAME: &str = "relay";
const BATCH: usize = 500;

/// Why the relay stopped relaying (it resumes from its checkpoint after a backoff).
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The connection, the channel or a publish.
    #[error("RabbitMQ: {0}")]
    Broker(#[from] lapin::Error),
    #[error("cannot encode an event: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("the broker refused an event (nack)")]
    Nacked,
    /// A mandatory publish that no queue took (returned by the broker).
    #[error("no queue took event {0} (returned by the broker)")]
    Unroutable(String),
    #[error("the channel is not in confirm mode")]
    NotConfirming,
    /// Another relay (or an operator) moved the checkpoint.
    #[error("the relay checkpoint moved under this relay")]
    Moved,
    #[error(transparent)]
    Checkpoint(#[from] BusError),
    /// Reading the log.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The broker did not answer (a connect, a declaration, a batch's confirms) within
    /// [`BROKER_TIMEOUT`]: the connection is taken for dead.
    #[error("RabbitMQ did not answer within {0:?}")]
    Timeout(std::time::Duration),
}

/// How long one exchange with the broker may take before the session is given up and started
/// again from the checkpoint. A broker stopped mid-batch can leave a publish's confirm pending
/// forever on a connection the client has not yet seen die; without this bound the relay waited
/// on it for good (the crash suite's broker restart caught it).
pub const BROKER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// `operation`, or [`RelayError::Timeout`] after [`BROKER_TIMEOUT`].
async fn bounded<T, E: Into<RelayError>>(
    operation: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, RelayError> {
    match tokio::time::timeout(BROKER_TIMEOUT, operation).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(RelayError::Timeout(BROKER_TIMEOUT)),
    }
}

#[derive(Clone)]
pub struct Relay {
    store: Arc<dyn EventStore>,
    db: AnyPool,
    url: String,
    /// The consumers whose queues it declares and whose events it publishes `mandatory`.
    consumers: Vec<Arc<dyn super::Consumer>>,
    policy: super::RetryPolicy,
    /// The deployment prefix of the exchange and queue names.
    prefix: String,
}

/// Opens a channel in confirm mode.
pub async fn open(url: &str) -> lapin::Result<(Connection, Channel)> {
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok((connection, channel))
}

/// Declares the deployment's events exchange (`<prefix>.events`, durable topic).
pub async fn declare_exchange(channel: &Channel, prefix: &str) -> lapin::Result<()> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            exchange(prefix).into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await
}

/// Publishes `events` in order and waits for every confirm; an error ([`RelayError::Broker`],
/// [`RelayError::Nacked`], [`RelayError::NotConfirming`], [`RelayError::Encode`]) means some may not
/// have reached the broker (publish them again).
pub async fn publish(channel: &Channel, prefix: &str, events: &[RecordedEvent]) -> Result<(), RelayError> {
    publish_with(channel, prefix, events.iter(), |_| false).await
}

/// [`publish`]; an event for which `mandatory` says so and that no queue takes is
/// [`RelayError::Unroutable`].
async fn publish_with<'a>(
    channel: &Channel,
    prefix: &str,
    events: impl Iterator<Item = &'a RecordedEvent>,
    mandatory: impl Fn(&RecordedEvent) -> bool,
) -> Result<(), RelayError> {
    let exchange = exchange(prefix);
    let mut confirms = Vec::new();
    for event in events {
        let body = serde_json::to_vec(&WireEvent::from(event))?;
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(event.event_id.to_string().into())
            .with_type(event.event_type.clone().into())
            .with_timestamp(event.recorded_at.timestamp().max(0) as u64);
        if let Some(correlation) = event.metadata.get("correlation_id").and_then(|c| c.as_str()) {
            properties = properties.with_correlation_id(correlation.into());
        }
        let confirm = channel
            .basic_publish(
                exchange.as_str().into(),
                routing_key(event).into(),
                BasicPublishOptions {
                    mandatory: mandatory(event),
                    ..BasicPublishOptions::default()
                },
                &body,
                properties,
            )
            .await?;
        confirms.push((event.event_id, confirm));
    }
    for (event_id, confirm) in confirms {
        match confirm.await? {
            Confirmation::Ack(None) => {}
            Confirmation::Ack(Some(_)) => return Err(RelayError::Unroutable(event_id.to_string())),
            Confirmation::Nack(_) => return Err(RelayError::Nacked),
            Confirmation::NotRequested => return Err(RelayError::NotConfirming),
        }
    }
    Ok(())
}

impl Relay {
    pub fn new(store: Arc<dyn EventStore>, db: AnyPool, url: String) -> Self {
        Self {
            store,
            db,
            url,
            consumers: Vec::new(),
            policy: super::RetryPolicy::default(),
            prefix: super::DEFAULT_PREFIX.to_owned(),
        }
    }

    /// Publishes to the deployment `prefix`'s exchange (`<prefix>.events`).
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.prefix);
        self
    }

    /// Declares these consumers' topology at each broker session and publishes the events they
    /// bind to `mandatory`.
    pub fn with_topology(mut self, consumers: Vec<Arc<dyn super::Consumer>>, policy: super::RetryPolicy) -> Self {
        self.consumers = consumers;
        self.policy = policy;
        self
    }

    /// Whether one of this node's consumers wants `event`.
    fn wanted(bindings: &[String], event: &RecordedEvent) -> bool {
        let key = routing_key(event);
        bindings.iter().any(|b| super::matches(b, &key))
    }

    async fn checkpoint(&self) -> Result<Checkpoint, BusError> {
        super::start_at(&self.db, self.store.as_ref(), NAME).await
    }

    /// Moves the checkpoint, on the lease's connection where there is one (PostgreSQL), so that a
    /// relay whose lease is gone cannot move it.
    async fn advance(&self, lease: &crate::lease::Lease, from: Checkpoint, to: Checkpoint) -> Result<bool, BusError> {
        if let Some(mut conn) = lease.connection().await {
            return Ok(Checkpoints::advance(&mut conn, NAME, from, to).await?);
        }
        let mut conn = self.db.acquire().await?;
        Ok(Checkpoints::advance(&mut conn, NAME, from, to).await?)
    }

    /// Relays until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let lease = tokio::select! {
            lease = crate::lease::acquire(&self.db, self.store.backend(), NAME) => lease,
            _ = stop.wait_for(|s| *s) => return,
        };
        tracing::info!("relay active");
        // A lost lease stops the relaying at once (another node has it); the supervisor starts
        // again. Checkpoint writes go over the lease's own connection, so none outlives it.
        let relaying = async {
            let mut backoff = super::reconnect_backoff();
            loop {
                match self.session(&mut stop, &lease).await {
                    Ok(()) => return,
                    Err(e) => tracing::warn!(error = %e, "relay interrupted; resuming from its checkpoint"),
                }
                if sleep_or_stop(&mut stop, backoff.next_delay()).await {
                    return;
                }
            }
        };
        tokio::select! {
            () = relaying => {}
            () = lease.lost() => {}
        }
    }

    /// One connection's worth of relaying; `Ok` when told to stop.
    async fn session(&self, stop: &mut watch::Receiver<bool>, lease: &crate::lease::Lease) -> Result<(), RelayError> {
        let (connection, channel) = bounded(open(&self.url)).await?;
        let result = async {
            bounded(declare_exchange(&channel, &self.prefix)).await?;
            for consumer in &self.consumers {
                bounded(super::amqp::declare(
                    &channel,
                    &self.prefix,
                    consumer.as_ref(),
                    &self.policy,
                ))
                .await?;
            }
            let bindings: Vec<String> = self.consumers.iter().flat_map(|c| c.bindings()).collect();
            let mut at = self.checkpoint().await?;
            let mut tailer = Tailer::new(self.store.clone(), at).with_batch(BATCH);
            loop {
                let events = tokio::select! {
                    events = tailer.next_batch() => events?,
                    _ = stop.wait_for(|s| *s) => return Ok(()),
                };
                bounded(publish_with(&channel, &self.prefix, events.iter(), |e| {
                    Self::wanted(&bindings, e)
                }))
                .await?;
                let Some(last) = events.last().map(RecordedEvent::checkpoint) else {
                    continue;
                };
                if !self.advance(lease, at, last).await? {
                    return Err(RelayError::Moved);
                }
                at = last;
                metrics::counter!("netia_relay_published_total").increment(events.len() as u64);
            }
        }
        .await;
        // A dead connection may not answer the close either.
        let _ = tokio::time::timeout(BROKER_TIMEOUT, connection.close(200, "bye".into())).await;
        result
    }
}
