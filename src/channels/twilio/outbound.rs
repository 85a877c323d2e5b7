//! The SMS consumer (`netia.sms`): an agent's public reply on a conversation the customer started
//! by SMS (an agent's, or an agent's or external agent's from Slack) is sent to the number the
//! customer last wrote from, through the account's Twilio number, and recorded (`SmsSent`, with
//! Twilio's message SIDs). 429s, 5xx and network failures are retried by the bus; a refusal
//! (Twilio 4xx) or the last attempt parks the reply and records `SmsSendFailed`, which the socket
//! pushes on `events:<account>`. A body over 1,600 characters goes in parts.

use std::time::Duration;

use async_trait::async_trait;
use netia_commands::{Account, ConversationCommand};
use netia_events::conversation::{ConversationEvent, Source};
use netia_events::{AccountId, ConversationId, DomainEvent, MessageId, RecordedEvent};

use super::client::{TwilioCredentials, TwilioError, parts};
use crate::app::App;
use crate::bus::{Consumer, Failure};

/// The associated data a sealed auth token is bound to.
pub fn token_context(account_id: AccountId) -> String {
    format!("twilio-auth-token:{account_id}")
}

/// Sends through `app.twilio`, with each account's own credentials.
pub struct SmsConsumer {
    pub app: App,
}

/// Where a reply goes.
struct Target {
    conversation_id: ConversationId,
    credentials: TwilioCredentials,
    from: String,
    to: String,
    message_id: MessageId,
    body: String,
}

impl SmsConsumer {
    /// The target of `event`, if it is a reply on an SMS conversation of an account with Twilio.
    async fn target(&self, event: &RecordedEvent) -> Result<Option<Target>, Failure> {
        if !matches!(event.event_type.as_str(), "AgentMessagePosted" | "SlackMessageReceived") {
            return Ok(None);
        }
        let decoded = ConversationEvent::decode(event).map_err(|e| Failure::Permanent(e.to_string()))?;
        let Some((message_id, body)) = crate::consumers::reply_of(&decoded) else {
            return Ok(None);
        };
        let retry = |e: crate::app::AppError| Failure::Retry(e.to_string());
        let (conversation_id, conversation) = crate::consumers::conversation_of(&self.app, event).await?;
        let (Some(account_id), Some(to)) = (conversation.account_id, conversation.sms_number.clone()) else {
            return Ok(None);
        };
        if conversation.source != Some(Source::Sms)
            || conversation
                .external_ids
                .contains(&format!("sms-sent:{}", event.event_id))
        {
            return Ok(None);
        }
        let account = self.app.state_of::<Account>(account_id).await.map_err(retry)?;
        let Some(twilio) = &account.twilio else { return Ok(None) };
        let token = self
            .app
            .sealer
            .open(&twilio.sealed_auth_token, &token_context(account_id))
            .map_err(|e| Failure::Permanent(e.to_string()))?;
        let auth_token =
            String::from_utf8(token).map_err(|_| Failure::Permanent("the auth token is not text".into()))?;
        Ok(Some(Target {
            conversation_id,
            credentials: TwilioCredentials {
                account_sid: twilio.account_sid.clone(),
                auth_token,
            },
            from: twilio.from_number.clone(),
            to,
            message_id,
            body: body.to_owned(),
        }))
    }

    /// Where Twilio posts this reply's statuses: `NETIA_PUBLIC_URL/api/twilio/status?…` (none
    /// without a public URL: the statuses stay unknown).
    fn status_callback(&self, target: &Target) -> Option<String> {
        self.app.public_url.as_ref().map(|base| {
            format!(
                "{base}/api/twilio/status?conversation_id={}&message_id={}",
                target.conversation_id, target.message_id
            )
        })
    }
}

fn failure(e: TwilioError) -> Failure {
    Failure::of_vendor(e.is_transient(), e)
}

#[async_trait]
impl Consumer for SmsConsumer {
    fn name(&self) -> &'static str {
        "sms"
    }

    fn bindings(&self) -> Vec<String> {
        crate::consumers::reply_bindings()
    }

    /// Up to a few parts of at most 10 s each.
    fn claim_ttl(&self) -> Duration {
        Duration::from_secs(60)
    }

    async fn concerns(&self, event: &RecordedEvent) -> bool {
        !matches!(self.target(event).await, Ok(None))
    }

    async fn handle(&self, event: &RecordedEvent) -> Result<(), Failure> {
        let Some(target) = self.target(event).await? else {
            return Ok(());
        };
        let callback = self.status_callback(&target);
        let mut sids = Vec::new();
        for part in parts(&target.body) {
            let sent = self
                .app
                .twilio
                .send(
                    &target.credentials,
                    &target.from,
                    &target.to,
                    &part,
                    callback.as_deref(),
                )
                .await
                .map_err(failure)?;
            sids.push(sent.sid);
        }
        let record = ConversationCommand::RecordSmsSent {
            trigger_event_id: event.event_id,
            message_id: target.message_id,
            message_sids: sids,
            to_number: target.to.clone(),
        };
        crate::consumers::record(&self.app, "sms", event, record).await
    }

    async fn parked(&self, event: &RecordedEvent, failure: &Failure) {
        crate::consumers::record_undelivered(
            &self.app,
            "sms",
            event,
            failure,
            |trigger_event_id, message_id, error| ConversationCommand::RecordSmsFailure {
                trigger_event_id,
                message_id,
                error,
            },
        )
        .await;
    }
}
