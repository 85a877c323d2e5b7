//! Reply emails (SPEC §6): when an agent replies and the customer, who has a verified email address
//! (vouched for by a `user_hash` or entered by an agent; see `app::verification`), has not
//! seen the reply `REPLY_EMAIL_DELAY` later, one email carries every reply they have not seen, sent
//! over SMTP (`SMTP_URL`, `EMAIL_FROM`) and recorded as `EmailNotificationSent`. Successive emails of
//! a conversation form one thread: each names the previous one's Message-ID in In-Reply-To and the
//! whole thread's in References (RFC 5322 §3.6.4).
//!
//! A consumer of `AgentMessagePosted` schedules a `reply_email` job at reply time + delay; the job
//! (run by the scheduler) decides from the conversation's stream what is still unseen. A crash between
//! the SMTP send and the event's append sends that email again (at least once).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::{ContentType, InReplyTo, References};
use lettre::message::{Mailbox, MessageBuilder};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use netia_commands::{
    Account, AccountError, Conversation, ConversationCommand, ConversationError, Customer, CustomerError,
};
use netia_events::conversation::ConversationEvent;
use netia_events::{Actor, ConversationId, DomainEvent, MessageId, Metadata, RecordedEvent, StreamRef};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sqlx::AnyPool;

use crate::bus::{Consumer, Failure};
use crate::command_bus::{CommandBus, CommandError};
use crate::scheduler::{JobError, JobHandler, schedule};
use crate::store::{EventStore, StoreError, StreamBound};

pub const JOB: &str = "reply_email";

