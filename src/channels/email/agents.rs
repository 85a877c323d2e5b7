//! Agents hear about customers' messages by email when nobody is there to see them (the seed's
//! notification worker; Papercups' new-message alerts). A customer's message (chat, email or SMS)
//! schedules an `agent_notification` job `AGENT_NOTIFY_DELAY` later, one per conversation per
//! window of that length. The job finds the customer's messages since the last agent reply that
//! no agent was emailed yet; if no agent of the account is online then (room presence, as the
//! log records it), each agent and admin whose new-conversation emails are on (`PUT
//! /api/me/notifications`, on by default) gets one email with the messages and a link to the
//! conversation, and `AgentsNotified` records which messages went to whom: a message is never
//! emailed twice. A crash between the sends and the record sends them again (at least once).

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use netia_commands::{Conversation, ConversationCommand, Customer, User};
use netia_events::conversation::ConversationEvent;
use netia_events::user::Role;
use netia_events::{ConversationId, DomainEvent, MessageId, Metadata, RecordedEvent, StreamRef, UserId};
use serde_json::{Value, json};

use crate::app::App;
use crate::bus::{Consumer, Failure};
use crate::email::{EmailError, EmailSettings};
use crate::scheduler::{JobError, JobHandler, schedule};
use crate::store::StreamBound;

pub const JOB: &str = "agent_notification";

/// Schedules the notification job of each customer message.
pub struct AgentNotifyScheduler {
    pub db: sqlx::AnyPool,
    pub delay: Duration,
}

/// The customer's own message an event carries, if it is one.
fn customer_message(decoded: &ConversationEvent) -> Option<(MessageId, &str)> {
    match decoded {
        ConversationEvent::CustomerMessagePosted(m) => Some((m.message_id, &m.body)),
        ConversationEvent::SmsMessageReceived(m) => Some((m.message_id, &m.body)),
        ConversationEvent::EmailMessageReceived(m) if m.author.is_customer() => Some((m.message_id, &m.body)),
        _ => None,
    }
}

#[async_trait]
impl Consumer for AgentNotifyScheduler {
    fn name(&self) -> &'static str {
        "agent_notify"
    }

    fn bindings(&self) -> Vec<String> {
        ["CustomerMessagePosted", "SmsMessageReceived", "EmailMessageReceived"]
            .iter()
            .map(|t| format!("conversation.{t}"))
            .collect()
    }

    /// One insert of a job keyed by conversation and window: taking an event over from a holder
    /// that died schedules nothing twice.
    fn claim_ttl(&self) -> std::time::Duration {
        crate::consumers::SCHEDULING_CLAIM_TTL
    }

    async fn handle(&self, event: &RecordedEvent) -> Result<(), Failure> {
        let decoded = ConversationEvent::decode(event).map_err(|e| Failure::Permanent(e.to_string()))?;
        if customer_message(&decoded).is_none() {
            return Ok(());
        }
        // One job per conversation per window: later messages of the window ride along.
        let window = self.delay.as_secs().max(1) as i64;
        let bucket = event.recorded_at.timestamp() / window;
        let delay = chrono::TimeDelta::from_std(self.delay).map_err(|e| Failure::Permanent(e.to_string()))?;
        schedule(
            &self.db,
            &format!("{JOB}:{}:{bucket}", event.stream_id),
            JOB,
            &json!({ "conversation_id": event.stream_id }),
            event.recorded_at + delay,
        )
        .await
        .map_err(|e| Failure::Retry(e.to_string()))
    }
}

