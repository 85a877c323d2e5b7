//! The socket's protocol router: joins (who may join which topic), leaves, and which pushed event
//! goes to which action.

use netia_commands::Conversation;
use netia_events::ConversationId;
use netia_events::user::Role;
use serde_json::{Value, json};

use super::{Caller, Connection, MAX_CHANNELS, topics_joined};
use crate::realtime::protocol::{Frame, encode, refuse, reply};

impl Connection {
    pub(super) async fn handle(&mut self, frame: Frame) {
        if frame.topic == "phoenix" && frame.event == "heartbeat" {
            self.send(reply(&frame, true, &json!({})));
            return;
        }
        match frame.event.as_str() {
            "phx_join" => self.join(frame).await,
            "phx_leave" => self.leave(frame),
            _ => {
                let Some(current) = self.joined.get(&frame.topic) else {
                    let unmatched = Frame {
                        join_ref: None,
                        ..frame
                    };
                    self.send(refuse(&unmatched, "unmatched topic"));
                    return;
                };
                if frame.join_ref.as_ref().is_some_and(|j| j != current) {
                    return; // a push of an earlier join of this topic: ignored, as Phoenix does
                }
                self.handle_in(frame).await;
            }
        }
    }

    pub(super) async fn join(&mut self, frame: Frame) {
        let Some(join_ref) = frame.join_ref.clone().or_else(|| frame.reference.clone()) else {
            self.send(refuse(&frame, "join needs a ref"));
            return;
        };
        if let Some(old) = self.joined.remove(&frame.topic) {
            topics_joined(-1.0);
            self.stop_typing(&frame.topic);
            self.hub.leave(&frame.topic, self.id);
            self.send(encode(Some(&old), Some(&old), &frame.topic, "phx_close", &json!({})));
        }
        if self.joined.len() >= MAX_CHANNELS {
            self.send(refuse(&frame, "too many channels joined"));
            return;
        }
        // Authorizing a conversation's topic reads the database: under one of the node's places
        // in flight (ADR 0024). The account's topics are authorized from the token alone.
        let place = if frame.topic.starts_with("conversation:") {
            let Some(place) = self.services.limiter.in_flight().await else {
                self.send(refuse(&frame, "unavailable"));
                return;
            };
            Some(place)
        } else {
            None
        };
        let authorized = self.authorize(&frame.topic).await;
        drop(place);
        if let Err(reason) = authorized {
            self.send(refuse(&frame, reason));
            return;
        }
        self.hub.join(
            &frame.topic,
            self.id,
            &join_ref,
            self.caller.is_agent(),
            self.outbox.clone(),
        );
        self.joined.insert(frame.topic.clone(), join_ref);
        topics_joined(1.0);
        self.send(reply(&frame, true, &json!({})));
        let kind = frame.topic.split(':').next().unwrap_or_default();
        let (key, meta) = self.caller.presence();
        match (kind, &self.caller) {
            ("conversation", _) | ("notification" | "room", Caller::Agent { .. }) => {
                self.hub.track(&frame.topic, self.id, &key, meta);
            }
            ("room", Caller::Customer { .. }) => self.hub.push_availability(&frame.topic, self.id),
            _ => {}
        }
    }

    pub(super) fn leave(&mut self, frame: Frame) {
        self.stop_typing(&frame.topic);
        match self.joined.remove(&frame.topic) {
            Some(join_ref) => {
                topics_joined(-1.0);
                self.hub.leave(&frame.topic, self.id);
                self.send(reply(&frame, true, &json!({})));
                self.send(encode(
                    Some(&join_ref),
                    Some(&join_ref),
                    &frame.topic,
                    "phx_close",
                    &json!({}),
                ));
            }
            None => self.send(reply(&frame, true, &json!({}))),
        }
    }

