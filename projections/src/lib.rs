//! Netia's read models: what agents, auditors and analysts read, derived from the event log.
//!
//! This crate starts with the auditor's history view; the inbox, conversation, customer and
//! reporting projections build on the same decoded events.

pub mod history;

pub use history::{HistoryEntry, history};
