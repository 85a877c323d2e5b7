//! The conversation aggregate: messages of every kind and the conversation's state.

mod aggregate;
mod command;
mod error;
mod slack;
mod sms;
#[cfg(test)]
mod tests;

pub use aggregate::{ARCHIVE_AFTER_DAYS, Conversation, MAX_ATTACHMENTS, Status};
pub use command::ConversationCommand;
pub use error::ConversationError;
