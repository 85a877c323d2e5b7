//! The Slack consumer (`netia.slack`): mirrors each conversation of a mapped inbox in its Slack
//! channel. The conversation's first public message posts a parent (who the customer is, the
//! message, a link to the conversation) and records its `ts` (`SlackThreadStarted`); every later
//! public message (customer, bot, agent, email, SMS) goes into that thread. Private notes and
//! messages that came from Slack are never posted. A 429 is waited out (`Retry-After`, up to 30 s)
//! and tried again; other transient failures are retried by the bus; a post that fails for good is
//! recorded as `SlackPostFailed`, which the socket pushes on `events:<account>`.

use std::time::Duration;

use async_trait::async_trait;
use netia_commands::{Account, Conversation, ConversationCommand, Customer, User};
use netia_events::conversation::ConversationEvent;
use netia_events::{AccountId, ConversationId, DomainEvent, Metadata, RecordedEvent};

use super::client::{SlackClient, SlackError};
use super::mrkdwn::to_mrkdwn;
use crate::app::App;
use crate::bus::{Consumer, Failure};

/// The longest `Retry-After` waited out inline; longer ones go back to the bus.
const LONGEST_INLINE_WAIT: Duration = Duration::from_secs(30);

/// The associated data a sealed bot token is bound to.
pub fn token_context(account_id: AccountId) -> String {
    format!("slack-bot-token:{account_id}")
}

pub struct SlackConsumer {
    pub app: App,
    pub client: SlackClient,
    /// `NETIA_PUBLIC_URL`: where the parent message links to; none, no link.
    pub public_url: Option<String>,
}

/// Where an event goes: the channel, the bot token, the thread if there is one.
struct Target {
    conversation_id: ConversationId,
    account_id: AccountId,
    channel: String,
    token: String,
    thread: Option<String>,
    conversation: Conversation,
}

impl SlackConsumer {
    /// The target of `event`, if it is a public message of a conversation whose inbox is mapped.
    async fn target(&self, event: &RecordedEvent) -> Result<Option<Target>, Failure> {
        if !postable(&event.event_type) {
            return Ok(None);
        }
        let retry = |e: crate::app::AppError| Failure::Retry(e.to_string());
        let (conversation_id, conversation) = crate::consumers::conversation_of(&self.app, event).await?;
        let Some(account_id) = conversation.account_id else {
            return Ok(None);
        };
        let account = self.app.state_of::<Account>(account_id).await.map_err(retry)?;
        let Some(slack) = &account.slack else { return Ok(None) };
        let Some(inbox) = conversation.inbox_id.or(account.primary_inbox_id) else {
            return Ok(None);
        };
        let Some(channel) = account.slack_channels.get(&inbox).cloned() else {
            return Ok(None);
        };
        let token = self
            .app
            .sealer
            .open(&slack.sealed_bot_token, &token_context(account_id))
            .map_err(|e| Failure::Permanent(e.to_string()))?;
        let token = String::from_utf8(token).map_err(|_| Failure::Permanent("the bot token is not text".into()))?;
        Ok(Some(Target {
            conversation_id,
            account_id,
            thread: conversation.slack_thread.as_ref().map(|(_, ts)| ts.clone()),
            // A thread stays in the channel it started in, whatever the mapping says now.
            channel: conversation
                .slack_thread
                .as_ref()
                .map_or(channel, |(thread_channel, _)| thread_channel.clone()),
            token,
            conversation,
        }))
    }

    /// Posts with 429s waited out inline (bounded).
    async fn post(
        &self,
        target: &Target,
        text: &str,
        thread: Option<&str>,
        blocks: Option<&serde_json::Value>,
    ) -> Result<String, SlackError> {
        let mut waited = Duration::ZERO;
        loop {
            match self
                .client
                .post_message(&target.token, &target.channel, text, thread, blocks)
                .await
            {
                Err(SlackError::RateLimited { retry_after, .. }) if waited + retry_after <= LONGEST_INLINE_WAIT => {
                    tracing::info!(?retry_after, "Slack rate-limited a post; waiting as it asks");
                    tokio::time::sleep(retry_after).await;
                    waited += retry_after;
                }
                other => return other,
            }
        }
    }

