//! Email as a channel: reading what arrives ([`parse`]), the inbound addresses, and answering
//! email conversations by email.

pub mod agents;
pub mod outbound;
pub mod parse;
pub mod receiver;
