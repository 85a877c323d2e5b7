//! The socket's actions: what a pushed event does, through the application layer.

use netia_events::conversation::{Author, MessageFormat};
use netia_events::user::Role;
use netia_events::{ConversationId, CustomerId, UserId};
use serde_json::{Value, json};

use super::{BROADCAST_WAIT, Caller, Connection};
use crate::app::AppError;
use crate::app::conversations::{NewMessage, PostError, ReadBack, ensure_in_account, post_message};
use crate::command_bus::CommandError;
use crate::realtime::protocol::{Frame, refuse, reply};
use crate::views::MessageView;
use netia_commands::ConversationError;

impl Connection {
    /// Tells the topic's other members whether this connection's person is typing.
    pub(super) fn broadcast_typing(&self, topic: &str, typing: bool) {
        let Some(conversation_id) = topic.strip_prefix("conversation:") else {
            return;
        };
        let mut payload = json!({ "typing": typing, "conversation_id": conversation_id });
        match &self.caller {
            Caller::Agent { user_id, .. } => payload["user_id"] = json!(user_id),
            Caller::Customer { customer_id, .. } => payload["customer_id"] = json!(customer_id),
        }
        self.hub.broadcast_ephemeral(topic, "typing", &payload, Some(self.id));
    }

    /// Ends this connection's typing on `topic`, if it was typing there: ephemeral state does not
    /// outlive its owner's presence (a closed tab never sends `typing: false` itself).
    pub(super) fn stop_typing(&mut self, topic: &str) {
        if self.typing.remove(topic) {
            self.broadcast_typing(topic, false);
        }
    }

    /// Saves a message, lets its broadcast go out, then replies with the saved message.
    pub(super) async fn shout(&self, frame: &Frame, id: ConversationId) {
        let body = match frame.payload.get("body") {
            Some(Value::String(body)) => body.clone(),
            _ => return self.send(refuse(frame, "body must be a string")),
        };
        let client_message_id = match frame.payload.get("client_message_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(key)) => Some(key.clone()),
            Some(_) => return self.send(refuse(frame, "client_message_id must be a string")),
        };
        // As over REST: a note is only ever what was asked for, never a truthy guess ("yes", 1).
        let private = match frame.payload.get("private") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(private)) => *private,
            Some(_) => return self.send(refuse(frame, "private must be a boolean")),
        };
        let format = match frame.payload.get("format") {
            None | Some(Value::Null) => MessageFormat::Text,
            Some(format) => match serde_json::from_value::<MessageFormat>(format.clone()) {
                Ok(format) => format,
                Err(_) => return self.send(refuse(frame, "format must be \"text\" or \"markdown\"")),
            },
        };
        let author = match &self.caller {
            Caller::Agent { role, .. } if *role < Role::Member => {
                return self.send(refuse(frame, "viewers cannot send messages"));
            }
            Caller::Agent {
                user_id, account_id, ..
            } => {
                if let Err(e) = ensure_in_account(&self.services.app, *account_id, id).await {
                    return self.send(refuse(frame, &app_refusal(&e)));
                }
                Author::Agent { user_id: *user_id }
            }
            Caller::Customer { customer_id, .. } => {
                if frame.topic != format!("conversation:{id}") {
                    return self.send(refuse(frame, "unauthorized"));
                }
                Author::Customer {
                    customer_id: *customer_id,
                }
            }
        };
        let message = NewMessage {
            body,
            format,
            private,
            client_message_id,
            attachments: Vec::new(),
        };
        let started = std::time::Instant::now();
        let meta = self.caller.meta();
        // Posting reads and writes the database: under one of the node's places in flight (ADR
        // 0024), given back before waiting for the broadcast, which reads nothing.
        let Some(place) = self.services.limiter.in_flight().await else {
            return self.send(refuse(frame, UNAVAILABLE));
        };
        let posted = post_message(&self.services.app, id, author, message, &meta, ReadBack::Event).await;
        drop(place);
        match posted {
            Ok(posted) => {
                let saved_in = started.elapsed();
                if let Some(last) = posted.events.last() {
                    self.hub.broadcast_reached(last.checkpoint(), BROADCAST_WAIT).await;
                }
                tracing::debug!(
                    saved_us = saved_in.as_micros() as u64,
                    broadcast_us = started.elapsed().as_micros() as u64,
                    "shout"
                );
                self.send(reply(frame, true, &MessageView::from(&posted.message)));
            }
            Err(e) => self.send(refuse(frame, &post_refusal(&e))),
        }
    }

    pub(super) async fn mark_read(&self, frame: &Frame, id: ConversationId, user_id: UserId) {
        if let Err(e) = ensure_in_account(&self.services.app, self.caller.account_id(), id).await {
            return self.send(refuse(frame, &app_refusal(&e)));
        }
        let meta = self.caller.meta();
        match crate::app::conversations::mark_read(&self.services.app, id, user_id, &meta).await {
            Ok(_) => self.send(reply(frame, true, &json!({}))),
            Err(e) => self.send(refuse(frame, &command_refusal(&e))),
        }
    }

    /// The widget's `messages:seen`: its customer has seen everything so far.
    pub(super) async fn seen_by_customer(&self, frame: &Frame, id: ConversationId, customer_id: CustomerId) {
        let meta = self.caller.meta();
        match crate::app::conversations::seen_by_customer(&self.services.app, id, customer_id, &meta).await {
            Ok(_) => self.send(reply(frame, true, &json!({}))),
            Err(e) => self.send(refuse(frame, &command_refusal(&e))),
        }
    }
}

/// The reason of a refusal the client may try again (the database is away).
const UNAVAILABLE: &str = "unavailable";

/// What a client is told of a use case's failure: the rule or conflict that refused it, never a
/// database or log error: "unavailable" while the database is away (try again), otherwise
/// "internal error" (logged here).
fn app_refusal(e: &AppError) -> String {
    match e {
        AppError::NotFound(_) | AppError::NotReadableYet(_) => e.to_string(),
        other if crate::store::unavailable_in(other) => UNAVAILABLE.to_owned(),
        other => {
            tracing::error!(error = %other, "socket action failed");
            "internal error".to_owned()
        }
    }
}

fn command_refusal(e: &CommandError<ConversationError>) -> String {
    match e {
        CommandError::Domain(_) | CommandError::Conflict { .. } => e.to_string(),
        CommandError::Store(store) if crate::store::unavailable_in(store) => UNAVAILABLE.to_owned(),
        other if crate::store::unavailable_in(other) => UNAVAILABLE.to_owned(),
        other if crate::store::unstorable_text_in(other) => UNSTORABLE_TEXT.to_owned(),
        other if crate::store::subject_erased_in(other) => "the customer was erased".to_owned(),
        other => {
            tracing::error!(error = %other, "socket action failed");
            "internal error".to_owned()
        }
    }
}

/// The reason of a refusal of a text PostgreSQL cannot store (see [`crate::store::unstorable_text_in`]).
const UNSTORABLE_TEXT: &str = "text must not contain the NUL character (U+0000)";

fn post_refusal(e: &PostError) -> String {
    match e {
        PostError::Refused(e) => command_refusal(e),
        PostError::App(e) => app_refusal(e),
    }
}
