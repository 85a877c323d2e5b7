//! What a webhook says about an event of the log: the subscription event names it counts as, and
//! the body, in the API's own shapes (SPEC §2, Papercups' webhook payloads): a message as
//! `GET /api/conversations/:id/messages` shows it, a conversation as `GET /api/conversations/:id`,
//! a customer as `GET /api/customers/:id`. Read from the read models once they have applied the
//! event, so the body agrees with what the API answers.

use netia_events::RecordedEvent;
use netia_projections::{ConversationProjection, CustomerProjection, InboxProjection};
use serde_json::Value;

use crate::app::{App, AppError};
use crate::views::{ConversationView, CustomerView, MessageView};

/// The routing keys of the log events [`names_of`] names.
pub const BINDINGS: [&str; 18] = [
    "conversation.CustomerMessagePosted",
    "conversation.AgentMessagePosted",
    "conversation.PrivateNoteAdded",
    "conversation.BotMessagePosted",
    "conversation.EmailMessageReceived",
    "conversation.SlackMessageReceived",
    "conversation.SmsMessageReceived",
    "conversation.ConversationCreated",
    "conversation.ConversationClosed",
    "conversation.ConversationReopened",
    "conversation.ConversationSnoozed",
    "conversation.ConversationWoken",
    "conversation.PrioritySet",
    "conversation.AgentAssigned",
    "conversation.ConversationTagged",
    "conversation.ConversationUntagged",
    "conversation.ConversationArchived",
    "customer.CustomerCreated",
];

/// The subscription event names a log event counts as (none for most events); every event named
/// here has its routing key in [`BINDINGS`].
pub fn names_of(event: &RecordedEvent) -> &'static [&'static str] {
    match (event.stream_type.as_str(), event.event_type.as_str()) {
        (
            "conversation",
            "CustomerMessagePosted"
            | "AgentMessagePosted"
            | "PrivateNoteAdded"
            | "BotMessagePosted"
            | "EmailMessageReceived"
            | "SlackMessageReceived"
            | "SmsMessageReceived",
        ) => &["message:created"],
        ("conversation", "ConversationCreated") => &["conversation:created"],
        ("conversation", "ConversationClosed") => &["conversation:updated", "conversation:closed"],
        (
            "conversation",
            "ConversationReopened"
            | "ConversationSnoozed"
            | "ConversationWoken"
            | "PrioritySet"
            | "AgentAssigned"
            | "ConversationTagged"
            | "ConversationUntagged"
            | "ConversationArchived",
        ) => &["conversation:updated"],
        ("customer", "CustomerCreated") => &["customer:created"],
        _ => &[],
    }
}

/// Why a body could not be rendered yet.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The read model has not applied the event yet: try again later.
    #[error("the {0} read model has not applied the event yet")]
    Behind(&'static str),
    #[error(transparent)]
    App(#[from] AppError),
}

/// The body's `payload` for `name` caused by `event`; `None` when what it describes is gone (a
/// customer deleted before the webhook went out).
pub async fn render(app: &App, name: &str, event: &RecordedEvent) -> Result<Option<Value>, PayloadError> {
    let projection = match name {
        "message:created" => "conversation",
        "customer:created" => "customer",
        _ => "inbox",
    };
    let applied = app.applied(projection, std::slice::from_ref(event)).await;
    let mut conn = app.db.acquire().await.map_err(AppError::from)?;
    let rendered = match name {
        "message:created" => {
            let id = event
                .payload
                .get("message_id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            ConversationProjection::message(&mut conn, id)
                .await
                .map_err(AppError::from)?
                .map(|row| serde_json::to_value(MessageView::from(&row)))
        }
        "customer:created" => match event.stream_id.parse() {
            Ok(id) => CustomerProjection::get(&mut conn, id)
                .await
                .map_err(AppError::from)?
                .map(|row| serde_json::to_value(CustomerView::from(&row))),
            Err(_) => None,
        },
        _ => match event.stream_id.parse() {
            Ok(id) => InboxProjection::get(&mut conn, id)
                .await
                .map_err(AppError::from)?
                .map(|row| serde_json::to_value(ConversationView::from(&row))),
            Err(_) => None,
        },
    };
    match rendered {
        // A row the read model has not brought up to this event would describe an older state.
        _ if !applied => Err(PayloadError::Behind(projection)),
        Some(value) => Ok(Some(value.map_err(|e| AppError::Log(e.to_string()))?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bound_event_has_a_name() {
        for binding in BINDINGS {
            let (stream_type, event_type) = binding.split_once('.').unwrap();
            let event = RecordedEvent {
                global_position: 1,
                tx_id: 1,
                event_id: uuid::Uuid::nil(),
                stream_type: stream_type.to_owned(),
                stream_id: String::new(),
                version: 1,
                event_type: event_type.to_owned(),
                event_version: 1,
                payload: Value::Null,
                metadata: Value::Null,
                recorded_at: chrono::Utc::now(),
                hash: Vec::new(),
                decoded: Default::default(),
            };
            assert!(!names_of(&event).is_empty(), "{binding} has no webhook event");
        }
    }
}
