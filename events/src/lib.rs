//! Netia's events: typed payloads per aggregate, the stored envelope, the hash chain and upcasting. No I/O.

pub mod account;
pub mod chain;
pub mod codec;
pub mod conversation;
pub mod customer;
pub mod decoded;
pub mod envelope;
pub mod external_id;
pub mod ids;
pub mod personal;
pub mod user;

pub use codec::{DecodeError, DomainEvent, EventError};
pub use envelope::{Actor, Checkpoint, Metadata, NewEvent, RecordedEvent, StreamRef};
pub use ids::{AccountId, ConversationId, CustomerId, EventId, InboxId, MessageId, UserId};
