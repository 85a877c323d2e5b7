//! Turns committed events into socket broadcasts. It tails the log (from its head at start), so a
//! message posted through any node or any path — socket, REST, bot, channel — reaches every socket
//! of every node, in log order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use netia_events::conversation::ConversationEvent;
use netia_events::customer::CustomerEvent;
use netia_events::user::UserEvent;
use netia_events::{Checkpoint, DomainEvent, RecordedEvent};
use netia_projections::{ConversationProjection, message_row_of};
use serde_json::{Value, json};
use sqlx::AnyPool;
use tokio::sync::watch;

use super::hub::{Audience, Hub, Person};
use crate::store::EventStore;
use crate::tail::Tailer;
use crate::views::MessageView;

/// Conversations whose account is remembered (beyond that the cache starts over).
const REMEMBERED: usize = 100_000;
/// Attempts at broadcasting one event whose account lookup fails on the database, and the pause
/// between them (5 s in all: a PostgreSQL restart is over well within that).
const REPUBLISH_ATTEMPTS: u32 = 20;
const REPUBLISH_PAUSE: Duration = Duration::from_millis(250);

pub struct Broadcaster {
    store: Arc<dyn EventStore>,
    db: AnyPool,
    hub: Arc<Hub>,
    accounts: HashMap<String, String>,
}

impl Broadcaster {
    pub fn new(store: Arc<dyn EventStore>, db: AnyPool, hub: Arc<Hub>) -> Self {
        Self {
            store,
            db,
            hub,
            accounts: HashMap::new(),
        }
    }

