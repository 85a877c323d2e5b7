//! One WebSocket connection speaking Phoenix Channels V2, in three parts: the transport
//! ([`transport`]: the upgrade with its token, version and origin checks, the frame loop with
//! heartbeats, WS pings, idle timeout and size limit), the protocol router ([`channels`]: joins,
//! leaves, who may join which topic, which event goes where) and the actions ([`actions`]: saving
//! a message, typing, read and seen marks — through the application layer). The channels:
//! `conversation:<id>`, `notification:<account>`, `room:<account>`, `events:<account>`.

mod actions;
mod admission;
mod channels;
mod transport;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use netia_events::user::Role;
use netia_events::{AccountId, Actor, CustomerId, Metadata, UserId};
use serde_json::{Map, Value, json};

pub use transport::{Head, PATH, not_upgraded, serve, serve_on, serve_upgrade, sniff};

use super::hub::{ConnId, Hub, Outbox, WireFrame};
use crate::app::App;
use crate::auth::Auth;

/// What sockets need: the application layer and the credentials store. One per node, shared by
/// every connection (each holds one pointer to it).
pub struct SocketServices {
    pub app: App,
    pub auth: Auth,
    /// Turns true when the node shuts down: every socket closes with 1001 ("going away") so its
    /// client reconnects to another node, and new upgrades are refused (503).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Socket upgrades per client address (the node's limiter, shared with the HTTP side).
    pub limiter: Arc<crate::limits::Limiter>,
}

/// Largest frame accepted from a client, in bytes; a larger one closes the connection (1009). The
/// same as an HTTP body: a `shout` carries the same message (see
/// [`netia_commands::validate::MAX_REQUEST_BYTES`]).
pub const MAX_FRAME: usize = netia_commands::validate::MAX_REQUEST_BYTES;
/// A connection that sends nothing (not even a heartbeat) for this long is closed.
pub const IDLE: Duration = Duration::from_secs(60);
/// Bytes read from the network at a time; frames larger than that are read in several goes.
const READ_BUFFER: usize = 1024;
/// Channels one connection may join.
pub const MAX_CHANNELS: usize = 100;
/// How long a sender waits for the broadcast of its own message before its reply.
const BROADCAST_WAIT: Duration = Duration::from_secs(3);

/// Moves `netia_socket_topics_joined` (topics joined by this node's sockets) by `delta`.
fn topics_joined(delta: f64) {
    metrics::gauge!("netia_socket_topics_joined").increment(delta);
}

/// Who is connected.
#[derive(Debug, Clone)]
pub enum Caller {
    Agent {
        user_id: UserId,
        account_id: AccountId,
        role: Role,
    },
    Customer {
        customer_id: CustomerId,
        account_id: AccountId,
    },
}

impl Caller {
    fn account_id(&self) -> AccountId {
        match self {
            Caller::Agent { account_id, .. } | Caller::Customer { account_id, .. } => *account_id,
        }
    }

    fn is_agent(&self) -> bool {
        matches!(self, Caller::Agent { .. })
    }

    fn meta(&self) -> Metadata {
        let actor = match self {
            Caller::Agent { user_id, .. } => Actor::Agent { user_id: *user_id },
            Caller::Customer { customer_id, .. } => Actor::Customer {
                customer_id: *customer_id,
            },
        };
        // Each push starts its own chain: what it writes, and what that causes, share this id.
        Metadata::new(actor)
            .with_account(self.account_id())
            .with_correlation(uuid::Uuid::now_v7())
    }

    /// The presence key and meta of this caller.
    fn presence(&self) -> (String, Map<String, Value>) {
        let online_at = chrono::Utc::now().timestamp().to_string();
        match self {
            Caller::Agent { user_id, .. } => (
                format!("user:{user_id}"),
                json!({"online_at": online_at, "user_id": user_id})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
            Caller::Customer { customer_id, .. } => (
                format!("customer:{customer_id}"),
                json!({"online_at": online_at, "customer_id": customer_id})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        }
    }
}

struct Connection {
    id: ConnId,
    caller: Caller,
    /// The agent session it was opened with (closed when that session ends).
    session: Option<String>,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    services: Arc<SocketServices>,
    hub: Arc<Hub>,
    outbox: Outbox,
    /// topic → join ref.
    joined: HashMap<String, String>,
    /// Topics where this connection said it is typing and has not said it stopped: the server
    /// ends that typing itself when the connection leaves the topic or goes away.
    typing: HashSet<String>,
}

impl Connection {
    fn send(&self, frame: String) {
        self.outbox.send(&WireFrame::text(frame));
    }

    fn person(&self) -> super::hub::Person {
        match &self.caller {
            Caller::Agent { user_id, .. } => super::hub::Person::Agent(*user_id),
            Caller::Customer { customer_id, .. } => super::hub::Person::Customer(*customer_id),
        }
    }
}
