//! Presences: who is tracked in which topic, on this node and on the others (`presence_state`,
//! `presence_diff`), and the signals nodes exchange about them.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::Hub;
use super::membership::{Audience, ConnId};
use super::online::Person;
use super::outbox::WireFrame;
use crate::realtime::protocol::encode;

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

pub(super) fn diff(topic: &str, joins: Map<String, Value>, leaves: Map<String, Value>) -> WireFrame {
    WireFrame::text(encode(
        None,
        None,
        topic,
        "presence_diff",
        &json!({"joins": joins, "leaves": leaves}),
    ))
}

impl Hub {
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
        outbox.queue_only(&WireFrame::text(state));
        let mut joins = Map::new();
        joins.insert(key.to_owned(), json!({ "metas": [meta.clone()] }));
        entry.send_presence(topic, joins, Map::new());
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

    pub(super) fn presences_of(&self, node: Uuid) -> Vec<(String, String, Value)> {
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

    pub(super) fn add_remote(&self, node: Uuid, tracked: Vec<Tracked>) {
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
            entry.send_presence(&topic, joins, Map::new());
        }
    }

    pub(super) fn remove_remote(&self, topic: Option<&str>, gone: impl Fn(&Origin, &Value) -> bool) {
        self.remove_remote_where(|t, _, origin, meta| topic.is_none_or(|topic| topic == t) && gone(origin, meta));
    }

    /// Removes the remote presences `gone` selects (topic, key, origin, meta), sending the leaves.
    pub(super) fn remove_remote_where(&self, gone: impl Fn(&str, &str, &Origin, &Value) -> bool) {
        let mut topics = self.topics();
        topics.retain(|topic, entry| {
            let leaves = entry.untrack(|key, origin, meta| origin.node != self.node && gone(topic, key, origin, meta));
            if !leaves.is_empty() {
                entry.send_presence(topic, Map::new(), leaves);
            }
            !(entry.members.is_empty() && entry.presence.is_empty())
        });
    }

    /// Presence keys in `topic` (for tests and "agents online").
    pub fn present(&self, topic: &str) -> Vec<String> {
        self.topics()
            .get(topic)
            .map(|t| t.presence.keys().cloned().collect())
            .unwrap_or_default()
    }
}
