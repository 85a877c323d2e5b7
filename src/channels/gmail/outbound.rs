//! The Gmail consumer (`netia.gmail_reply`): an agent's public reply on a conversation that came
//! from a linked Gmail inbox (an agent's, or one written in Slack) is sent at once with
//! `users.messages.send` as the mailbox, in the conversation's Gmail thread (`threadId`), with
//! `In-Reply-To`/`References` so that the customer's client threads it too. Recorded as
//! `EmailNotificationSent` with the sent message's Gmail ids. Google's 429/5xx and network
//! failures are retried by the bus; a refusal (4xx, a revoked authorization) parks at once; the
//! last attempt records `EmailSendFailed`, pushed on `events:<account>`. Gmail offers no
//! idempotency key: the bus's claim keeps two nodes from sending one reply; a crash between
//! Gmail's answer and the record sends it again (with the same Message-ID).

use std::time::Duration;

use async_trait::async_trait;
use netia_commands::ConversationCommand;
use netia_events::RecordedEvent;
use netia_events::conversation::{GmailMessage, Source};

use crate::app::App;
use crate::app::gmail::{GmailUseError, authorized};
use crate::bus::{Consumer, Failure};
use crate::channels::email::outbound::compose_reply;
use crate::channels::gmail::client::is_gmail_id;

pub struct GmailConsumer {
    pub app: App,
}

impl GmailConsumer {
    async fn reply_of(
        &self,
        event: &RecordedEvent,
    ) -> Result<Option<(lettre::Message, ConversationCommand, String)>, Failure> {
        let from = |account: &netia_commands::Account| {
            account
                .gmail
                .as_ref()
                .and_then(|g| g.email_address.parse::<lettre::Address>().ok())
        };
        let Some((message, record, conversation)) =
            compose_reply(&self.app, event, Source::Gmail, from, |_| None).await?
        else {
            return Ok(None);
        };
        let Some(thread_id) = conversation.gmail_thread_id else {
            return Ok(None);
        };
        Ok(Some((message, record, thread_id)))
    }
}

#[async_trait]
impl Consumer for GmailConsumer {
    fn name(&self) -> &'static str {
        "gmail_reply"
    }

    fn bindings(&self) -> Vec<String> {
        crate::consumers::reply_bindings()
    }

    /// A token refresh and one send, each at most 20 s, and the record.
    fn claim_ttl(&self) -> Duration {
        Duration::from_secs(90)
    }

    async fn concerns(&self, event: &RecordedEvent) -> bool {
        !matches!(self.reply_of(event).await, Ok(None))
    }

    async fn handle(&self, event: &RecordedEvent) -> Result<(), Failure> {
        let Some((message, mut record, thread_id)) = self.reply_of(event).await? else {
            return Ok(());
        };
        let Some(account_id) = crate::consumers::effect_metadata("gmail", event).account_id else {
            return Err(Failure::Permanent("the event has no account".into()));
        };
        let gmail = self
            .app
            .gmail
            .clone()
            .ok_or_else(|| Failure::Permanent("Gmail is not configured".into()))?;
        let raw = message.formatted();
        let sent = authorized(&self.app, account_id, |token| {
            let (client, raw, thread_id) = (&gmail.client, &raw, &thread_id);
            async move { client.send_message(&token, raw, thread_id).await }
        })
        .await;
        let sent = match sent {
            Ok(sent) => sent,
            Err(GmailUseError::Google(e)) => return Err(Failure::of_vendor(e.is_transient(), format!("Gmail: {e}"))),
            Err(GmailUseError::App(e)) => return Err(Failure::Retry(e.to_string())),
            Err(e) => return Err(Failure::Permanent(e.to_string())),
        };
        // Gmail's 2xx without ids (never seen, but not retried: it was sent) records none.
        if let (ConversationCommand::RecordEmailNotification { gmail, .. }, Some(sent)) = (&mut record, sent)
            && is_gmail_id(&sent.id)
            && is_gmail_id(&sent.thread_id)
        {
            *gmail = Some(GmailMessage {
                id: sent.id,
                thread_id: sent.thread_id,
            });
        }
        crate::consumers::record(&self.app, "gmail", event, record).await
    }

    async fn parked(&self, event: &RecordedEvent, failure: &Failure) {
        crate::consumers::record_undelivered(
            &self.app,
            "gmail",
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
