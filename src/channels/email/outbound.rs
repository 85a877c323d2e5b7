//! The email-conversation consumer (`netia.email_reply`): an agent's public reply on a conversation
//! that came in by email (an agent's, or an agent's or external agent's from Slack) is emailed at
//! once to the customer's address, from `EMAIL_FROM` with `Reply-To` the inbox's inbound address
//! (so the customer's answer comes back), as a reply in the customer's thread: `Subject: Re: …`,
//! `In-Reply-To` the thread's last Message-ID and `References` the whole thread (RFC 5322
//! §3.6.4). Recorded as `EmailNotificationSent` (its Message-ID then threads the customer's next
//! email). SMTP failures are retried by the bus (a 5xx refusal parks at once); the last attempt
//! records `EmailSendFailed`, pushed on `events:<account>`. A crash between the SMTP server's
//! acceptance and the record sends the email again (the same Message-ID).

use std::time::Duration;

use async_trait::async_trait;
use lettre::Address;
use lettre::message::header::{ContentType, InReplyTo, References};
use lettre::message::{Mailbox, MessageBuilder};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use netia_commands::{Account, Conversation, ConversationCommand, Customer};
use netia_events::conversation::{ConversationEvent, Source};
use netia_events::{DomainEvent, RecordedEvent};

use crate::app::App;
use crate::bus::{Consumer, Failure};
use crate::email::{EmailError, EmailSettings, references};

pub struct EmailReplyConsumer {
    app: App,
    from: Mailbox,
    /// Built once: it pools its SMTP connections.
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl EmailReplyConsumer {
    /// [`EmailError::SmtpUrl`] when `settings.smtp_url` does not parse.
    pub fn new(app: App, settings: &EmailSettings) -> Result<Self, EmailError> {
        Ok(Self {
            app,
            from: settings.from.clone(),
            transport: settings.transport()?,
        })
    }

    /// The email of reply `event`, and what to record once it is sent; `None` when the event is
    /// not a reply on an email conversation, or was emailed already.
    async fn email_of(&self, event: &RecordedEvent) -> Result<Option<(Message, ConversationCommand)>, Failure> {
        let inbound = |account: &Account| {
            account
                .primary_inbox_id
                .and_then(|inbox| account.inbound_email.get(&inbox))
                .zip(self.app.inbound_email_domain.as_ref())
                .and_then(|(issued, domain)| format!("{}@{domain}", issued.local_part).parse::<Mailbox>().ok())
        };
        let composed = compose_reply(
            &self.app,
            event,
            Source::Email,
            |_| Some(self.from.email.clone()),
            inbound,
        )
        .await?;
        Ok(composed.map(|(message, record, _)| (message, record)))
    }
}

/// The reply email of `event` on a conversation from `source` (email or Gmail), what to record
/// once it is sent, and the conversation; `None` when `event` is not a reply for the customer on
/// such a conversation, was emailed already, or the customer has no address (or was erased).
/// From `from(account)` (shown with the business's name), `Reply-To` `reply_to(account)` if any,
/// `Subject: Re: …`, `In-Reply-To` the thread's last Message-ID and `References` the whole thread
/// (RFC 5322 §3.6.4), a Message-ID `<conversation.message@from-domain>`.
pub(crate) async fn compose_reply(
    app: &App,
    event: &RecordedEvent,
    source: Source,
    from: impl Fn(&Account) -> Option<Address>,
    reply_to: impl Fn(&Account) -> Option<Mailbox>,
) -> Result<Option<(Message, ConversationCommand, Conversation)>, Failure> {
    let decoded = ConversationEvent::decode(event).map_err(|e| Failure::Permanent(e.to_string()))?;
    let Some((message_id, body)) = crate::consumers::reply_of(&decoded) else {
        return Ok(None);
    };
    let (conversation_id, conversation) = crate::consumers::conversation_of(app, event).await?;
    if conversation.source != Some(source) || conversation.emailed.contains(&message_id) {
        return Ok(None);
    }
    let (Some(account_id), Some(customer_id)) = (conversation.account_id, conversation.customer_id) else {
        return Ok(None);
    };
    let retry = |e: crate::app::AppError| Failure::Retry(e.to_string());
    let customer = app.state_of::<Customer>(customer_id).await.map_err(retry)?;
    let Some(address) = customer.identity.email.clone().filter(|_| !customer.deleted) else {
        return Ok(None); // erased, or no address to write to
    };
    let to: Mailbox = address
        .parse()
        .map_err(|e| Failure::Permanent(format!("the customer's address {address:?}: {e}")))?;
    let account = app.state_of::<Account>(account_id).await.map_err(retry)?;
    let Some(from_address) = from(&account) else {
        return Ok(None); // the channel was unlinked
    };
    let business = Some(account.business_context.business_name.trim())
        .filter(|n| !n.is_empty())
        .unwrap_or(account.name.as_str())
        .to_owned();
    let email_message_id = format!("<{conversation_id}.{message_id}@{}>", from_address.domain());
    let subject = match conversation.subject.as_deref() {
        Some(s) if s.to_ascii_lowercase().starts_with("re:") => s.to_owned(),
        Some(s) => format!("Re: {s}"),
        None => format!("Your conversation with {business}"),
    };
    let mut builder: MessageBuilder = Message::builder()
        .from(Mailbox::new(Some(business), from_address))
        .to(to)
        .subject(subject)
        .message_id(Some(email_message_id.clone()))
        .header(ContentType::TEXT_PLAIN);
    if let Some(reply_to) = reply_to(&account) {
        builder = builder.reply_to(reply_to);
    }
    if let Some(previous) = &conversation.last_email_id {
        builder = builder
            .header(InReplyTo::from(previous.clone()))
            .header(References::from(references(&conversation.email_thread)));
    }
    let message = builder
        .body(body.to_owned())
        .map_err(|e| Failure::Permanent(e.to_string()))?;
    let record = ConversationCommand::RecordEmailNotification {
        message_ids: vec![message_id],
        to: address,
        email_message_id,
        in_reply_to: conversation.last_email_id.clone(),
        gmail: None,
        at: chrono::Utc::now(),
    };
    Ok(Some((message, record, conversation)))
}

#[async_trait]
impl Consumer for EmailReplyConsumer {
    fn name(&self) -> &'static str {
        "email_reply"
    }

    fn bindings(&self) -> Vec<String> {
        crate::consumers::reply_bindings()
    }

    /// One SMTP exchange of at most 30 s, and the record.
    fn claim_ttl(&self) -> Duration {
        Duration::from_secs(60)
    }

    async fn concerns(&self, event: &RecordedEvent) -> bool {
        !matches!(self.email_of(event).await, Ok(None))
    }

    async fn handle(&self, event: &RecordedEvent) -> Result<(), Failure> {
        let Some((message, record)) = self.email_of(event).await? else {
            return Ok(());
        };
        if let Err(e) = self.transport.send(message).await {
            // A 5xx answer will not change on retry (a refused address); the rest may.
            return Err(Failure::of_vendor(!e.is_permanent(), format!("SMTP: {e}")));
        }
        crate::consumers::record(&self.app, "email", event, record).await
    }

    async fn parked(&self, event: &RecordedEvent, failure: &Failure) {
        crate::consumers::record_undelivered(
            &self.app,
            "email",
            event,
            failure,
            |trigger_event_id, message_id, error| ConversationCommand::RecordEmailFailure {
                trigger_event_id,
                message_id,
                error,
            },
        )
        .await;
    }
}
