//! The stored shape of an event: what is appended, what is read back, and where a reader stands.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::ids::{AccountId, CustomerId, UserId};

/// The stream an event belongs to: one aggregate instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StreamRef {
    pub stream_type: String,
    pub stream_id: String,
}

impl StreamRef {
    pub fn new(stream_type: impl Into<String>, stream_id: impl ToString) -> Self {
        Self {
            stream_type: stream_type.into(),
            stream_id: stream_id.to_string(),
        }
    }
}

impl std::fmt::Display for StreamRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.stream_type, self.stream_id)
    }
}

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    Agent {
        user_id: UserId,
    },
    Customer {
        customer_id: CustomerId,
    },
    Bot,
    /// Netia itself: the scheduler, a consumer, the CLI.
    System {
        component: String,
    },
}

/// Context stored beside each event: who, for which account, and the causal chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub actor: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<AccountId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

impl Metadata {
    pub fn new(actor: Actor) -> Self {
        Self {
            actor,
            account_id: None,
            correlation_id: None,
            causation_id: None,
            ip: None,
        }
    }

    pub fn system(component: &str) -> Self {
        Self::new(Actor::System {
            component: component.to_owned(),
        })
    }

    pub fn with_account(mut self, account_id: AccountId) -> Self {
        self.account_id = Some(account_id);
        self
    }

    pub fn with_correlation(mut self, correlation_id: Uuid) -> Self {
        self.correlation_id = Some(correlation_id);
        self
    }

    /// Written because of `cause`: its id is the causation, and the chain's correlation carries on
    /// (the cause's correlation id, or the cause itself when it started the chain). So a customer
    /// message, the bot's reply to it and the email about that reply share one correlation id.
    pub fn caused_by(mut self, cause: &RecordedEvent) -> Self {
        self.causation_id = Some(cause.event_id);
        self.correlation_id = Some(
            cause
                .metadata
                .get("correlation_id")
                .and_then(|c| c.as_str())
                .and_then(|c| c.parse().ok())
                .unwrap_or(cause.event_id),
        );
        self
    }
}

/// An event ready to be appended; the store assigns position, version, time and hash.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub event_version: i32,
    pub payload: Value,
    pub metadata: Value,
    /// Whose personal data it holds (a customer id), when its type has personal fields
    /// ([`crate::personal::fields`]): the store seals them with that customer's data key (ADR
    /// 0023). Not stored as such: the sealed values name their subject.
    pub subject: Option<String>,
}

impl NewEvent {
    pub fn new(event_type: impl Into<String>, event_version: i32, payload: Value, metadata: Value) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            event_version,
            payload,
            metadata,
            subject: None,
        }
    }

    /// The same event, holding `subject`'s personal data.
    pub fn with_subject(mut self, subject: Option<String>) -> Self {
        self.subject = subject;
        self
    }
}

/// An event as stored in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// Log order across all streams: appends are serialized and each takes its positions under the
    /// append lock, so position order is commit order (ADR 0006, ADR 0016). Readers and checkpoints
    /// use this alone.
    pub global_position: i64,
    /// The writing transaction's id (PostgreSQL `xid8`; the position of the first event of the
    /// append on SQLite), for diagnostics only: it is not monotonic across a dump and restore or a
    /// move to another cluster, so nothing orders by it.
    pub tx_id: u64,
    pub event_id: Uuid,
    pub stream_type: String,
    pub stream_id: String,
    /// Position within the stream, from 1, contiguous.
    pub version: i64,
    pub event_type: String,
    pub event_version: i32,
    pub payload: Value,
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
    /// `sha256(previous event's hash ‖ canonical form of this event)`.
    pub hash: Vec<u8>,
    /// The typed form of `payload` once decoded ([`crate::DomainEvent::decode_shared`]); empty
    /// (`Default`) in an event just read or built.
    pub decoded: crate::decoded::Decoded,
}

impl RecordedEvent {
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            position: self.global_position,
        }
    }

    pub fn stream(&self) -> StreamRef {
        StreamRef::new(self.stream_type.clone(), &self.stream_id)
    }
}

/// Where a reader of the whole log stands: the `global_position` of the last event it has handled
/// (0 before the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    pub position: i64,
}

impl Checkpoint {
    /// Before the first event.
    pub const START: Checkpoint = Checkpoint { position: 0 };

    /// Right after the event at `position`.
    pub const fn at(position: i64) -> Self {
        Self { position }
    }
}
