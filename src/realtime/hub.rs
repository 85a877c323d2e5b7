//! Who is listening to what, on this node: topics, their members (one bounded, ordered outbox per
//! connection) and their presences. Broadcasts are serialized once and shared by every member; a
//! member whose outbox is full is disconnected rather than allowed to slow the others.
//!
//! Presences span nodes: every local track, untrack, connection and ephemeral broadcast is also
//! handed to the cluster link ([`super::cluster`]), and what other nodes send is applied here with
//! [`Hub::apply`], so `presence_state` and `presence_diff` show everyone, wherever connected.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use netia_events::Checkpoint;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, mpsc, watch};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use uuid::Uuid;

use super::protocol::encode;

pub type ConnId = u64;

/// Frames queued for one connection, in send order.
pub const OUTBOX: usize = 1_024;

/// A connection's outbound queue, and the signal that closes it.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Utf8Bytes>,
    kill: Arc<Notify>,
}

impl Outbox {
    pub fn new() -> (Outbox, mpsc::Receiver<Utf8Bytes>, Arc<Notify>) {
        let (tx, rx) = mpsc::channel(OUTBOX);
        let kill = Arc::new(Notify::new());
        (Outbox { tx, kill: kill.clone() }, rx, kill)
    }

    /// Queues a frame; a full queue means a consumer too slow to keep: it is told to close.
    pub fn send(&self, frame: Utf8Bytes) -> bool {
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

/// Which connection of which node a presence belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Origin {
    pub node: Uuid,
    pub conn: ConnId,
}

/// One tracked presence, as nodes tell each other about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tracked {
    pub topic: String,
    pub conn: ConnId,
    pub key: String,
    pub meta: Value,
}

/// What a node tells the others (see [`super::cluster`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "signal", rename_all = "snake_case")]
pub enum Signal {
    /// "I am alive."
    Heartbeat,
    /// "Everyone, send me your whole state."
    Resync,
    /// Everything the sender has: it replaces what was known of that node.
    State {
        presences: Vec<Tracked>,
        people: Vec<Person>,
    },
    Track(Tracked),
    Untrack {
        topic: String,
        conn: ConnId,
    },
    /// A person's first connection to the sender opened (`true`) or its last one closed.
    Person {
        person: Person,
        online: bool,
    },
    /// An ephemeral push (typing) for the members of `topic` on other nodes.
    Broadcast {
        topic: String,
        event: String,
        payload: Value,
    },
}

#[derive(Default)]
struct Topic {
    members: HashMap<ConnId, Member>,
    /// key → metas (each with the connection it belongs to).
    presence: BTreeMap<String, Vec<(Origin, Value)>>,
}

