//! The link between nodes for what is not in the log: presences, who is connected, and ephemeral
//! pushes (typing). Each node publishes to the fanout exchange `netia.presence` and reads its own
//! exclusive queue bound to it.
//!
//! - Every node sends a heartbeat each second; a node not heard for [`NODE_TIMEOUT`] is dropped: its
//!   presences leave on every other node and the people connected only there are recorded offline.
//! - A node that (re)connects asks for everyone's whole state (`Resync`) and sends its own; a node
//!   heard from without its state first (after being dropped, say) is asked again.
//! - Nothing here is durable: while RabbitMQ is unreachable this node keeps working alone and
//!   resynchronizes when the link is back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::hub::{Hub, Signal};

/// The fanout exchange the nodes of the deployment `prefix` signal each other on:
/// `<prefix>.presence`.
pub fn exchange(prefix: &str) -> String {
    format!("{prefix}.presence")
}
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node silent this long is taken for dead (the issue allows 10 s to clear its presences).
pub const NODE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    node: Uuid,
    #[serde(flatten)]
    signal: Signal,
}

/// Runs the link (see [`run`]) as the supervised task `cluster`.
pub fn supervised(
    supervisor: &crate::supervisor::Supervisor,
    url: String,
    prefix: String,
    hub: Arc<Hub>,
    outgoing: mpsc::UnboundedReceiver<Signal>,
) -> tokio::task::JoinHandle<()> {
    let outgoing = Arc::new(tokio::sync::Mutex::new(outgoing));
    supervisor.spawn(
        "cluster",
        Box::new(move |stop| Box::pin(run(url.clone(), prefix.clone(), hub.clone(), outgoing.clone(), stop))),
    )
}

/// Links `hub` to the other nodes through RabbitMQ at `url` until `stop` turns true, reconnecting
/// as needed. `outgoing` is what the hub tells the others.
pub async fn run(
    url: String,
    prefix: String,
    hub: Arc<Hub>,
    outgoing: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Signal>>>,
    mut stop: watch::Receiver<bool>,
) {
    // Shared so that a restarted link goes on with the same queue.
    let mut outgoing = outgoing.lock().await;
    let mut peers = Peers::default();
    let exchange = exchange(&prefix);
    loop {
        match connect(&url, &exchange).await {
            Ok((connection, channel, consumer)) => {
                tracing::info!(node = %hub.node(), "cluster link up");
                let ended = link(
                    &hub,
                    &channel,
                    &exchange,
                    consumer,
                    &mut outgoing,
                    &mut peers,
                    &mut stop,
                )
                .await;
                let _ = connection.close(200, "bye".into()).await;
                if ended {
                    return;
                }
                tracing::warn!("cluster link lost; this node runs alone until it is back");
            }
            Err(e) => tracing::warn!(error = %e, "cannot reach RabbitMQ for the cluster link; retrying"),
        }
        // Alone: what would be told is dropped (a resync follows), silent peers still expire.
        let retry = tokio::time::sleep(Duration::from_secs(1));
        tokio::pin!(retry);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = &mut retry => break,
                signal = outgoing.recv() => if signal.is_none() { return },
            }
        }
        peers.expire(&hub);
    }
}

async fn connect(url: &str, exchange: &str) -> lapin::Result<(Connection, Channel, lapin::Consumer)> {
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(exchange.into(), ExchangeKind::Fanout, durable, FieldTable::default())
        .await?;
    let mut arguments = FieldTable::default();
    // A signal older than a node timeout is of no use to anyone.
    arguments.insert(
        "x-message-ttl".into(),
        AMQPValue::LongUInt(NODE_TIMEOUT.as_millis() as u32),
    );
    let private = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    let queue = channel.queue_declare("".into(), private, arguments).await?;
    channel
        .queue_bind(
            queue.name().clone(),
            exchange.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let consume = BasicConsumeOptions {
        no_ack: true,
        exclusive: true,
        ..BasicConsumeOptions::default()
    };
    let consumer = channel
        .basic_consume(queue.name().clone(), "".into(), consume, FieldTable::default())
        .await?;
    Ok((connection, channel, consumer))
}

/// When each other node was last heard.
#[derive(Default)]
struct Peers {
    seen: HashMap<Uuid, Instant>,
}

impl Peers {
    /// Notes `node` heard now; true if it was not known.
    fn heard(&mut self, node: Uuid) -> bool {
        self.seen.insert(node, Instant::now()).is_none()
    }

    fn expire(&mut self, hub: &Hub) {
        let now = Instant::now();
        self.seen.retain(|node, last| {
            let alive = now.duration_since(*last) < NODE_TIMEOUT;
            if !alive {
                tracing::warn!(%node, "node silent for too long: its presences are dropped");
                hub.drop_node(*node);
            }
            alive
        });
    }
}

/// Runs one connection's worth of link; true when told to stop, false when the link broke.
async fn link(
    hub: &Hub,
    channel: &Channel,
    exchange: &str,
    mut consumer: lapin::Consumer,
    outgoing: &mut mpsc::UnboundedReceiver<Signal>,
    peers: &mut Peers,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let node = hub.node();
    let send = |signal: Signal| async move {
        let body = serde_json::to_vec(&Envelope { node, signal }).unwrap_or_default();
        channel
            .basic_publish(
                exchange.into(),
                "".into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default(),
            )
            .await
            .map(|_| ())
    };
    // Signals queued while the link was down are stale: the state below replaces them.
    while outgoing.try_recv().is_ok() {}
    if send(Signal::Resync).await.is_err() || send(hub.local_state()).await.is_err() {
        return false;
    }
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            _ = stop.changed() => return true,
            signal = outgoing.recv() => {
                let Some(signal) = signal else { return true };
                if send(signal).await.is_err() {
                    return false;
                }
            }
            _ = tick.tick() => {
                if send(Signal::Heartbeat).await.is_err() {
                    return false;
                }
                peers.expire(hub);
            }
            delivery = consumer.next() => {
                let Some(Ok(delivery)) = delivery else { return false };
                let Ok(Envelope { node: from, signal }) = serde_json::from_slice::<Envelope>(&delivery.data) else {
                    tracing::warn!("unreadable cluster signal ignored");
                    continue;
                };
                if from == node {
                    continue;
                }
                let new = peers.heard(from);
                match signal {
                    Signal::Resync => {
                        if send(hub.local_state()).await.is_err() {
                            return false;
                        }
                    }
                    Signal::State { .. } => hub.apply(from, signal),
                    other => {
                        if new {
                            // Heard from without its state: ask for it.
                            if send(Signal::Resync).await.is_err() {
                                return false;
                            }
                        }
                        hub.apply(from, other);
                    }
                }
            }
        }
    }
}