/// Why a reply email could not be set up or sent.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    /// `SMTP_URL` is not an SMTP URL lettre understands.
    #[error("SMTP_URL: {0}")]
    SmtpUrl(#[source] lettre::transport::smtp::Error),
    /// The job's payload has no usable `conversation_id`.
    #[error("the job names no conversation")]
    NoConversation,
    #[error(transparent)]
    Conversation(#[from] CommandError<ConversationError>),
    #[error(transparent)]
    Customer(#[from] CommandError<CustomerError>),
    #[error(transparent)]
    Account(#[from] CommandError<AccountError>),
    /// Reading the conversation's stream.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("building the email: {0}")]
    Build(#[from] lettre::error::Error),
    /// The SMTP server refused the email or could not be reached.
    #[error("SMTP: {0}")]
    Smtp(#[source] lettre::transport::smtp::Error),
}

#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// `smtp://host:port` (plain), `smtp://host:587?tls=required` (STARTTLS) or `smtps://host:465`,
    /// with `user:password@` if the server wants a login.
    pub smtp_url: SecretString,
    pub from: Mailbox,
    pub reply_delay: Duration,
    /// `AGENT_NOTIFY_DELAY`: how long a customer's message waits for an agent to come online
    /// before agents are emailed, and the window of one such email per conversation.
    pub agent_notify_delay: Duration,
}

impl EmailSettings {
    /// The SMTP transport of `SMTP_URL` (connections open when an email is sent, pooled after;
    /// 30 s per exchange); [`EmailError::SmtpUrl`] when the URL does not parse.
    pub fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, EmailError> {
        Ok(
            AsyncSmtpTransport::<Tokio1Executor>::from_url(self.smtp_url.expose_secret())
                .map_err(EmailError::SmtpUrl)?
                .timeout(Some(Duration::from_secs(30)))
                .build(),
        )
    }
}

/// Schedules the reply email of each agent reply.
pub struct ReplyEmailScheduler {
    pub db: AnyPool,
    pub delay: Duration,
}

#[async_trait]
impl Consumer for ReplyEmailScheduler {
    fn name(&self) -> &'static str {
        "reply_email"
    }

    fn bindings(&self) -> Vec<String> {
        crate::consumers::reply_bindings()
    }

    /// One insert of a job whose key is the reply's event id: a delivery that takes the event over
    /// from a holder that died (or is slow) schedules nothing twice, so the claim need not outlive
    /// a crashed node for long.
    fn claim_ttl(&self) -> Duration {
        crate::consumers::SCHEDULING_CLAIM_TTL
    }

    async fn handle(&self, event: &RecordedEvent) -> Result<(), Failure> {
        // A reply an agent (or external agent) wrote in Slack is emailed like one written in Netia;
        // a customer's is not.
        if event.event_type == "SlackMessageReceived"
            && !matches!(
                ConversationEvent::decode(event),
                Ok(ConversationEvent::SlackMessageReceived(m)) if !m.author.is_customer()
            )
        {
            return Ok(());
        }
        let delay = chrono::TimeDelta::from_std(self.delay).map_err(|e| Failure::Permanent(e.to_string()))?;
        // The email's record is caused by this reply, in the reply's correlation.
        let meta = Metadata::system("email").caused_by(event);
        let payload = json!({
            "conversation_id": event.stream_id,
            "causation_id": meta.causation_id,
            "correlation_id": meta.correlation_id,
        });
        schedule(
            &self.db,
            &format!("{JOB}:{}", event.event_id),
            JOB,
            &payload,
            event.recorded_at + delay,
        )
        .await
        .map_err(|e| Failure::Retry(e.to_string()))
    }
}

/// Sends the email when the job is due.
pub struct ReplyEmailJob {
    bus: CommandBus,
    store: Arc<dyn EventStore>,
    settings: EmailSettings,
    /// Built once: it pools its SMTP connections.
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

/// The public agent replies posted after the customer last showed they had seen the conversation
/// (by writing, or by the widget's `messages:seen`), minus those already emailed.
pub fn unseen_replies(
    events: &[RecordedEvent],
    emailed: &std::collections::BTreeSet<MessageId>,
) -> Vec<(MessageId, String)> {
    let mut unseen = Vec::new();
    for event in events {
        match ConversationEvent::decode(event) {
            Ok(ConversationEvent::AgentMessagePosted(m)) => unseen.push((m.message_id, m.body)),
            Ok(ConversationEvent::SlackMessageReceived(m)) if !m.author.is_customer() => {
                unseen.push((m.message_id, m.body));
            }
            Ok(
                ConversationEvent::CustomerMessagePosted(_)
                | ConversationEvent::SmsMessageReceived(_)
                | ConversationEvent::SeenByCustomer(_),
            ) => unseen.clear(),
            _ => {}
        }
    }
    unseen.retain(|(id, _)| !emailed.contains(id));
    unseen
}

/// Most Message-IDs named in one `References` header; a longer thread keeps its first one (the
/// thread's root) and the latest ones, as RFC 5322 §3.6.4 allows trimming and mail clients do.
pub const MAX_REFERENCES: usize = 50;

/// The `References` value of the next email of a thread whose Message-IDs so far are `thread`
/// (oldest first): all of them, space-separated (RFC 5322 §3.6.4: the parent's References followed
/// by the parent's Message-ID), trimmed to [`MAX_REFERENCES`].
pub fn references(thread: &[String]) -> String {
    let kept: Vec<&str> = if thread.len() > MAX_REFERENCES {
        std::iter::once(&thread[0])
            .chain(&thread[thread.len() - (MAX_REFERENCES - 1)..])
            .map(String::as_str)
            .collect()
    } else {
        thread.iter().map(String::as_str).collect()
    };
    kept.join(" ")
}

impl ReplyEmailJob {
    /// The job with its SMTP transport (connections are opened when an email is sent);
    /// [`EmailError::SmtpUrl`] when `settings.smtp_url` does not parse.
    pub fn new(bus: CommandBus, store: Arc<dyn EventStore>, settings: EmailSettings) -> Result<Self, EmailError> {
        let transport = settings.transport()?;
        Ok(Self {
            bus,
            store,
            settings,
            transport,
        })
    }

    /// Emails the customer of the payload's `conversation_id` the replies they have not seen (if
    /// any, and if they have a usable address) and records it on the conversation.
    async fn send(&self, payload: &Value) -> Result<(), EmailError> {
        let id: ConversationId = payload
            .get("conversation_id")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .ok_or(EmailError::NoConversation)?;
        let (conversation, _) = self.bus.load::<Conversation>(id).await?;
        let (Some(account_id), Some(customer_id)) = (conversation.account_id, conversation.customer_id) else {
            return Ok(());
        };
        use netia_events::conversation::Source;
        if matches!(conversation.source, Some(Source::Email | Source::Gmail)) {
            // Answered by email at once (`channels::email::outbound`, `channels::gmail::outbound`).
            return Ok(());
        }
        let stream = StreamRef::new(ConversationEvent::STREAM_TYPE, id.to_string());
        let events = self.store.read_stream(&stream, StreamBound::All).await?;
        let unseen = unseen_replies(&events, &conversation.emailed);
        if unseen.is_empty() {
            return Ok(()); // seen, or emailed with an earlier reply
        }
        let (customer, _) = self.bus.load::<Customer>(customer_id).await?;
        // Only to an address the account vouches for (identity verification, or an agent entered
        // it): never to whatever a widget claimed, which may be someone else's.
        let Some(address) = customer
            .identity
            .email
            .clone()
            .filter(|_| !customer.deleted && customer.email_verified)
        else {
            return Ok(()); // nowhere we may write to
        };
        let to: Mailbox = match address.parse() {
            Ok(to) => to,
            Err(e) => {
                tracing::warn!(conversation = %id, error = %e, "customer email address unusable; no reply email");
                return Ok(());
            }
        };
        let (account, _) = self.bus.load::<Account>(account_id).await?;
        let business = Some(account.business_context.business_name.trim())
            .filter(|n| !n.is_empty())
            .unwrap_or(account.name.as_str())
            .to_owned();
        let domain = self.settings.from.email.domain().to_owned();
        let email_message_id = format!("<{id}.{}@{domain}>", unseen[0].0);
        let count = unseen.len();
        let mut body = format!(
            "{business} replied to your conversation ({count} new {}):\n\n",
            if count == 1 { "message" } else { "messages" }
        );
        for (_, text) in &unseen {
            body.push_str(text);
            body.push_str("\n\n---\n\n");
        }
        body.push_str("Reply in the chat on our website to continue the conversation.\n");
        let mut builder: MessageBuilder = Message::builder()
            .from(self.settings.from.clone())
            .to(to)
            .subject(format!("New reply from {business}"))
            .message_id(Some(email_message_id.clone()))
            .header(ContentType::TEXT_PLAIN);
        if let Some(previous) = &conversation.last_email_id {
            builder = builder
                .header(InReplyTo::from(previous.clone()))
                .header(References::from(references(&conversation.email_thread)));
        }
        let message = builder.body(body)?;
        self.transport.send(message).await.map_err(EmailError::Smtp)?;
        let command = ConversationCommand::RecordEmailNotification {
            message_ids: unseen.iter().map(|(m, _)| *m).collect(),
            to: address,
            email_message_id,
            in_reply_to: conversation.last_email_id.clone(),
            gmail: None,
            at: chrono::Utc::now(),
        };
        let mut meta = Metadata::new(Actor::System {
            component: "email".into(),
        })
        .with_account(account_id);
        let id_of = |key: &str| payload.get(key).and_then(Value::as_str).and_then(|v| v.parse().ok());
        meta.causation_id = id_of("causation_id");
        meta.correlation_id = id_of("correlation_id");
        self.bus.execute::<Conversation>(id, command, &meta).await?;
        Ok(())
    }
}

#[async_trait]
impl JobHandler for ReplyEmailJob {
    fn kind(&self) -> &'static str {
        JOB
    }

    async fn run(&self, payload: &Value) -> Result<(), JobError> {
        self.send(payload).await.map_err(JobError::handler)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("<id{i}@x>")).collect()
    }

    #[test]
    fn references_name_the_whole_thread_oldest_first() {
        assert_eq!(references(&ids(1)), "<id1@x>");
        assert_eq!(references(&ids(3)), "<id1@x> <id2@x> <id3@x>");
    }

    #[test]
    fn a_long_thread_keeps_its_root_and_the_latest_ids() {
        let refs = references(&ids(60));
        let kept: Vec<&str> = refs.split(' ').collect();
        assert_eq!(kept.len(), MAX_REFERENCES);
        assert_eq!(kept[0], "<id1@x>");
        assert_eq!(kept[1], "<id12@x>");
        assert_eq!(kept.last(), Some(&"<id60@x>"));
    }
}
