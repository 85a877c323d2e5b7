//! Who is listening to what, on this node: topics, their members (one bounded, ordered outbox per
//! connection) and their presences. Broadcasts are serialized once and shared by every member; a
//! member whose outbox is full is disconnected rather than allowed to slow the others.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytestring::ByteString;
use netia_events::Checkpoint;
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, mpsc, watch};

use super::protocol::encode;

pub type ConnId = u64;

/// Frames queued for one connection, in send order.
pub const OUTBOX: usize = 1_024;

/// A connection's outbound queue, and the signal that closes it.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<ByteString>,
    kill: Arc<Notify>,
}

impl Outbox {
    pub fn new() -> (Outbox, mpsc::Receiver<ByteString>, Arc<Notify>) {
        let (tx, rx) = mpsc::channel(OUTBOX);
        let kill = Arc::new(Notify::new());
        (Outbox { tx, kill: kill.clone() }, rx, kill)
    }

    /// Queues a frame; a full queue means a consumer too slow to keep: it is told to close.
    pub fn send(&self, frame: ByteString) -> bool {
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.kill.notify_one();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// Who receives a broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Everyone,
    /// Agents only (private notes).
    Agents,
}

struct Member {
    join_ref: String,
    agent: bool,
    outbox: Outbox,
}

#[derive(Default)]
struct Topic {
    members: HashMap<ConnId, Member>,
    /// key → metas (each with its connection).
    presence: BTreeMap<String, Vec<(ConnId, Value)>>,
}

impl Topic {
    fn send_all(&self, frame: &ByteString, audience: Audience, except: Option<ConnId>) -> usize {
        let mut sent = 0;
        for (id, member) in &self.members {
            if Some(*id) == except || (audience == Audience::Agents && !member.agent) {
                continue;
            }
            if member.outbox.send(frame.clone()) {
                sent += 1;
            }
        }
        sent
    }

    fn state(&self) -> Value {
        let mut state = Map::new();
        for (key, metas) in &self.presence {
            let metas: Vec<&Value> = metas.iter().map(|(_, meta)| meta).collect();
            state.insert(key.clone(), json!({ "metas": metas }));
        }
        Value::Object(state)
    }
}

fn diff(topic: &str, joins: Map<String, Value>, leaves: Map<String, Value>) -> ByteString {
    ByteString::from(encode(
        None,
        None,
        topic,
        "presence_diff",
        &json!({"joins": joins, "leaves": leaves}),
    ))
}

/// Someone connected to this node for the first time, or closed their last connection here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Person {
    Agent(netia_events::UserId),
    Customer(netia_events::CustomerId),
}

pub struct Hub {
    topics: Mutex<HashMap<String, Topic>>,
    /// Open connections per person on this node.
    people: Mutex<HashMap<String, usize>>,
    /// Where online/offline changes go to be recorded (in order).
    presence_log: Option<mpsc::UnboundedSender<(Person, bool)>>,
    next_conn: AtomicU64,
    next_ref: AtomicU64,
    /// The last log position whose broadcasts have been queued.
    broadcast_at: watch::Sender<Checkpoint>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    pub fn new() -> Self {
        Self {
            topics: Mutex::new(HashMap::new()),
            people: Mutex::new(HashMap::new()),
            presence_log: None,
            next_conn: AtomicU64::new(1),
            next_ref: AtomicU64::new(1),
            broadcast_at: watch::channel(Checkpoint::default()).0,
        }
    }

    /// Records online/offline changes through `log` (see [`crate::realtime::record_presence`]).
    pub fn with_presence_log(mut self, log: mpsc::UnboundedSender<(Person, bool)>) -> Self {
        self.presence_log = Some(log);
        self
    }

    /// A connection of `person` opened (`true`) or closed; the first and the last are recorded.
    pub fn connection(&self, person: Person, open: bool) {
        let key = format!("{person:?}");
        let changed = {
            let mut people = self.people.lock().unwrap_or_else(|p| p.into_inner());
            let count = people.entry(key.clone()).or_default();
            if open {
                *count += 1;
                *count == 1
            } else {
                *count = count.saturating_sub(1);
                let last = *count == 0;
                if last {
                    people.remove(&key);
                }
                last
            }
        };
        if changed && let Some(log) = &self.presence_log {
            let _ = log.send((person, open));
        }
    }

