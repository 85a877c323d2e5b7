//! Why a conversation refuses a command.

/// Typed refusals; the HTTP edge maps them to 404/409/422.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversationError {
    #[error("conversation not found")]
    NotFound,
    #[error("conversation already exists")]
    AlreadyExists,
    #[error("message body is empty")]
    EmptyBody,
    #[error("message body is longer than {max} characters")]
    BodyTooLong { max: usize },
    #[error("message body contains control characters")]
    InvalidBody,
    #[error("an idempotency key or external id must be 1 to {max} printable characters")]
    InvalidKey { max: usize },
    #[error("only agents can write private notes")]
    PrivateNoteByCustomer,
    #[error("this customer is not the conversation's customer")]
    WrongCustomer,
    #[error("snooze time must be in the future")]
    SnoozeInPast,
    #[error("tag must be 1 to 64 printable characters")]
    InvalidTag,
    #[error("subject must be at most 255 printable characters")]
    InvalidSubject,
    #[error("a human owns this conversation; the bot stays silent")]
    HandedToHuman,
    #[error("only closed conversations can be archived")]
    NotClosed,
    #[error("conversation was closed less than {days} days ago")]
    ClosedTooRecently { days: i64 },
    #[error("a Slack thread needs a channel id and a message ts")]
    InvalidSlackThread,
    #[error("an external agent writes only through a channel (Slack, email)")]
    ExternalAgentOutsideChannel,
    #[error("an external agent needs a name of 1 to {max} printable characters and a channel user id")]
    InvalidExternalAgent { max: usize },
    #[error("at most {max} attachments per message")]
    TooManyAttachments { max: usize },
    #[error(
        "an attachment needs a key and a file name of 1 to 255 printable characters, a media type, a size above 0 and a SHA-256 in hex"
    )]
    InvalidAttachment,
    #[error("an SMS record needs Twilio message SIDs (SM…) and a known status")]
    InvalidSms,
}
