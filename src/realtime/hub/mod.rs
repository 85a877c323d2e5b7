//! Who is listening to what, on this node: topics, their members (one bounded, ordered outbox per
//! connection) and their presences. Broadcasts are serialized once and shared by every member; a
//! member whose outbox is full is disconnected rather than allowed to slow the others.
//!
//! Presences span nodes: every local track, untrack, connection and ephemeral broadcast is also
//! handed to the cluster link ([`super::cluster`]), and what other nodes send is applied here with
//! [`Hub::apply`], so `presence_state` and `presence_diff` show everyone, wherever connected.
//!
//! In parts: membership (topics, members, broadcasts), presence (tracked presences here and on
//! other nodes), online (people's connections, online and offline).

mod membership;
mod online;
mod outbox;
mod presence;
mod revocation;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use netia_events::Checkpoint;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

pub use membership::{Audience, ConnId};
pub use online::Person;
pub use outbox::{Duplex, OUTBOX, Outbox, WireFrame};
pub use presence::{Origin, Signal, Tracked};

use membership::Topic;

pub struct Hub {
    /// This node, in the presences it tells other nodes about.
    node: Uuid,
    topics: Mutex<HashMap<String, Topic>>,
    /// Open connections per person on this node.
    people: Mutex<HashMap<Person, usize>>,
    /// People connected to other nodes, per node.
    remote_people: Mutex<HashMap<Uuid, HashSet<Person>>>,
    /// Where online/offline changes go to be recorded (in order).
    presence_log: Option<mpsc::UnboundedSender<(Person, bool)>>,
    /// Where what other nodes must hear goes (none when this node runs alone).
    cluster: Option<mpsc::UnboundedSender<Signal>>,
    next_conn: AtomicU64,
    next_ref: AtomicU64,
    /// The last log position whose broadcasts have been queued.
    broadcast_at: watch::Sender<Checkpoint>,
    /// Each socket's credentials, for revocations.
    credentials: Mutex<HashMap<ConnId, revocation::Credentials>>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    pub fn new() -> Self {
        Self {
            node: Uuid::now_v7(),
            topics: Mutex::new(HashMap::new()),
            people: Mutex::new(HashMap::new()),
            remote_people: Mutex::new(HashMap::new()),
            presence_log: None,
            cluster: None,
            next_conn: AtomicU64::new(1),
            next_ref: AtomicU64::new(1),
            broadcast_at: watch::channel(Checkpoint::default()).0,
            credentials: Mutex::new(HashMap::new()),
        }
    }

    /// Records online/offline changes through `log` (see [`crate::realtime::record_presence`]).
    pub fn with_presence_log(mut self, log: mpsc::UnboundedSender<(Person, bool)>) -> Self {
        self.presence_log = Some(log);
        self
    }

    /// Tells other nodes what happens here, through `link` (see [`super::cluster`]).
    pub fn with_cluster(mut self, link: mpsc::UnboundedSender<Signal>) -> Self {
        self.cluster = Some(link);
        self
    }

    pub fn node(&self) -> Uuid {
        self.node
    }

    fn tell(&self, signal: Signal) {
        if let Some(link) = &self.cluster {
            let _ = link.send(signal);
        }
    }

    fn topics(&self) -> std::sync::MutexGuard<'_, HashMap<String, Topic>> {
        self.topics.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn connection_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// The last log position whose broadcasts have been queued (where a restarted broadcaster
    /// resumes).
    pub fn broadcast_position(&self) -> Checkpoint {
        *self.broadcast_at.borrow()
    }

    /// Records that broadcasts up to `at` have been queued.
    pub fn broadcast_done(&self, at: Checkpoint) {
        self.broadcast_at.send_if_modified(|current| {
            if at > *current {
                *current = at;
                true
            } else {
                false
            }
        });
    }

    /// Waits (bounded) until the broadcasts of events up to `at` are queued, so that a sender's
    /// reply follows the broadcast of its own message.
    pub async fn broadcast_reached(&self, at: Checkpoint, timeout: Duration) -> bool {
        let mut rx = self.broadcast_at.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|done| *done >= at))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}