    /// Who wrote the message, as the thread shows it.
    async fn author(&self, decoded: &ConversationEvent, target: &Target) -> String {
        use ConversationEvent::*;
        let agent = |user_id| async move {
            match self.app.state_of::<User>(user_id).await {
                Ok(user) if !user.display_name.is_empty() => user.display_name,
                _ => "Agent".to_owned(),
            }
        };
        match decoded {
            AgentMessagePosted(m) => escape(&agent(m.user_id).await),
            EmailMessageReceived(m) => match m.author {
                netia_events::conversation::Author::Agent { user_id } => escape(&agent(user_id).await),
                netia_events::conversation::Author::Customer { .. } => self.customer_name(target).await,
                netia_events::conversation::Author::ExternalAgent { ref name, .. } => escape(name),
            },
            BotMessagePosted(_) => "Bot".to_owned(),
            _ => self.customer_name(target).await,
        }
    }

    /// Only the conversation's first public message posts the parent: a later one arriving first
    /// (another node took it, or the first is waiting to be retried) waits for the thread, unless
    /// the first one's post failed for good or is older than [`FIRST_POST_WAIT`] (it came before
    /// Slack was linked, and will never post).
    async fn first_to_post(&self, event: &RecordedEvent, target: &Target) -> Result<(), Failure> {
        let stream = netia_events::StreamRef::new("conversation", event.stream_id.clone());
        let events = self
            .app
            .store
            .read_stream(&stream, crate::store::StreamBound::UpToVersion(event.version))
            .await
            .map_err(|e| Failure::Retry(e.to_string()))?;
        let first = events.iter().find(|e| postable(&e.event_type));
        let recent = chrono::Utc::now() - chrono::TimeDelta::from_std(FIRST_POST_WAIT).unwrap_or_default();
        match first.filter(|f| f.recorded_at > recent).map(|f| f.event_id) {
            Some(first) if first != event.event_id => {
                if target
                    .conversation
                    .external_ids
                    .contains(&format!("slack-failed:{first}"))
                {
                    return Ok(());
                }
                Err(Failure::Retry(
                    "waiting for the conversation's first message to post the Slack parent".into(),
                ))
            }
            _ => Ok(()),
        }
    }

    async fn customer_name(&self, target: &Target) -> String {
        let Some(customer_id) = target.conversation.customer_id else {
            return "Customer".to_owned();
        };
        match self.app.state_of::<Customer>(customer_id).await {
            Ok(customer) => match (
                customer.identity.name.map(|n| escape(&n)),
                customer.identity.email.map(|e| escape(&e)),
            ) {
                (Some(name), Some(email)) => format!("{name} ({email})"),
                (Some(name), None) => name,
                (None, Some(email)) => email,
                (None, None) => "Anonymous customer".to_owned(),
            },
            Err(_) => "Customer".to_owned(),
        }
    }
}

/// How long a later message waits for the first one to post the parent.
const FIRST_POST_WAIT: Duration = Duration::from_secs(600);

/// Slack's limit on a section block's text; the parent's quote is cut to fit.
const MAX_SECTION_CHARS: usize = 3_000;
/// Slack truncates a message's text past 40,000 characters; ours stop before.
const MAX_TEXT_CHARS: usize = 39_000;

/// Text shown as it is in mrkdwn: `&`, `<`, `>` escaped, so no mention (`<!channel>`), link or
/// user reference can be made of it (Slack, "Escaping text").
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// At most `max` characters of `text` (an ellipsis marks the cut).
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Whether the message is the customer's own words.
fn from_customer(decoded: &ConversationEvent) -> bool {
    use netia_events::conversation::Author;
    match decoded {
        ConversationEvent::CustomerMessagePosted(_) | ConversationEvent::SmsMessageReceived(_) => true,
        ConversationEvent::EmailMessageReceived(m) => matches!(m.author, Author::Customer { .. }),
        _ => false,
    }
}

/// The `action_id`s of the parent message's buttons.
pub const CLOSE: &str = "netia_close";
pub const REOPEN: &str = "netia_reopen";
pub const ASSIGN_ME: &str = "netia_assign_me";

/// The parent message's blocks: its text, a status line if any, and the buttons (close, reopen,
/// assign to me) whose `value` is the conversation id.
pub fn parent_blocks(text: &str, conversation_id: ConversationId, status: Option<&str>) -> serde_json::Value {
    let button = |id: &str, label: &str| {
        serde_json::json!({"type": "button", "action_id": id, "value": conversation_id.to_string(),
            "text": {"type": "plain_text", "text": label}})
    };
    let text = truncate(text, MAX_SECTION_CHARS);
    let mut blocks = vec![serde_json::json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})];
    if let Some(status) = status {
        blocks.push(serde_json::json!({"type": "context", "elements": [{"type": "mrkdwn", "text": status}]}));
    }
    blocks.push(
        serde_json::json!({"type": "actions", "block_id": "netia_conversation", "elements": [
            button(CLOSE, "Close"), button(REOPEN, "Reopen"), button(ASSIGN_ME, "Assign to me")
        ]}),
    );
    serde_json::Value::Array(blocks)
}

