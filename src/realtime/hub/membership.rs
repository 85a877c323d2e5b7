//! Topics and their members: joining, leaving, and broadcasting to a topic's members, each with
//! one bounded, ordered outbox; a member whose outbox is full is told to close.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::Hub;
use super::outbox::{Outbox, WireFrame};
use super::presence::{Origin, Signal, diff};
use crate::realtime::protocol::encode;

pub type ConnId = u64;

/// Who receives a broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Everyone,
    /// Agents only (private notes).
    Agents,
    /// Customers only.
    Customers,
}

pub(super) struct Member {
    pub(super) join_ref: String,
    pub(super) agent: bool,
    pub(super) outbox: Outbox,
}

#[derive(Default)]
pub(super) struct Topic {
    /// By connection id: in the order the connections opened, which is the order broadcasts are
    /// written in.
    pub(super) members: BTreeMap<ConnId, Member>,
    /// key → metas (each with the connection it belongs to).
    pub(super) presence: BTreeMap<String, Vec<(Origin, Value)>>,
}

impl Topic {
    /// The outboxes of the members `audience` takes in, but `except`.
    fn audience(&self, audience: Audience, except: Option<ConnId>) -> impl Iterator<Item = &Outbox> {
        self.members.iter().filter_map(move |(id, member)| {
            let excluded = match audience {
                Audience::Everyone => false,
                Audience::Agents => !member.agent,
                Audience::Customers => member.agent,
            };
            (Some(*id) != except && !excluded).then_some(&member.outbox)
        })
    }

    /// Queues `frame` for the members `audience` takes in, but `except` (the hub's lock is held:
    /// their writers write it).
    pub(super) fn send_all(&self, frame: &WireFrame, audience: Audience, except: Option<ConnId>) -> usize {
        self.audience(audience, except)
            .filter(|outbox| outbox.queue_only(frame))
            .count()
    }

    /// Removes the presences `gone` selects, returning them as the `leaves` of a diff.
    pub(super) fn untrack(&mut self, gone: impl Fn(&str, &Origin, &Value) -> bool) -> Map<String, Value> {
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

    /// Distinct agents present (keys `user:…`).
    fn agents_present(&self) -> usize {
        self.presence.keys().filter(|key| key.starts_with("user:")).count()
    }

    /// What a customer may know of `room:<account>`: whether agents are online, and how many —
    /// never who (`{"online": bool, "agents": n}`, event `availability`).
    fn availability(&self, topic: &str, join_ref: Option<&str>) -> WireFrame {
        let agents = self.agents_present();
        WireFrame::text(encode(
            join_ref,
            None,
            topic,
            "availability",
            &json!({"online": agents > 0, "agents": agents}),
        ))
    }

    /// Tells the topic's members of a presence change: the `presence_diff` to everyone, except on
    /// `room:` topics (an account's agents), where customers get [`Topic::availability`] instead.
    pub(super) fn send_presence(&self, topic: &str, joins: Map<String, Value>, leaves: Map<String, Value>) {
        if topic.starts_with("room:") {
            self.send_all(&diff(topic, joins, leaves), Audience::Agents, None);
            self.send_all(&self.availability(topic, None), Audience::Customers, None);
        } else {
            self.send_all(&diff(topic, joins, leaves), Audience::Everyone, None);
        }
    }

    pub(super) fn state(&self) -> Value {
        let mut state = Map::new();
        for (key, metas) in &self.presence {
            let metas: Vec<&Value> = metas.iter().map(|(_, meta)| meta).collect();
            state.insert(key.clone(), json!({ "metas": metas }));
        }
        Value::Object(state)
    }
}

impl Hub {
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
            entry.send_presence(topic, Map::new(), leaves);
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

    /// Sends one frame to every member of `topic` (but `except`), encoded once; returns how many
    /// took it.
    pub fn broadcast<P: serde::Serialize + ?Sized>(
        &self,
        topic: &str,
        event: &str,
        payload: &P,
        audience: Audience,
        except: Option<ConnId>,
    ) -> usize {
        let members: Vec<Outbox> = {
            let topics = self.topics();
            let Some(entry) = topics.get(topic) else { return 0 };
            entry.audience(audience, except).cloned().collect()
        };
        // Written from here, outside the hub's lock: one system call per member, no task woken.
        let frame = WireFrame::text(encode(None, None, topic, event, payload));
        members.iter().filter(|outbox| outbox.send(&frame)).count()
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

    /// Sends `conn` (a customer in `room:<account>`, not tracked) whether agents are online, and
    /// how many; it is told again whenever that changes.
    pub fn push_availability(&self, topic: &str, conn: ConnId) {
        let topics = self.topics();
        let Some(entry) = topics.get(topic) else { return };
        let Some(member) = entry.members.get(&conn) else { return };
        member
            .outbox
            .queue_only(&entry.availability(topic, Some(&member.join_ref)));
    }
}
