//! Netia's read models: what agents, auditors and analysts read, derived from the event log.
//!
//! A read model is a [`Projection`]: it owns some tables and applies events to them. The runtime
//! (in the server) feeds it committed events in log order and advances its checkpoint in the same
//! transaction as its table writes, so each event is applied exactly once. Applying an event twice
//! must change nothing either (projections guard with stream versions or keys), so a rebuild or a
//! replay is always safe. Read models live in the events' database and use SQL that runs unchanged on
//! PostgreSQL and SQLite through sqlx's `Any` driver: ids and times are stored as text (times in the
//! fixed-width RFC 3339 form of `netia_events::chain::format_time`, so they sort as text).

pub mod ai_outcomes;
pub mod checkpoint;
pub mod conversation;
pub mod customer;
pub mod history;
pub mod inbox;
mod inbox_batch;
pub mod reporting;
mod rows;

use async_trait::async_trait;
use netia_events::{EventError, RecordedEvent};
use sqlx::AnyConnection;

pub use ai_outcomes::{AiOutcomesProjection, AiReport, Outcome};
pub use checkpoint::Checkpoints;
pub use conversation::{ConversationProjection, MessageRow, message_row, message_row_of};
pub use customer::{CustomerProjection, CustomerRow};
pub use history::{HistoryEntry, history};
pub use inbox::{Assignee, InboxProjection, InboxQuery, InboxRow};
pub use reporting::{DayReport, Durations, ReportingProjection};

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Event(#[from] EventError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored read-model data is invalid: {0}")]
    Invalid(String),
}

/// `$start, $start+1, …` for `n` parameters (PostgreSQL and SQLite both read `$n`).
pub(crate) fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A read model fed from the log.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// Stable name: the key of its checkpoint.
    fn name(&self) -> &'static str;

    /// The tables it owns (created by `setup`), for rebuilds to swap in.
    fn tables(&self) -> &'static [&'static str];

    /// The version of its tables and rules, stored with its checkpoint. Raise it when a change to
    /// the projection makes the stored tables wrong (a new column, a changed rule): the server then
    /// builds the new version in a shadow from the whole log while the old tables keep serving,
    /// and swaps it in (ADR 0019). A server whose code is older than the stored version leaves
    /// that projection alone.
    fn version(&self) -> i64 {
        1
    }

    /// Creates its tables, and the indexes applying events reads through, if they do not exist.
    async fn setup(&self, conn: &mut AnyConnection) -> Result<(), ProjectionError>;

    /// The indexes only its queries use, never applying events (`CREATE INDEX IF NOT EXISTS …`
    /// statements). A rebuild creates them once its shadow is full — one sort per index rather than
    /// an insertion into each for every row written; a live projector creates them with its tables
    /// ([`Projection::setup_with_query_indexes`]).
    fn query_indexes(&self) -> &'static [&'static str] {
        &[]
    }

    /// Creates the [`Projection::query_indexes`] that do not exist.
    async fn create_query_indexes(&self, conn: &mut AnyConnection) -> Result<(), ProjectionError> {
        for statement in self.query_indexes() {
            sqlx::query(statement).execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// [`Projection::setup`], then [`Projection::create_query_indexes`]: what a live read model needs.
    async fn setup_with_query_indexes(&self, conn: &mut AnyConnection) -> Result<(), ProjectionError> {
        self.setup(conn).await?;
        self.create_query_indexes(conn).await
    }

    /// Applies one event inside the caller's transaction. Events of streams it does not read are
    /// ignored; applying an event a second time changes nothing. Read models are built from
    /// payloads: a rebuild reads the log without metadata (`event.metadata` is `Null` there).
    async fn apply(&self, conn: &mut AnyConnection, event: &RecordedEvent) -> Result<(), ProjectionError>;

    /// Applies a batch in log order, inside the caller's transaction. The default applies one event
    /// at a time; projections override it to read and write many rows per statement. On failure it
    /// names the position of the event it was at (or of the batch's first event).
    async fn apply_batch(
        &self,
        conn: &mut AnyConnection,
        events: &[RecordedEvent],
    ) -> Result<(), (i64, ProjectionError)> {
        for event in events {
            self.apply(conn, event).await.map_err(|e| (event.global_position, e))?;
        }
        Ok(())
    }
}
