//! Twilio SMS: the REST client, the verification of Twilio's webhooks, and the consumer that
//! sends agents' replies on SMS conversations.

pub mod client;
pub mod outbound;
pub mod signature;
