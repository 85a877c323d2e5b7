//! A stream's history for auditors: who did what, when, in version order, from the log alone.

use chrono::{DateTime, Utc};
use netia_events::conversation::ConversationEvent;
use netia_events::{Actor, DomainEvent, EventError, RecordedEvent};
use serde::Serialize;

/// One line of history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub position: i64,
    pub version: i64,
    pub event_id: uuid::Uuid,
    pub at: DateTime<Utc>,
    /// Who caused it; `None` when the metadata names no actor (older or foreign events).
    pub actor: Option<Actor>,
    pub event_type: String,
    pub summary: String,
    /// The event this one was written because of, if any (a bot reply: the customer message).
    pub causation_id: Option<uuid::Uuid>,
    /// The chain it belongs to: the request that started it, or its first event.
    pub correlation_id: Option<uuid::Uuid>,
}

/// The history of one stream's events. Conversation events are decoded (so an unknown or malformed
/// event is an error naming its position); other streams are listed by type.
pub fn history(events: &[RecordedEvent]) -> Result<Vec<HistoryEntry>, EventError> {
    events.iter().map(entry).collect()
}

fn entry(event: &RecordedEvent) -> Result<HistoryEntry, EventError> {
    let summary = if event.stream_type == ConversationEvent::STREAM_TYPE {
        summarize(&ConversationEvent::decode(event)?)
    } else {
        event.event_type.clone()
    };
    Ok(HistoryEntry {
        position: event.global_position,
        version: event.version,
        event_id: event.event_id,
        at: event.recorded_at,
        actor: event
            .metadata
            .get("actor")
            .and_then(|a| serde_json::from_value(a.clone()).ok()),
        event_type: event.event_type.clone(),
        summary,
        causation_id: id_in(&event.metadata, "causation_id"),
        correlation_id: id_in(&event.metadata, "correlation_id"),
    })
}

fn id_in(metadata: &serde_json::Value, key: &str) -> Option<uuid::Uuid> {
    metadata.get(key).and_then(|v| v.as_str()).and_then(|v| v.parse().ok())
}

fn summarize(event: &ConversationEvent) -> String {
    let summary = summary(event);
    // A message of an erased customer (ADR 0023) says so.
    match message_body(event) {
        Some(netia_events::personal::ERASED) => format!("{summary}: {}", netia_events::personal::ERASED),
        _ => summary,
    }
}

fn summary(event: &ConversationEvent) -> String {
    use ConversationEvent::*;
    match event {
        ConversationCreated(e) => format!("conversation created ({:?})", e.source).to_lowercase(),
        CustomerMessagePosted(e) => format!("customer wrote {} characters", e.body.chars().count()),
        AgentMessagePosted(e) => format!("agent {} replied", e.user_id),
        PrivateNoteAdded(e) => format!("agent {} added a private note", e.user_id),
        BotMessagePosted(e) => format!("bot replied to event {}", e.trigger_event_id),
        EmailMessageReceived(_) => "email received".to_owned(),
        SlackMessageReceived(_) => "Slack message received".to_owned(),
        SmsMessageReceived(e) => format!("SMS received from {}", e.from_number),
        ConversationClosed(_) => "closed".to_owned(),
        ConversationReopened(e) => format!("reopened ({:?})", e.reason).to_lowercase(),
        ConversationSnoozed(e) => format!("snoozed until {}", e.until.to_rfc3339()),
        ConversationWoken(_) => "woke from snooze".to_owned(),
        PrioritySet(e) => format!("priority set to {:?}", e.priority).to_lowercase(),
        AgentAssigned(e) => match e.assignee {
            Some(user) => format!("assigned to {user}"),
            None => "unassigned".to_owned(),
        },
        ConversationTagged(e) => format!("tagged {:?}", e.tag),
        ConversationUntagged(e) => format!("untagged {:?}", e.tag),
        ConversationRead(e) => format!("read by {}", e.user_id),
        ConversationArchived(_) => "archived".to_owned(),
        HandedToHuman(e) => format!("handed to a person ({:?})", e.reason).to_lowercase(),
        SeenByCustomer(_) => "seen by the customer".to_owned(),
        EmailNotificationSent(e) => format!("{} replies emailed to the customer", e.message_ids.len()),
        SlackThreadStarted(e) => format!("mirrored in Slack channel {}", e.channel_id),
        SlackPostFailed(e) => format!("posting event {} to Slack failed", e.trigger_event_id),
        SmsSent(e) => format!("reply {} sent by SMS to {}", e.message_id, e.to_number),
        SmsStatusUpdated(e) => format!("SMS {} is {}", e.message_sid, e.status),
        SmsSendFailed(e) => format!("sending reply {} by SMS failed", e.message_id),
        EmailSendFailed(e) => format!("emailing reply {} failed", e.message_id),
        AgentsNotified(e) => format!(
            "{} messages emailed to {} agents",
            e.message_ids.len(),
            e.user_ids.len()
        ),
    }
}

/// The text of a message event (`None` for other events).
fn message_body(event: &ConversationEvent) -> Option<&str> {
    use ConversationEvent::*;
    match event {
        CustomerMessagePosted(e) => Some(&e.body),
        AgentMessagePosted(e) => Some(&e.body),
        PrivateNoteAdded(e) => Some(&e.body),
        BotMessagePosted(e) => Some(&e.body),
        EmailMessageReceived(e) => Some(&e.body),
        SlackMessageReceived(e) => Some(&e.body),
        SmsMessageReceived(e) => Some(&e.body),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn recorded(position: i64, event_type: &str, payload: serde_json::Value) -> RecordedEvent {
        RecordedEvent {
            global_position: position,
            tx_id: position as u64,
            event_id: uuid::Uuid::nil(),
            stream_type: "conversation".into(),
            stream_id: "c".into(),
            version: position,
            event_type: event_type.into(),
            event_version: 1,
            payload,
            metadata: json!({"actor": {"kind": "system", "component": "scheduler"}}),
            recorded_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            hash: vec![0; 32],
            decoded: Default::default(),
        }
    }

    #[test]
    fn lists_who_did_what_when() {
        let lines = history(&[
            recorded(1, "ConversationClosed", json!({"closed_at": "2026-01-01T00:00:00Z"})),
            recorded(2, "ConversationTagged", json!({"tag": "billing"})),
        ])
        .unwrap();
        assert_eq!(lines[0].summary, "closed");
        assert_eq!(lines[1].summary, "tagged \"billing\"");
        assert_eq!(
            lines[0].actor,
            Some(Actor::System {
                component: "scheduler".into()
            })
        );
    }

    #[test]
    fn an_unknown_event_is_an_error_at_its_position() {
        let err = history(&[recorded(7, "Teleported", json!({}))]).unwrap_err();
        assert_eq!(err.position, 7);
    }
}