/// The event types posted to Slack: public messages that did not come from Slack.
fn postable(event_type: &str) -> bool {
    matches!(
        event_type,
        "CustomerMessagePosted"
            | "AgentMessagePosted"
            | "BotMessagePosted"
            | "EmailMessageReceived"
            | "SmsMessageReceived"
    )
}

fn body_of(decoded: &ConversationEvent) -> Option<&str> {
    use ConversationEvent::*;
    match decoded {
        CustomerMessagePosted(m) => Some(&m.body),
        AgentMessagePosted(m) => Some(&m.body),
        BotMessagePosted(m) => Some(&m.body),
        EmailMessageReceived(m) => Some(&m.body),
        SmsMessageReceived(m) => Some(&m.body),
        _ => None,
    }
}

fn failure(e: SlackError) -> Failure {
    Failure::of_vendor(e.is_transient(), e)
}

#[async_trait]
impl Consumer for SlackConsumer {
    fn name(&self) -> &'static str {
        "slack"
    }

    fn bindings(&self) -> Vec<String> {
        [
            "CustomerMessagePosted",
            "AgentMessagePosted",
            "BotMessagePosted",
            "EmailMessageReceived",
            "SmsMessageReceived",
        ]
        .iter()
        .map(|t| format!("conversation.{t}"))
        .collect()
    }

    /// Up to three posts (two after 429s) of at most 10 s each, and the waits between.
    fn claim_ttl(&self) -> Duration {
        Duration::from_secs(90)
    }

    async fn concerns(&self, event: &RecordedEvent) -> bool {
        !matches!(self.target(event).await, Ok(None))
    }

    async fn handle(&self, event: &RecordedEvent) -> Result<(), Failure> {
        let Some(target) = self.target(event).await? else {
            return Ok(());
        };
        let decoded = ConversationEvent::decode(event).map_err(|e| Failure::Permanent(e.to_string()))?;
        let Some(body) = body_of(&decoded) else { return Ok(()) };
        let author = self.author(&decoded, &target).await;
        // What customers write (and how they name themselves) is shown as text: no mentions, no
        // links with a label of their choosing. Agents' and the bot's Markdown is converted.
        let body = if from_customer(&decoded) {
            escape(body)
        } else {
            to_mrkdwn(body)
        };
        let meta = Metadata::system("slack")
            .caused_by(event)
            .with_account(target.account_id);
        match &target.thread {
            Some(thread) => {
                let text = truncate(&format!("*{author}*: {body}"), MAX_TEXT_CHARS);
                self.post(&target, &text, Some(thread), None).await.map_err(failure)?;
            }
            None => {
                self.first_to_post(event, &target).await?;
                let customer = self.customer_name(&target).await;
                let quoted = truncate(&body, MAX_SECTION_CHARS - 400).replace('\n', "\n>");
                let mut text = format!("*New conversation* from {}\n>{quoted}", truncate(&customer, 200));
                if let Some(base) = &self.public_url {
                    text.push_str(&format!(
                        "\n<{base}/#conversation={}|Open in Netia>",
                        target.conversation_id
                    ));
                }
                let blocks = parent_blocks(&text, target.conversation_id, None);
                let ts = self.post(&target, &text, None, Some(&blocks)).await.map_err(failure)?;
                let start = ConversationCommand::StartSlackThread {
                    channel_id: target.channel.clone(),
                    thread_ts: ts,
                };
                self.app
                    .bus
                    .execute::<Conversation>(target.conversation_id, start, &meta)
                    .await
                    .map_err(|e| Failure::Retry(e.to_string()))?;
            }
        }
        Ok(())
    }

    async fn parked(&self, event: &RecordedEvent, failure: &Failure) {
        let command = ConversationCommand::RecordSlackPostFailure {
            trigger_event_id: event.event_id,
            error: failure.to_string(),
        };
        if let Err(e) = crate::consumers::record(&self.app, "slack", event, command).await {
            tracing::error!(conversation = %event.stream_id, error = %e, "cannot record the failed Slack post");
        }
    }
}