/// Emails the agents when the job is due.
pub struct AgentNotificationJob {
    app: App,
    from: Mailbox,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl AgentNotificationJob {
    pub fn new(app: App, settings: &EmailSettings) -> Result<Self, EmailError> {
        Ok(Self {
            app,
            from: settings.from.clone(),
            transport: settings.transport()?,
        })
    }

    /// The customer's messages since the last agent reply that no agent was emailed.
    async fn unnotified(
        &self,
        id: ConversationId,
        conversation: &Conversation,
    ) -> Result<Vec<(MessageId, String)>, String> {
        let stream = StreamRef::new(ConversationEvent::STREAM_TYPE, id.to_string());
        let events = self
            .app
            .store
            .read_stream(&stream, StreamBound::All)
            .await
            .map_err(|e| e.to_string())?;
        let mut waiting = Vec::new();
        for event in &events {
            let Ok(decoded) = ConversationEvent::decode(event) else {
                continue;
            };
            if let Some((message_id, body)) = customer_message(&decoded) {
                if !conversation.agents_notified.contains(&message_id) {
                    waiting.push((message_id, body.to_owned()));
                }
            } else if crate::consumers::reply_of(&decoded).is_some() {
                waiting.clear(); // answered
            }
        }
        Ok(waiting)
    }

    /// The account's agents and admins who want the email, or `None` when one of them is online.
    async fn recipients(&self, account: &str) -> Result<Option<Vec<(UserId, Mailbox)>>, String> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT user_id FROM auth_credentials WHERE account_id = $1 ORDER BY user_id")
                .bind(account.to_owned())
                .fetch_all(&self.app.db)
                .await
                .map_err(|e| e.to_string())?;
        let mut recipients = Vec::new();
        for id in ids {
            let Ok(user_id) = id.parse::<UserId>() else { continue };
            let user = self.app.state_of::<User>(user_id).await.map_err(|e| e.to_string())?;
            if user.disabled || !matches!(user.role, Some(Role::Member | Role::Admin)) {
                continue;
            }
            if user.online {
                return Ok(None);
            }
            if user.no_new_conversation_emails {
                continue;
            }
            if let Ok(mailbox) = user.email.parse::<Mailbox>() {
                recipients.push((user_id, mailbox));
            }
        }
        Ok(Some(recipients))
    }

    async fn notify(&self, payload: &Value) -> Result<(), String> {
        let id: ConversationId = payload["conversation_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or("the job names no conversation")?;
        let conversation = self.app.state_of::<Conversation>(id).await.map_err(|e| e.to_string())?;
        let (Some(account_id), Some(customer_id)) = (conversation.account_id, conversation.customer_id) else {
            return Ok(());
        };
        let waiting = self.unnotified(id, &conversation).await?;
        if waiting.is_empty() {
            return Ok(());
        }
        let Some(recipients) = self.recipients(&account_id.to_string()).await? else {
            return Ok(()); // someone is there to see it
        };
        if recipients.is_empty() {
            return Ok(());
        }
        let customer = self
            .app
            .state_of::<Customer>(customer_id)
            .await
            .map_err(|e| e.to_string())?;
        let who = customer
            .identity
            .name
            .or(customer.identity.email)
            .or(customer.identity.phone)
            .unwrap_or_else(|| "A customer".to_owned());
        let mut body = format!("{who} wrote while no one was online:\n\n");
        for (_, text) in &waiting {
            body.push_str(text);
            body.push_str("\n\n---\n\n");
        }
        if let Some(base) = &self.app.public_url {
            body.push_str(&format!("Open the conversation: {base}/#conversation={id}\n"));
        }
        for (_, to) in &recipients {
            let message = Message::builder()
                .from(self.from.clone())
                .to(to.clone())
                .subject(format!("New message from {who}"))
                .header(ContentType::TEXT_PLAIN)
                .body(body.clone())
                .map_err(|e| e.to_string())?;
            self.transport.send(message).await.map_err(|e| format!("SMTP: {e}"))?;
        }
        let command = ConversationCommand::RecordAgentNotification {
            message_ids: waiting.iter().map(|(m, _)| *m).collect(),
            user_ids: recipients.iter().map(|(u, _)| *u).collect(),
            at: chrono::Utc::now(),
        };
        let meta = Metadata::system("agent_notify").with_account(account_id);
        self.app
            .bus
            .execute::<Conversation>(id, command, &meta)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// A failed notification, for the scheduler's retry.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct NotifyError(String);

#[async_trait]
impl JobHandler for AgentNotificationJob {
    fn kind(&self) -> &'static str {
        JOB
    }

    async fn run(&self, payload: &Value) -> Result<(), JobError> {
        self.notify(payload)
            .await
            .map_err(|e| JobError::handler(NotifyError(e)))
    }
}