    /// Follows the log from `start` (the head when the node started, read before it accepts
    /// requests, so that nothing written through it can fall before the start; read here if it
    /// could not be) until `stop` turns true.
    pub async fn run(mut self, start: Option<Checkpoint>, mut stop: watch::Receiver<bool>) {
        let start = loop {
            if let Some(start) = start {
                break start;
            }
            match self.store.head().await {
                Ok(head) => break head,
                Err(e) => {
                    tracing::warn!(error = %e, "broadcaster cannot read the log head; retrying");
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        self.hub.broadcast_done(start);
        let mut tailer = Tailer::new(self.store.clone(), start).with_batch(500);
        loop {
            let batch = tokio::select! {
                _ = stop.changed() => return,
                batch = tailer.next_batch() => batch,
            };
            match batch {
                Ok(events) => {
                    for event in &events {
                        if self.publish_retrying(event, &mut stop).await {
                            return;
                        }
                    }
                    if let Some(last) = events.last() {
                        self.hub.broadcast_done(last.checkpoint());
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "broadcaster cannot read the log; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Publishes `event`; a database error (the account lookup, with PostgreSQL restarting) is
    /// tried again every [`REPUBLISH_PAUSE`] for up to [`REPUBLISH_ATTEMPTS`] attempts before the
    /// event is skipped (live sockets then miss it; clients catch up from the API when they
    /// rejoin). True if `stop` turned true meanwhile.
    async fn publish_retrying(&mut self, event: &RecordedEvent, stop: &mut watch::Receiver<bool>) -> bool {
        for attempt in 1..=REPUBLISH_ATTEMPTS {
            match self.publish(event).await {
                Ok(()) => return false,
                Err(e) if attempt < REPUBLISH_ATTEMPTS && crate::store::unavailable_in(e.as_ref()) => {
                    tracing::debug!(position = event.global_position, error = %e, "broadcast waits for the database");
                    tokio::select! {
                        _ = stop.changed() => return true,
                        () = tokio::time::sleep(REPUBLISH_PAUSE) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(position = event.global_position, error = %e, "event not broadcast");
                    return false;
                }
            }
        }
        false
    }

    async fn account_of(&mut self, event: &RecordedEvent) -> Result<Option<String>, anyhow::Error> {
        if let Some(account) = event.metadata.get("account_id").and_then(Value::as_str) {
            return Ok(Some(account.to_owned()));
        }
        if let Some(account) = self.accounts.get(&event.stream_id) {
            return Ok(Some(account.clone()));
        }
        let mut conn = self.db.acquire().await?;
        let id = event.stream_id.parse()?;
        let account = ConversationProjection::account_of(&mut conn, id).await?;
        if let Some(account) = &account {
            self.remember(&event.stream_id, account);
        }
        Ok(account)
    }

    fn remember(&mut self, conversation: &str, account: &str) {
        if self.accounts.len() >= REMEMBERED {
            self.accounts.clear();
        }
        self.accounts.insert(conversation.to_owned(), account.to_owned());
    }

    /// Revocations close the sockets they concern: a user disabled or given another role (they
    /// reconnect with what they may do now, if anything), a session ended, a customer deleted or erased.
    fn revocations(&self, event: &RecordedEvent) {
        let closed = match (event.stream_type.as_str(), event.event_type.as_str()) {
            (UserEvent::STREAM_TYPE, "UserDisabled" | "UserRoleChanged") => event
                .stream_id
                .parse()
                .map_or(0, |user| self.hub.revoke_person(Person::Agent(user))),
            (UserEvent::STREAM_TYPE, "SessionEnded") => match UserEvent::decode(event) {
                Ok(UserEvent::SessionEnded(ended)) => self.hub.revoke_session(&ended.token_id),
                _ => 0,
            },
            (CustomerEvent::STREAM_TYPE, "CustomerDeleted" | "CustomerErased") => event
                .stream_id
                .parse()
                .map_or(0, |customer| self.hub.revoke_person(Person::Customer(customer))),
            _ => 0,
        };
        if closed > 0 {
            tracing::info!(event = %event.event_type, stream = %event.stream_id, closed, "sockets closed: credentials revoked");
        }
    }

    /// Someone recorded offline who is still connected here is recorded online again.
    fn presence(&self, event: &RecordedEvent) {
        let person = match (event.stream_type.as_str(), event.event_type.as_str()) {
            (UserEvent::STREAM_TYPE, "AgentWentOffline") => event.stream_id.parse().ok().map(Person::Agent),
            (CustomerEvent::STREAM_TYPE, "CustomerWentOffline") => event.stream_id.parse().ok().map(Person::Customer),
            _ => None,
        };
        if let Some(person) = person {
            self.hub.went_offline(person);
        }
    }

    async fn publish(&mut self, event: &RecordedEvent) -> Result<(), anyhow::Error> {
        use ConversationEvent::*;
        if event.stream_type != ConversationEvent::STREAM_TYPE {
            self.revocations(event);
            self.presence(event);
            return Ok(());
        }
        let decoded = ConversationEvent::decode(event)?;
        if let ConversationCreated(e) = &decoded {
            self.remember(&event.stream_id, &e.account_id.to_string());
        }
        let Some(account) = self.account_of(event).await? else {
            return Ok(());
        };
        let id = event.stream_id.as_str();
        let conversation_topic = format!("conversation:{id}");
        let notification = format!("notification:{account}");
        if let Some(message) = message_row_of(&decoded, event, &account) {
            let private = message.private != 0;
            let payload = MessageView::from(&message);
            let audience = if private { Audience::Agents } else { Audience::Everyone };
            self.hub
                .broadcast(&conversation_topic, "shout", &payload, audience, None);
            self.hub
                .broadcast(&notification, "shout", &payload, Audience::Agents, None);
            return Ok(());
        }
        let updates = match &decoded {
            ConversationCreated(e) => {
                let created = json!({
                    "id": id, "account_id": account, "customer_id": e.customer_id, "inbox_id": e.inbox_id,
                    "source": e.source, "subject": e.subject, "status": "open", "created_at": e.created_at,
                });
                self.hub
                    .broadcast(&notification, "conversation:created", &created, Audience::Agents, None);
                return Ok(());
            }
            SlackPostFailed(e) => {
                let notice = json!({
                    "type": "slack_post_failed", "conversation_id": id, "trigger_event_id": e.trigger_event_id,
                    "error": e.error, "at": event.recorded_at,
                });
                self.hub
                    .broadcast(&format!("events:{account}"), "event", &notice, Audience::Agents, None);
                return Ok(());
            }
            SmsSendFailed(_) | EmailSendFailed(_) => {
                let (kind, trigger, message, error) = match &decoded {
                    SmsSendFailed(e) => ("sms_send_failed", e.trigger_event_id, e.message_id, &e.error),
                    EmailSendFailed(e) => ("email_send_failed", e.trigger_event_id, e.message_id, &e.error),
                    _ => unreachable!(),
                };
                let notice = json!({
                    "type": kind, "conversation_id": id, "trigger_event_id": trigger,
                    "message_id": message, "error": error, "at": event.recorded_at,
                });
                self.hub
                    .broadcast(&format!("events:{account}"), "event", &notice, Audience::Agents, None);
                return Ok(());
            }
            SmsStatusUpdated(e) => {
                let status = json!({"id": e.message_id, "conversation_id": id, "delivery_status": e.status});
                self.hub
                    .broadcast(&conversation_topic, "message:status", &status, Audience::Agents, None);
                return Ok(());
            }
            ConversationRead(e) => {
                let read = json!({"conversation_id": id, "user_id": e.user_id});
                self.hub.broadcast(&notification, "read", &read, Audience::Agents, None);
                // The customer learns that their messages were seen, not by whom: every message
                // before this event's version (the widget's "Seen").
                let seen =
                    json!({"conversation_id": id, "before_version": event.version, "seen_at": event.recorded_at});
                self.hub
                    .broadcast(&conversation_topic, "messages:seen", &seen, Audience::Everyone, None);
                return Ok(());
            }
            ConversationClosed(_) => json!({"status": "closed"}),
            ConversationReopened(_) | ConversationWoken(_) => json!({"status": "open"}),
            ConversationSnoozed(e) => json!({"status": "snoozed", "snoozed_until": e.until}),
            PrioritySet(e) => json!({ "priority": e.priority }),
            AgentAssigned(e) => json!({ "assignee_id": e.assignee }),
            ConversationTagged(e) => json!({ "tag_added": e.tag }),
            ConversationUntagged(e) => json!({ "tag_removed": e.tag }),
            ConversationArchived(_) => json!({"archived": true}),
            HandedToHuman(e) => json!({"handed_to_human": true, "handoff_reason": e.reason}),
            _ => return Ok(()),
        };
        let updated = json!({"id": id, "updates": updates});
        self.hub
            .broadcast(&notification, "conversation:updated", &updated, Audience::Agents, None);
        self.hub.broadcast(
            &conversation_topic,
            "conversation:updated",
            &updated,
            Audience::Agents,
            None,
        );
        let actor = event.metadata.get("actor").cloned().unwrap_or(Value::Null);
        let system = json!({
            "type": "conversation:updated", "conversation_id": id, "updates": updates,
            "actor": actor, "at": event.recorded_at,
        });
        self.hub
            .broadcast(&format!("events:{account}"), "event", &system, Audience::Agents, None);
        Ok(())
    }
}
