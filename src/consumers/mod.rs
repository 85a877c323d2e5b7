//! Consumers of effects without a vendor of their own: outbound webhooks ([`webhooks`]).

pub mod webhooks;