    /// Whether the caller may join `topic`; the reason otherwise.
    pub(super) async fn authorize(&self, topic: &str) -> Result<(), &'static str> {
        let (kind, rest) = topic.split_once(':').ok_or("unmatched topic")?;
        let account = self.caller.account_id().to_string();
        match kind {
            "conversation" => {
                let id: ConversationId = rest.parse().map_err(|_| "unmatched topic")?;
                // One spelling per conversation (the hyphenated lower-case form, as every payload
                // and broadcast writes it): another spelling would be a topic of its own, which no
                // broadcast reaches.
                if id.to_string() != rest {
                    return Err("unmatched topic");
                }
                let (conversation, _) = self
                    .services
                    .app
                    .bus
                    .load::<Conversation>(id)
                    .await
                    .map_err(|_| "unavailable")?;
                let mine = match &self.caller {
                    Caller::Agent { account_id, .. } => conversation.account_id == Some(*account_id),
                    Caller::Customer {
                        customer_id,
                        account_id,
                    } => conversation.account_id == Some(*account_id) && conversation.customer_id == Some(*customer_id),
                };
                if mine { Ok(()) } else { Err("unauthorized") }
            }
            "notification" | "events" if self.caller.is_agent() && rest == account => Ok(()),
            "room" if rest == account => Ok(()),
            "notification" | "events" | "room" => Err("unauthorized"),
            _ => Err("unmatched topic"),
        }
    }

    pub(super) async fn handle_in(&mut self, frame: Frame) {
        let kind = frame.topic.split(':').next().unwrap_or_default().to_owned();
        match (kind.as_str(), frame.event.as_str()) {
            (_, "ping") => self.send(reply(&frame, true, &frame.payload)),
            ("conversation", "shout") => {
                // The message is what the typing was for.
                self.stop_typing(&frame.topic);
                let id = frame.topic["conversation:".len()..].parse();
                match id {
                    Ok(id) => self.shout(&frame, id).await,
                    Err(_) => self.send(refuse(&frame, "unmatched topic")),
                }
            }
            ("conversation", "typing") => {
                let typing = match frame.payload.get("typing") {
                    None | Some(Value::Null) => true,
                    Some(Value::Bool(typing)) => *typing,
                    Some(_) => return self.send(refuse(&frame, "typing must be a boolean")),
                };
                // A viewer cannot write to the customer, so it has nothing to be seen typing.
                if matches!(&self.caller, Caller::Agent { role, .. } if *role < Role::Member) {
                    return self.send(refuse(&frame, "viewers cannot send messages"));
                }
                if typing {
                    self.typing.insert(frame.topic.clone());
                } else {
                    self.typing.remove(&frame.topic);
                }
                self.broadcast_typing(&frame.topic, typing);
            }
            ("conversation", "messages:seen") => {
                let id: Option<ConversationId> = frame.topic["conversation:".len()..].parse().ok();
                match (&self.caller, id) {
                    (Caller::Agent { user_id, .. }, Some(id)) => self.mark_read(&frame, id, *user_id).await,
                    (Caller::Customer { customer_id, .. }, Some(id)) => {
                        self.seen_by_customer(&frame, id, *customer_id).await;
                    }
                    _ => self.send(refuse(&frame, "unmatched topic")),
                }
            }
            ("notification", "shout") => {
                let id = frame
                    .payload
                    .get("conversation_id")
                    .and_then(Value::as_str)
                    .map(str::parse);
                match id {
                    Some(Ok(id)) => self.shout(&frame, id).await,
                    _ => self.send(refuse(&frame, "conversation_id must be a conversation id")),
                }
            }
            ("notification", "read") => {
                let id = frame
                    .payload
                    .get("conversation_id")
                    .and_then(Value::as_str)
                    .map(str::parse);
                match (&self.caller, id) {
                    (Caller::Agent { user_id, .. }, Some(Ok(id))) => self.mark_read(&frame, id, *user_id).await,
                    _ => self.send(refuse(&frame, "conversation_id must be a conversation id")),
                }
            }
            _ => self.send(refuse(&frame, "unknown event")),
        }
    }
}