impl Topic {
    fn send_all(&self, frame: &Utf8Bytes, audience: Audience, except: Option<ConnId>) -> usize {
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

    /// Removes the presences `gone` selects, returning them as the `leaves` of a diff.
    fn untrack(&mut self, gone: impl Fn(&str, &Origin, &Value) -> bool) -> Map<String, Value> {
        let mut leaves = Map::new();
        self.presence.retain(|key, metas| {
            let (left, kept): (Vec<_>, Vec<_>) = metas.drain(..).partition(|(origin, meta)| gone(key, origin, meta));
            if !left.is_empty() {
                let left: Vec<Value> = left.into_iter().map(|(_, meta)| meta).collect();
                leaves.insert(key.clone(), json!({ "metas": left }));
            }
            *metas = kept;
            !metas.is_empty()
        });
        leaves
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

fn diff(topic: &str, joins: Map<String, Value>, leaves: Map<String, Value>) -> Utf8Bytes {
    Utf8Bytes::from(encode(
        None,
        None,
        topic,
        "presence_diff",
        &json!({"joins": joins, "leaves": leaves}),
    ))
}

/// Someone connected to this node for the first time, or closed their last connection here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Person {
    Agent(netia_events::UserId),
    Customer(netia_events::CustomerId),
}

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

    fn record(&self, person: Person, online: bool) {
        if let Some(log) = &self.presence_log {
            let _ = log.send((person, online));
        }
    }

    fn people(&self) -> std::sync::MutexGuard<'_, HashMap<Person, usize>> {
        self.people.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remote_people(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, HashSet<Person>>> {
        self.remote_people.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `person` has a connection to this node.
    pub fn connected_here(&self, person: Person) -> bool {
        self.people().contains_key(&person)
    }

    fn connected_elsewhere(&self, person: Person) -> bool {
        self.remote_people().values().any(|people| people.contains(&person))
    }

    /// A connection of `person` opened (`true`) or closed. The first one here is recorded as
    /// "online"; the last one here as "offline" unless the person is connected to another node.
    pub fn connection(&self, person: Person, open: bool) {
        let changed = {
            let mut people = self.people();
            let count = people.entry(person).or_default();
            if open {
                *count += 1;
                *count == 1
            } else {
                *count = count.saturating_sub(1);
                let last = *count == 0;
                if last {
                    people.remove(&person);
                }
                last
            }
        };
        if changed {
            self.tell(Signal::Person { person, online: open });
            if open || !self.connected_elsewhere(person) {
                self.record(person, open);
            }
        }
    }

    /// The log says `person` went offline: if they are still connected here (another node, not
    /// yet knowing of this connection, recorded its own last close), they are online again.
    pub fn went_offline(&self, person: Person) {
        if self.connected_here(person) {
            self.record(person, true);
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
        let here = Origin { node: self.node, conn };
        let leaves = entry.untrack(|_, origin, _| *origin == here);
        if !leaves.is_empty() {
            entry.send_all(&diff(topic, Map::new(), leaves), Audience::Everyone, None);
            self.tell(Signal::Untrack {
                topic: topic.to_owned(),
                conn,
            });
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
    pub fn broadcast<P: serde::Serialize + ?Sized>(
        &self,
        topic: &str,
        event: &str,
        payload: &P,
        audience: Audience,
        except: Option<ConnId>,
    ) -> usize {
        let topics = self.topics();
        let Some(entry) = topics.get(topic) else { return 0 };
        let frame = Utf8Bytes::from(encode(None, None, topic, event, payload));
        entry.send_all(&frame, audience, except)
    }

    /// A push that is not stored (typing, a notice): to every member of `topic` on every node but
    /// `except` (the sender's own connection).
    pub fn broadcast_ephemeral(&self, topic: &str, event: &str, payload: &Value, except: Option<ConnId>) {
        self.broadcast(topic, event, payload, Audience::Everyone, except);
        self.tell(Signal::Broadcast {
            topic: topic.to_owned(),
            event: event.to_owned(),
            payload: payload.clone(),
        });
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
        let origin = Origin { node: self.node, conn };
        entry
            .presence
            .entry(key.to_owned())
            .or_default()
            .push((origin, meta.clone()));
        let state = encode(Some(&join_ref), None, topic, "presence_state", &entry.state());
        outbox.send(Utf8Bytes::from(state));
        let mut joins = Map::new();
        joins.insert(key.to_owned(), json!({ "metas": [meta.clone()] }));
        entry.send_all(&diff(topic, joins, Map::new()), Audience::Everyone, None);
        self.tell(Signal::Track(Tracked {
            topic: topic.to_owned(),
            conn,
            key: key.to_owned(),
            meta,
        }));
    }

    /// Everything this node tells a node that asks for its whole state.
    pub fn local_state(&self) -> Signal {
        let presences = self
            .topics()
            .iter()
            .flat_map(|(topic, entry)| {
                entry.presence.iter().flat_map(move |(key, metas)| {
                    metas
                        .iter()
                        .filter(|(origin, _)| origin.node == self.node)
                        .map(move |(origin, meta)| Tracked {
                            topic: topic.clone(),
                            conn: origin.conn,
                            key: key.clone(),
                            meta: meta.clone(),
                        })
                })
            })
            .collect();
        let people = self.people().keys().copied().collect();
        Signal::State { presences, people }
    }

    /// Applies what node `node` said.
    pub fn apply(&self, node: Uuid, signal: Signal) {
        match signal {
            Signal::Heartbeat | Signal::Resync => {}
            Signal::Track(tracked) => self.add_remote(node, vec![tracked]),
            Signal::Untrack { topic, conn } => {
                let origin = Origin { node, conn };
                self.remove_remote(Some(&topic), |o, _| *o == origin);
            }
            Signal::Person { person, online } => {
                let mut remote = self.remote_people();
                let people = remote.entry(node).or_default();
                if online {
                    people.insert(person);
                } else {
                    people.remove(&person);
                }
            }
            Signal::State { presences, people } => {
                let known: HashSet<(String, String, Value)> = presences
                    .iter()
                    .map(|t| (t.topic.clone(), t.key.clone(), t.meta.clone()))
                    .collect();
                // What the node no longer has leaves; what it has that is not known yet joins.
                self.remove_remote_where(|topic, key, origin, meta| {
                    origin.node == node && !known.contains(&(topic.to_owned(), key.to_owned(), meta.clone()))
                });
                let have: HashSet<(String, String, Value)> = self.presences_of(node).into_iter().collect();
                let new = presences
                    .into_iter()
                    .filter(|t| !have.contains(&(t.topic.clone(), t.key.clone(), t.meta.clone())))
                    .collect();
                self.add_remote(node, new);
                self.remote_people().insert(node, people.into_iter().collect());
            }
            Signal::Broadcast { topic, event, payload } => {
                self.broadcast(&topic, &event, &payload, Audience::Everyone, None);
            }
        }
    }

    /// Node `node` is gone: its presences leave, and the people connected only there go offline.
    pub fn drop_node(&self, node: Uuid) {
        self.remove_remote_where(|_, _, origin, _| origin.node == node);
        let people = self.remote_people().remove(&node).unwrap_or_default();
        for person in people {
            if !self.connected_here(person) && !self.connected_elsewhere(person) {
                self.record(person, false);
            }
        }
    }

    fn presences_of(&self, node: Uuid) -> Vec<(String, String, Value)> {
        let topics = self.topics();
        let mut found = Vec::new();
        for (topic, entry) in topics.iter() {
            for (key, metas) in &entry.presence {
                for (origin, meta) in metas {
                    if origin.node == node {
                        found.push((topic.clone(), key.clone(), meta.clone()));
                    }
                }
            }
        }
        found
    }

    fn add_remote(&self, node: Uuid, tracked: Vec<Tracked>) {
        let mut topics = self.topics();
        for Tracked { topic, conn, key, meta } in tracked {
            let entry = topics.entry(topic.clone()).or_default();
            entry
                .presence
                .entry(key.clone())
                .or_default()
                .push((Origin { node, conn }, meta.clone()));
            let mut joins = Map::new();
            joins.insert(key, json!({ "metas": [meta] }));
            entry.send_all(&diff(&topic, joins, Map::new()), Audience::Everyone, None);
        }
    }

    fn remove_remote(&self, topic: Option<&str>, gone: impl Fn(&Origin, &Value) -> bool) {
        self.remove_remote_where(|t, _, origin, meta| topic.is_none_or(|topic| topic == t) && gone(origin, meta));
    }

    /// Removes the remote presences `gone` selects (topic, key, origin, meta), sending the leaves.
    fn remove_remote_where(&self, gone: impl Fn(&str, &str, &Origin, &Value) -> bool) {
        let mut topics = self.topics();
        topics.retain(|topic, entry| {
            let leaves = entry.untrack(|key, origin, meta| origin.node != self.node && gone(topic, key, origin, meta));
            if !leaves.is_empty() {
                entry.send_all(&diff(topic, Map::new(), leaves), Audience::Everyone, None);
            }
            !(entry.members.is_empty() && entry.presence.is_empty())
        });
    }

    /// Sends the topic's presences to `conn` without tracking it (customers watching agents online).
    pub fn push_state(&self, topic: &str, conn: ConnId) {
        let topics = self.topics();
        let Some(entry) = topics.get(topic) else { return };
        let Some(member) = entry.members.get(&conn) else { return };
        let state = encode(Some(&member.join_ref), None, topic, "presence_state", &entry.state());
        member.outbox.send(Utf8Bytes::from(state));
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

#[cfg(test)]
mod tests {
    use super::*;
    use netia_events::{CustomerId, UserId};

    /// A hub whose signals, presence records and one member's frames the test can read.
    struct Node {
        hub: Hub,
        told: mpsc::UnboundedReceiver<Signal>,
        recorded: mpsc::UnboundedReceiver<(Person, bool)>,
    }

    fn node() -> Node {
        let (link, told) = mpsc::unbounded_channel();
        let (log, recorded) = mpsc::unbounded_channel();
        Node {
            hub: Hub::new().with_cluster(link).with_presence_log(log),
            told,
            recorded,
        }
    }

    impl Node {
        /// Hands what this node told so far to `other`.
        fn deliver_to(&mut self, other: &Node) {
            while let Ok(signal) = self.told.try_recv() {
                other.hub.apply(self.hub.node(), signal);
            }
        }

        fn member(&self, topic: &str, conn: ConnId) -> mpsc::Receiver<Utf8Bytes> {
            let (outbox, frames, _) = Outbox::new();
            self.hub.join(topic, conn, "1", true, outbox);
            frames
        }

        fn records(&mut self) -> Vec<(Person, bool)> {
            std::iter::from_fn(|| self.recorded.try_recv().ok()).collect()
        }
    }

    fn frames(rx: &mut mpsc::Receiver<Utf8Bytes>) -> Vec<Value> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|f| serde_json::from_str(&f).unwrap())
            .collect()
    }

    fn meta() -> Map<String, Value> {
        json!({"kind": "customer"}).as_object().unwrap().clone()
    }

    const TOPIC: &str = "conversation:c1";

    #[test]
    fn a_presence_tracked_on_one_node_joins_and_leaves_on_the_other() {
        let (mut a, b) = (node(), node());
        let mut watcher = b.member(TOPIC, 7);
        let _customer = a.member(TOPIC, 1);
        a.hub.track(TOPIC, 1, "customer:1", meta());
        a.deliver_to(&b);
        let seen = frames(&mut watcher);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0][3], "presence_diff");
        assert!(seen[0][4]["joins"]["customer:1"]["metas"][0]["phx_ref"].is_string());
        assert_eq!(b.hub.present(TOPIC), ["customer:1"]);

        // A joiner on B gets the remote presence in its state.
        let mut late = b.member(TOPIC, 8);
        b.hub.track(TOPIC, 8, "agent:1", meta());
        let state = frames(&mut late);
        assert_eq!(state[0][3], "presence_state");
        assert!(state[0][4].get("customer:1").is_some() && state[0][4].get("agent:1").is_some());

        a.hub.leave(TOPIC, 1);
        a.deliver_to(&b);
        let seen = frames(&mut watcher);
        let leave = seen.iter().find(|f| f[4]["leaves"].get("customer:1").is_some());
        assert!(leave.is_some(), "{seen:?}");
        assert_eq!(b.hub.present(TOPIC), ["agent:1"]);
    }

    #[test]
    fn a_whole_state_replaces_what_was_known_of_its_node() {
        let (mut a, b) = (node(), node());
        let _m = a.member(TOPIC, 1);
        a.hub.track(TOPIC, 1, "customer:1", meta());
        a.hub.track(TOPIC, 1, "customer:2", meta());
        a.deliver_to(&b);
        // B missed the untrack of customer:2, then gets A's whole state.
        a.hub.leave(TOPIC, 1);
        let _ = std::iter::from_fn(|| a.told.try_recv().ok()).count();
        let _m = a.member(TOPIC, 1);
        a.hub.track(TOPIC, 1, "customer:1", meta());
        let _ = std::iter::from_fn(|| a.told.try_recv().ok()).count();
        let mut watcher = b.member(TOPIC, 9);
        b.hub.apply(a.hub.node(), a.hub.local_state());
        assert_eq!(b.hub.present(TOPIC), ["customer:1"]);
        let seen = frames(&mut watcher);
        assert!(
            seen.iter().any(|f| f[4]["leaves"].get("customer:2").is_some()),
            "{seen:?}"
        );
        // Applying the same state twice changes nothing and sends nothing.
        b.hub.apply(a.hub.node(), a.hub.local_state());
        assert!(frames(&mut watcher).is_empty());
    }

    #[test]
    fn a_dead_node_takes_its_presences_and_only_its_people_offline() {
        let (mut a, mut b) = (node(), node());
        let only_a = Person::Customer(CustomerId::new());
        let on_both = Person::Agent(UserId::new());
        a.hub.connection(only_a, true);
        a.hub.connection(on_both, true);
        b.hub.connection(on_both, true);
        let _m = a.member(TOPIC, 1);
        a.hub.track(TOPIC, 1, "customer:1", meta());
        a.deliver_to(&b);
        let _ = b.records();
        let mut watcher = b.member(TOPIC, 9);

        b.hub.drop_node(a.hub.node());
        assert!(b.hub.present(TOPIC).is_empty());
        assert!(
            frames(&mut watcher)
                .iter()
                .any(|f| f[4]["leaves"].get("customer:1").is_some())
        );
        assert_eq!(b.records(), [(only_a, false)]);
    }

    #[test]
    fn the_last_close_on_one_node_is_not_offline_while_another_node_has_the_person() {
        let (mut a, mut b) = (node(), node());
        let agent = Person::Agent(UserId::new());
        a.hub.connection(agent, true);
        b.hub.connection(agent, true);
        b.deliver_to(&a);
        assert_eq!(a.records(), [(agent, true)]);
        a.hub.connection(agent, false);
        assert_eq!(a.records(), [], "still connected to B");
        a.deliver_to(&b);
        b.hub.connection(agent, false);
        assert_eq!(b.records(), [(agent, true), (agent, false)]);
    }

    #[test]
    fn an_offline_recorded_elsewhere_is_corrected_by_a_node_that_still_has_the_person() {
        let mut a = node();
        let customer = Person::Customer(CustomerId::new());
        a.hub.connection(customer, true);
        let _ = a.records();
        a.hub.went_offline(customer);
        assert_eq!(a.records(), [(customer, true)]);
        a.hub.connection(customer, false);
        let _ = a.records();
        a.hub.went_offline(customer);
        assert_eq!(a.records(), []);
    }

    #[test]
    fn typing_reaches_the_other_nodes_members_but_not_the_sender() {
        let (mut a, b) = (node(), node());
        let mut sender = a.member(TOPIC, 1);
        let mut local = a.member(TOPIC, 2);
        let mut remote = b.member(TOPIC, 3);
        a.hub
            .broadcast_ephemeral(TOPIC, "typing", &json!({"typing": true}), Some(1));
        a.deliver_to(&b);
        assert!(frames(&mut sender).is_empty());
        assert_eq!(frames(&mut local)[0][3], "typing");
        assert_eq!(frames(&mut remote)[0][3], "typing");
    }
}
