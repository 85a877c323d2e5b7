//! Conversation events: creation, every kind of message, and every state change.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use serde_json::Value;

use crate::codec::{DecodeError, Upcaster};
use crate::event_family;
use crate::ids::{AccountId, ConversationId, CustomerId, InboxId, MessageId, UserId};

event_family! {
    /// Everything that happens in a conversation; its messages live in its stream.
    ConversationEvent, stream = "conversation", upcasters = upcasters, {
        ConversationCreated = 1,
        CustomerMessagePosted = 2,
        AgentMessagePosted = 2,
        PrivateNoteAdded = 2,
        BotMessagePosted = 2,
        EmailMessageReceived = 1,
        SlackMessageReceived = 1,
        SmsMessageReceived = 1,
        ConversationClosed = 1,
        ConversationReopened = 1,
        ConversationSnoozed = 1,
        ConversationWoken = 1,
        PrioritySet = 1,
        AgentAssigned = 1,
        ConversationTagged = 1,
        ConversationUntagged = 1,
        ConversationRead = 1,
        ConversationArchived = 1,
        HandedToHuman = 1,
        SeenByCustomer = 1,
        EmailNotificationSent = 1,
        SlackThreadStarted = 1,
        SlackPostFailed = 1,
        SmsSent = 1,
        SmsStatusUpdated = 1,
        SmsSendFailed = 1,
        EmailSendFailed = 1,
        AgentsNotified = 1,
    }
}

/// The conversation family's upcasters: version 1 of the four chat message events becomes
/// version 2 by gaining `format` (`text`: every version-1 body was plain text) and `attachments`
/// (none: version 1 had no way to carry them). ADR 0017.
fn upcasters(event_type: &str, from: i32) -> Option<Upcaster> {
    match (event_type, from) {
        ("CustomerMessagePosted" | "AgentMessagePosted" | "PrivateNoteAdded" | "BotMessagePosted", 1) => {
            Some(message_v1_to_v2)
        }
        _ => None,
    }
}

fn message_v1_to_v2(mut payload: Value) -> Result<Value, DecodeError> {
    let object = payload
        .as_object_mut()
        .ok_or_else(|| DecodeError::Malformed("a message payload is a JSON object".into()))?;
    object.insert("format".into(), Value::from("text"));
    object.insert("attachments".into(), Value::Array(Vec::new()));
    Ok(payload)
}

/// How a message's body is meant to be read (message events from version 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageFormat {
    /// Plain text: shown as written.
    #[default]
    Text,
    /// CommonMark (<https://spec.commonmark.org/>): clients may render it; raw HTML in it is never
    /// rendered.
    Markdown,
}

impl MessageFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageFormat::Text => "text",
            MessageFormat::Markdown => "markdown",
        }
    }
}

/// A file attached to a message (message events from version 2). The bytes live in an object
/// store under `key`; the event records what was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The object's key in the attachment store.
    pub key: String,
    /// The name the uploader gave it.
    pub file_name: String,
    /// The media type sniffed from the bytes (not the uploader's claim).
    pub content_type: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of the bytes.
    pub sha256: String,
}

/// Where a conversation started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Chat,
    Email,
    Slack,
    Sms,
    /// A linked Gmail inbox (one conversation per Gmail thread).
    Gmail,
    Api,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Normal,
    Priority,
}

/// The author of a message. In the log: `{"kind": "customer", "customer_id"}`,
/// `{"kind": "agent", "user_id"}` or `{"kind": "external_agent", "name", "channel_user_id"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Author {
    Customer {
        customer_id: CustomerId,
    },
    Agent {
        user_id: UserId,
    },
    /// Someone on the account's side who answers through a channel but is no Netia user: a
    /// member of the linked Slack workspace without an agent account (matched by email). Shown
    /// by `name` (at most [`EXTERNAL_NAME_MAX`] characters); `channel_user_id` is the channel's
    /// own id for them (Slack's `U…` user id), kept for the audit trail. Only channel messages
    /// (`SlackMessageReceived`, `EmailMessageReceived`) carry this author.
    ExternalAgent {
        name: String,
        channel_user_id: String,
    },
}

/// The longest name of an [`Author::ExternalAgent`], in characters.
pub const EXTERNAL_NAME_MAX: usize = 80;

