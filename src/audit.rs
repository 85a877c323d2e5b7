//! For auditors: a conversation's history and its state at any instant, and hash-chain verification,
//! all computed from the log alone.

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use netia_commands::Conversation;
use netia_commands::conversation::Status;
use netia_events::chain::BrokenLink;
use netia_events::conversation::{ConversationEvent, Priority};
use netia_events::{ConversationId, DomainEvent, EventError, RecordedEvent, StreamRef, UserId};
use netia_projections::{HistoryEntry, history};
use serde::Serialize;

use crate::store::{EventStore, StoreError, StreamBound};

pub mod anchor;
pub mod rekey;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("conversation {0} not found")]
    NotFound(ConversationId),
    #[error("conversation {0} did not exist yet at {1}")]
    NotYet(ConversationId, DateTime<Utc>),
    #[error(transparent)]
    Corrupt(#[from] EventError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A conversation's state as the log says it was at `as_of`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversationState {
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snoozed_until: Option<DateTime<Utc>>,
    pub priority: &'static str,
    pub assignee: Option<UserId>,
    pub tags: Vec<String>,
    pub archived: bool,
    pub handed_to_human: bool,
    pub messages: usize,
    pub version: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Replay {
    pub conversation_id: ConversationId,
    /// The instant replayed to (`None`: now).
    pub as_of: Option<DateTime<Utc>>,
    pub events: Vec<HistoryEntry>,
    pub state: ConversationState,
}

/// Replays a conversation's events up to `as_of` (inclusive) and folds them into its state.
pub async fn replay_conversation(
    store: &dyn EventStore,
    id: ConversationId,
    as_of: Option<DateTime<Utc>>,
) -> Result<Replay, AuditError> {
    let stream = StreamRef::new(ConversationEvent::STREAM_TYPE, id);
    let bound = as_of.map_or(StreamBound::All, StreamBound::AsOf);
    let recorded = store.read_stream(&stream, bound).await?;
    if recorded.is_empty() {
        return Err(match as_of {
            Some(t) if store.stream_version(&stream).await? > 0 => AuditError::NotYet(id, t),
            _ => AuditError::NotFound(id),
        });
    }
    let mut state = Conversation::default();
    let mut messages = 0;
    for event in &recorded {
        let decoded = ConversationEvent::decode(event)?;
        if is_message(&decoded) {
            messages += 1;
        }
        state.apply(decoded);
    }
    let (status, snoozed_until) = match state.status {
        Status::Open => ("open", None),
        Status::Closed => ("closed", None),
        Status::Snoozed { until } => ("snoozed", Some(until)),
    };
    Ok(Replay {
        conversation_id: id,
        as_of,
        events: history(&recorded)?,
        state: ConversationState {
            status,
            snoozed_until,
            priority: match state.priority {
                Some(Priority::Priority) => "priority",
                _ => "normal",
            },
            assignee: state.assignee,
            tags: state.tags.iter().cloned().collect(),
            archived: state.archived,
            handed_to_human: state.handed_to_human,
            messages,
            version: recorded.last().map_or(0, |e| e.version),
        },
    })
}

fn is_message(event: &ConversationEvent) -> bool {
    use ConversationEvent::*;
    matches!(
        event,
        CustomerMessagePosted(_)
            | AgentMessagePosted(_)
            | PrivateNoteAdded(_)
            | BotMessagePosted(_)
            | EmailMessageReceived(_)
            | SlackMessageReceived(_)
            | SmsMessageReceived(_)
    )
}

/// The outcome of checking hash chains.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    pub streams: usize,
    pub events: usize,
    pub broken: Vec<(StreamRef, BrokenLink)>,
}

/// Checks the chain of `only` (one stream) or of every stream in the log.
pub async fn verify(store: &dyn EventStore, only: Option<StreamRef>) -> Result<Verification, StoreError> {
    verify_visiting(store, only, |_, _| {}).await
}

/// [`verify`], showing each stream's events (in version order) to `visit` as it goes.
pub(crate) async fn verify_visiting(
    store: &dyn EventStore,
    only: Option<StreamRef>,
    mut visit: impl FnMut(&StreamRef, &[RecordedEvent]),
) -> Result<Verification, StoreError> {
    // The chain covers what is stored: sealed personal fields as sealed (ADR 0023).
    let store = store.stored();
    let streams = match only {
        Some(stream) => vec![stream],
        None => store.streams().await?,
    };
    let mut report = Verification::default();
    for stream in streams {
        let events = store.read_stream(&stream, StreamBound::All).await?;
        report.streams += 1;
        report.events += events.len();
        if let Some(broken) = store
            .chain()
            .first_broken_link(events.iter().map(|e| (crate::store::chain_input(e), e.hash.as_slice())))
        {
            report.broken.push((stream.clone(), broken));
        }
        visit(&stream, &events);
    }
    Ok(report)
}
