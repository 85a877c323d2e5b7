//! What can be asked of a conversation.

use chrono::{DateTime, Utc};
use netia_events::conversation::{Attachment, Author, GmailMessage, HandoffReason, MessageFormat, Priority, Source};
use netia_events::{AccountId, ConversationId, CustomerId, InboxId, MessageId, UserId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Commutes;

/// Commands carry the ids and times they need, so that deciding stays pure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConversationCommand {
    Create {
        conversation_id: ConversationId,
        account_id: AccountId,
        customer_id: CustomerId,
        /// Every conversation belongs to an inbox: the one the entry point routes to, else the
        /// account's primary inbox ([`crate::Account::primary_inbox_id`]). (Events written before
        /// this rule may carry none.)
        inbox_id: InboxId,
        source: Source,
        subject: Option<String>,
        at: DateTime<Utc>,
    },
    /// A chat message from the customer or an agent; `private` makes an agent's message a note.
    PostMessage {
        message_id: MessageId,
        author: Author,
        body: String,
        /// How `body` is meant to be read (plain text, or Markdown); text when absent.
        #[serde(default)]
        format: MessageFormat,
        private: bool,
        client_message_id: Option<String>,
        /// Files already in the attachment store (at most [`super::MAX_ATTACHMENTS`]); with one or more,
        /// `body` (the caption) may be empty.
        #[serde(default)]
        attachments: Vec<Attachment>,
        at: DateTime<Utc>,
    },
    /// The LLM's answer to the customer message event `trigger_event_id`.
    PostBotReply {
        message_id: MessageId,
        body: String,
        trigger_event_id: Uuid,
        /// The customer message answered: if the customer wrote again since, the reply is dropped
        /// (the newer message gets its own). `None` skips the check.
        reply_to: Option<MessageId>,
        /// The model failed and `body` is the fallback message (recorded for AI outcome analytics).
        #[serde(default)]
        fallback: bool,
        at: DateTime<Utc>,
    },
    /// The customer saw everything so far; a no-op if nothing new was posted since they last did.
    MarkSeenByCustomer {
        customer_id: CustomerId,
        at: DateTime<Utc>,
    },
    /// Records the email that told the customer of `message_ids`; a no-op if all were emailed.
    RecordEmailNotification {
        message_ids: Vec<MessageId>,
        to: String,
        email_message_id: String,
        in_reply_to: Option<String>,
        /// Sent through the Gmail API: the sent message's ids.
        gmail: Option<GmailMessage>,
        at: DateTime<Utc>,
    },
    /// The bot stops answering; a no-op if it already has.
    HandToHuman {
        reason: HandoffReason,
        at: DateTime<Utc>,
    },
    ReceiveEmail {
        message_id: MessageId,
        author: Author,
        body: String,
        subject: Option<String>,
        email_message_id: String,
        in_reply_to: Option<String>,
        /// Where Gmail keeps it (a linked Gmail inbox's message): also a dedupe key.
        gmail: Option<GmailMessage>,
        at: DateTime<Utc>,
    },
    ReceiveSlackMessage {
        message_id: MessageId,
        author: Author,
        body: String,
        slack_event_id: String,
        slack_ts: Option<String>,
        at: DateTime<Utc>,
    },
    ReceiveSms {
        message_id: MessageId,
        customer_id: CustomerId,
        body: String,
        message_sid: String,
        from_number: String,
        at: DateTime<Utc>,
    },
    Close {
        at: DateTime<Utc>,
    },
    Reopen {
        at: DateTime<Utc>,
    },
    Snooze {
        until: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// Ends a snooze whose time has come (the scheduler's job); otherwise a no-op.
    Wake {
        at: DateTime<Utc>,
    },
    SetPriority {
        priority: Priority,
    },
    Assign {
        assignee: Option<UserId>,
    },
    Tag {
        tag: String,
    },
    Untag {
        tag: String,
    },
    MarkRead {
        user_id: UserId,
    },
    /// Archives a conversation closed for at least [`super::aggregate::ARCHIVE_AFTER_DAYS`] days.
    Archive {
        at: DateTime<Utc>,
    },
    /// Records the Slack thread of the conversation (its parent message was posted); a no-op when
    /// it has one already.
    StartSlackThread {
        channel_id: String,
        thread_ts: String,
    },
    /// Records that posting `trigger_event_id` to Slack failed for good (once per trigger).
    RecordSlackPostFailure {
        trigger_event_id: uuid::Uuid,
        error: String,
    },
    /// Records that reply `message_id` (event `trigger_event_id`) went to Twilio (once per trigger).
    RecordSmsSent {
        trigger_event_id: uuid::Uuid,
        message_id: MessageId,
        message_sids: Vec<String>,
        to_number: String,
    },
    /// Records Twilio's status callback for one of this conversation's sent SMS.
    RecordSmsStatus {
        message_sid: String,
        status: String,
    },
    /// Records that emailing reply `message_id` (an email conversation's) failed for good (once
    /// per trigger).
    RecordEmailFailure {
        trigger_event_id: uuid::Uuid,
        message_id: MessageId,
        error: String,
    },
    /// Records that the customer's messages `message_ids` were emailed to agents `user_ids`
    /// (nothing when every one of them was already).
    RecordAgentNotification {
        message_ids: Vec<MessageId>,
        user_ids: Vec<UserId>,
        at: DateTime<Utc>,
    },
    /// Records that sending reply `message_id` by SMS failed for good (once per trigger).
    RecordSmsFailure {
        trigger_event_id: uuid::Uuid,
        message_id: MessageId,
        error: String,
    },
}

impl Commutes for ConversationCommand {
    fn commutes(&self) -> bool {
        use ConversationCommand::*;
        match self {
            PostMessage { .. }
            | PostBotReply { .. }
            | ReceiveEmail { .. }
            | ReceiveSlackMessage { .. }
            | ReceiveSms { .. }
            | Tag { .. }
            | Untag { .. }
            | MarkRead { .. }
            | Wake { .. }
            | HandToHuman { .. }
            | MarkSeenByCustomer { .. }
            | RecordEmailNotification { .. }
            | StartSlackThread { .. }
            | RecordSlackPostFailure { .. }
            | RecordSmsSent { .. }
            | RecordSmsStatus { .. }
            | RecordSmsFailure { .. }
            | RecordEmailFailure { .. }
            | RecordAgentNotification { .. }
            | Archive { .. } => true,
            Create { .. } | Close { .. } | Reopen { .. } | Snooze { .. } | SetPriority { .. } | Assign { .. } => false,
        }
    }
}