impl Author {
    /// Whether the message comes from the customer's side (the customer), rather than from the
    /// account's side (an agent, an external agent).
    pub fn is_customer(&self) -> bool {
        matches!(self, Self::Customer { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationCreated {
    pub conversation_id: ConversationId,
    pub account_id: AccountId,
    pub customer_id: CustomerId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbox_id: Option<InboxId>,
    pub source: Source,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerMessagePosted {
    pub message_id: MessageId,
    pub customer_id: CustomerId,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<String>,
    /// From version 2 (version 1: always text).
    pub format: MessageFormat,
    /// From version 2 (version 1: none).
    pub attachments: Vec<Attachment>,
    pub sent_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentMessagePosted {
    pub message_id: MessageId,
    pub user_id: UserId,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<String>,
    /// From version 2 (version 1: always text).
    pub format: MessageFormat,
    /// From version 2 (version 1: none).
    pub attachments: Vec<Attachment>,
    pub sent_at: DateTime<Utc>,
}

/// An agents-only note: never shown to the customer or sent to a channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrivateNoteAdded {
    pub message_id: MessageId,
    pub user_id: UserId,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<String>,
    /// From version 2 (version 1: always text).
    pub format: MessageFormat,
    /// From version 2 (version 1: none).
    pub attachments: Vec<Attachment>,
    pub sent_at: DateTime<Utc>,
}

/// An LLM reply; `trigger_event_id` is the customer message event it answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BotMessagePosted {
    pub message_id: MessageId,
    pub body: String,
    pub trigger_event_id: Uuid,
    /// From version 2 (version 1: always text).
    pub format: MessageFormat,
    /// From version 2 (version 1: none).
    pub attachments: Vec<Attachment>,
    /// The model could not answer (every call failed) and this is the configured fallback message
    /// (`LLM_FALLBACK_MESSAGE`). Absent (false) in older events, which were all real answers or
    /// whose failures were not recorded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fallback: bool,
    pub sent_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailMessageReceived {
    pub message_id: MessageId,
    pub author: Author,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The RFC 5322 Message-ID (or Gmail message id): the dedupe key.
    pub email_message_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
    /// Where Gmail keeps it, when it came from a linked Gmail inbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gmail: Option<GmailMessage>,
    pub sent_at: DateTime<Utc>,
}

/// A message's ids in the Gmail API (`users.messages`: `id`, `threadId`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GmailMessage {
    pub id: String,
    pub thread_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlackMessageReceived {
    pub message_id: MessageId,
    pub author: Author,
    pub body: String,
    /// Slack's event id: Slack retries deliveries, this dedupes them.
    pub slack_event_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_ts: Option<String>,
    pub sent_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmsMessageReceived {
    pub message_id: MessageId,
    pub customer_id: CustomerId,
    pub body: String,
    /// Twilio's MessageSid: the dedupe key.
    pub message_sid: String,
    pub from_number: String,
    pub sent_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationClosed {
    pub closed_at: DateTime<Utc>,
}

/// Why a conversation became open again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReopenReason {
    Agent,
    CustomerMessage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationReopened {
    pub reason: ReopenReason,
    pub reopened_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationSnoozed {
    pub until: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationWoken {
    pub woken_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrioritySet {
    pub priority: Priority,
}

/// `assignee: None` means the conversation was unassigned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentAssigned {
    pub assignee: Option<UserId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationTagged {
    pub tag: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationUntagged {
    pub tag: String,
}

/// An agent has read the conversation up to and including `last_message_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationRead {
    pub user_id: UserId,
    pub last_message_id: MessageId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationArchived {
    pub archived_at: DateTime<Utc>,
}

/// Why the bot stopped answering a conversation (an agent's public reply hands it over too, without
/// this event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoffReason {
    /// The customer asked for a person (one of the configured phrases).
    CustomerAsked,
    /// The model decided a person should answer (its `handoff_to_human` tool).
    Model,
}

/// From now on the bot stays silent in this conversation; agents are told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandedToHuman {
    pub reason: HandoffReason,
    pub at: DateTime<Utc>,
}

/// The customer saw the conversation up to `up_to` (the widget's `messages:seen`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeenByCustomer {
    pub customer_id: CustomerId,
    pub up_to: MessageId,
    pub at: DateTime<Utc>,
}

/// Agent replies the customer had not seen were emailed to them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailNotificationSent {
    pub message_ids: Vec<MessageId>,
    pub to: String,
    /// The email's Message-ID, which the next one's In-Reply-To names (threading).
    pub email_message_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
    /// Sent through the Gmail API (`users.messages.send`): the sent message's ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gmail: Option<GmailMessage>,
    pub at: DateTime<Utc>,
}

/// The conversation's parent message was posted in a Slack channel: its later messages go into
/// this thread, and replies in it come back to the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlackThreadStarted {
    pub channel_id: String,
    /// The parent message's `ts` (Slack's message id in the channel): the `thread_ts` of replies.
    pub thread_ts: String,
}

/// A message could not be posted to Slack after every attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlackPostFailed {
    /// The event (a message of this conversation) whose post failed.
    pub trigger_event_id: Uuid,
    pub error: String,
}

/// A reply (`message_id`, from event `trigger_event_id`) was handed to Twilio's Messages API: one
/// `message_sids` entry per part (a body longer than 1,600 characters goes in parts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmsSent {
    pub trigger_event_id: Uuid,
    pub message_id: MessageId,
    /// Twilio's `SM…` ids, in order.
    pub message_sids: Vec<String>,
    /// The customer's number, E.164.
    pub to_number: String,
}

/// Twilio's status callback for a sent SMS: `queued`, `sending`, `sent`, `delivered`,
/// `undelivered` or `failed` (a later state only; Twilio's callbacks may arrive out of order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmsStatusUpdated {
    pub message_id: MessageId,
    pub message_sid: String,
    pub status: String,
}

/// A reply could not be sent by SMS after every attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmsSendFailed {
    pub trigger_event_id: Uuid,
    pub message_id: MessageId,
    pub error: String,
}

/// A reply on an email conversation could not be emailed after every attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailSendFailed {
    pub trigger_event_id: Uuid,
    pub message_id: MessageId,
    pub error: String,
}

/// The customer's messages `message_ids` were emailed to agents `user_ids` (no agent of the account
/// was online): each message is emailed to agents once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentsNotified {
    pub message_ids: Vec<MessageId>,
    pub user_ids: Vec<UserId>,
    pub at: DateTime<Utc>,
}
