//! Channels: each vendor's client (base URL configurable, so tests use a local fake), the
//! verification of what it sends us, and the consumer that performs its effects.

pub mod slack;