    fn topics(&self) -> std::sync::MutexGuard<'_, HashMap<String, Topic>> {
        self.topics.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn connection_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds `conn` to `topic`; returns the join ref it had there before (the caller closes that
    /// channel instance first, as Phoenix does).
    pub fn join(&self, topic: &str, conn: ConnId, join_ref: &str, agent: bool, outbox: Outbox) -> Option<String> {
        let mut topics = self.topics();
        let entry = topics.entry(topic.to_owned()).or_default();
        let member = Member {
            join_ref: join_ref.to_owned(),
            agent,
            outbox,
        };
        entry.members.insert(conn, member).map(|old| old.join_ref)
    }

    /// The join ref under which `conn` is in `topic`.
    pub fn joined(&self, topic: &str, conn: ConnId) -> Option<String> {
        self.topics()
            .get(topic)
            .and_then(|t| t.members.get(&conn))
            .map(|m| m.join_ref.clone())
    }

    /// Removes `conn` from `topic`, with its presences (broadcasting their leave).
    pub fn leave(&self, topic: &str, conn: ConnId) -> bool {
        let mut topics = self.topics();
        let Some(entry) = topics.get_mut(topic) else {
            return false;
        };
        let was = entry.members.remove(&conn).is_some();
        let mut leaves = Map::new();
        entry.presence.retain(|key, metas| {
            let (gone, kept): (Vec<_>, Vec<_>) = metas.drain(..).partition(|(c, _)| *c == conn);
            if !gone.is_empty() {
                let gone: Vec<Value> = gone.into_iter().map(|(_, m)| m).collect();
                leaves.insert(key.clone(), json!({ "metas": gone }));
            }
            *metas = kept;
            !metas.is_empty()
        });
        if !leaves.is_empty() {
            entry.send_all(&diff(topic, Map::new(), leaves), Audience::Everyone, None);
        }
        if entry.members.is_empty() && entry.presence.is_empty() {
            topics.remove(topic);
        }
        was
    }

    /// Removes a closed connection from every topic.
    pub fn disconnect(&self, conn: ConnId, topics: &[String]) {
        for topic in topics {
            self.leave(topic, conn);
        }
    }

    /// Queues one frame for every member of `topic` (but `except`), serialized once.
    pub fn broadcast(
        &self,
        topic: &str,
        event: &str,
        payload: &Value,
        audience: Audience,
        except: Option<ConnId>,
    ) -> usize {
        let topics = self.topics();
        let Some(entry) = topics.get(topic) else { return 0 };
        let frame = ByteString::from(encode(None, None, topic, event, payload));
        entry.send_all(&frame, audience, except)
    }

    /// Tracks `conn` under `key` in `topic` with `meta` (a unique `phx_ref` is added): the joiner
    /// gets `presence_state`, everyone `presence_diff`.
    pub fn track(&self, topic: &str, conn: ConnId, key: &str, mut meta: Map<String, Value>) {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let counter = self.next_ref.fetch_add(1, Ordering::Relaxed);
        meta.insert("phx_ref".into(), json!(format!("{nanos:x}-{counter:x}")));
        let meta = Value::Object(meta);
        let mut topics = self.topics();
        let Some(entry) = topics.get_mut(topic) else { return };
        let Some(joiner) = entry.members.get(&conn) else { return };
        let join_ref = joiner.join_ref.clone();
        let outbox = joiner.outbox.clone();
        entry
            .presence
            .entry(key.to_owned())
            .or_default()
            .push((conn, meta.clone()));
        let state = encode(Some(&join_ref), None, topic, "presence_state", &entry.state());
        outbox.send(ByteString::from(state));
        let mut joins = Map::new();
        joins.insert(key.to_owned(), json!({ "metas": [meta] }));
        entry.send_all(&diff(topic, joins, Map::new()), Audience::Everyone, None);
    }

    /// Sends the topic's presences to `conn` without tracking it (customers watching agents online).
    pub fn push_state(&self, topic: &str, conn: ConnId) {
        let topics = self.topics();
        let Some(entry) = topics.get(topic) else { return };
        let Some(member) = entry.members.get(&conn) else { return };
        let state = encode(Some(&member.join_ref), None, topic, "presence_state", &entry.state());
        member.outbox.send(ByteString::from(state));
    }

    /// Presence keys in `topic` (for tests and "agents online").
    pub fn present(&self, topic: &str) -> Vec<String> {
        self.topics()
            .get(topic)
            .map(|t| t.presence.keys().cloned().collect())
            .unwrap_or_default()
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
