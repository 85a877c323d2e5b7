//! The `ai_outcomes` read model: what the AI assistant did in each conversation, for the question
//! every buyer of AI support asks — how many conversations the bot resolved alone, how many it
//! handed to a person and why, how fast a person answered after a hand-off, and how many "resolved"
//! conversations came back.
//!
//! One row per conversation (`ai_outcomes`), attributed to the UTC day it opened:
//! - `bot_answers`: the model's replies (`BotMessagePosted` that is not a fallback);
//! - `fallbacks`: fallback messages posted because every model call failed;
//! - `handed_off_at` and `handoff_reason`, the first hand-off only:
//!   - `customer_asked`: the customer asked for a person (`HandedToHuman`, reason `customer_asked`);
//!   - `model_handoff`: the model chose to hand over (its `handoff_to_human` tool);
//!   - `model_failed`: the model failed and the fallback message went out;
//!   - `agent_replied`: an agent answered in public after the bot had answered, without any of the above;
//! - `handoff_to_human_ms`: from an explicit hand-off (the first three reasons) to the first public
//!   reply of a person after it (agents, or external agents on email and Slack); none for
//!   `agent_replied`, where the reply is the hand-off;
//! - `bot_involved`: the bot answered, failed, or was asked to step aside;
//! - `resolved_without_human`: closed now, the bot answered, nobody took over and no person replied;
//! - `reopened_within_7_days`: reopened at most 7 days (604,800 s) after a close.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use netia_events::chain::format_time;
use netia_events::conversation::{Author, ConversationEvent, HandoffReason};
use netia_events::{AccountId, DomainEvent, RecordedEvent};
use sqlx::{AnyConnection, FromRow, Row};

use crate::reporting::{Durations, day, parse};
use crate::rows::{Cell, insert_rows, replace_on, select_in};
use crate::{Projection, ProjectionError};

pub struct AiOutcomesProjection;

/// A reopen this soon after a close counts against the close.
pub const REOPEN_WINDOW: Duration = Duration::days(7);

/// Why the bot stopped being the one answering (see the module documentation).
pub const HANDOFF_REASONS: [&str; 4] = ["agent_replied", "customer_asked", "model_handoff", "model_failed"];

/// One conversation's outcome, as stored.
#[derive(Debug, Clone, Default, PartialEq, FromRow, serde::Serialize)]
pub struct Outcome {
    pub conversation_id: String,
    pub account_id: String,
    pub opened_at: String,
    pub opened_day: String,
    pub bot_answers: i64,
    pub fallbacks: i64,
    pub handed_off_at: Option<String>,
    pub handoff_reason: Option<String>,
    pub handoff_to_human_ms: Option<i64>,
    /// 1 once a person replied in public (before or after any hand-off).
    pub human_replied: i64,
    pub closes: i64,
    /// When it was closed, while it is closed.
    pub closed_at: Option<String>,
    pub last_closed_at: Option<String>,
    pub reopened_within_7_days: i64,
    pub bot_involved: i64,
    pub resolved_without_human: i64,
    /// The last conversation event applied.
    pub version: i64,
}

const COLUMNS: [&str; 17] = [
    "conversation_id",
    "account_id",
    "opened_at",
    "opened_day",
    "bot_answers",
    "fallbacks",
    "handed_off_at",
    "handoff_reason",
    "handoff_to_human_ms",
    "human_replied",
    "closes",
    "closed_at",
    "last_closed_at",
    "reopened_within_7_days",
    "bot_involved",
    "resolved_without_human",
    "version",
];

impl Outcome {
    /// A conversation just opened at `at`.
    pub fn opened(conversation_id: &str, account_id: &str, at: DateTime<Utc>, version: i64) -> Self {
        Self {
            conversation_id: conversation_id.to_owned(),
            account_id: account_id.to_owned(),
            opened_at: format_time(at),
            opened_day: day(at),
            version,
            ..Self::default()
        }
    }

    /// Applies the conversation's event at `version` (ignored if it is not after the last one
    /// applied). Returns whether the row changed.
    pub fn apply(&mut self, version: i64, event: &ConversationEvent) -> Result<bool, ProjectionError> {
        use ConversationEvent::*;
        if version <= self.version {
            return Ok(false);
        }
        self.version = version;
        match event {
            BotMessagePosted(e) if e.fallback => {
                self.fallbacks += 1;
                self.hand_off(e.sent_at, "model_failed");
            }
            BotMessagePosted(_) => self.bot_answers += 1,
            HandedToHuman(e) => self.hand_off(
                e.at,
                match e.reason {
                    HandoffReason::CustomerAsked => "customer_asked",
                    HandoffReason::Model => "model_handoff",
                },
            ),
            AgentMessagePosted(e) => self.human_reply(e.sent_at)?,
            EmailMessageReceived(e) if !matches!(e.author, Author::Customer { .. }) => self.human_reply(e.sent_at)?,
            SlackMessageReceived(e) if !matches!(e.author, Author::Customer { .. }) => self.human_reply(e.sent_at)?,
            ConversationClosed(e) => {
                self.closes += 1;
                self.closed_at = Some(format_time(e.closed_at));
                self.last_closed_at = self.closed_at.clone();
            }
            ConversationReopened(e) => {
                if let Some(closed) = &self.last_closed_at
                    && e.reopened_at - parse(closed)? <= REOPEN_WINDOW
                {
                    self.reopened_within_7_days = 1;
                }
                self.closed_at = None;
            }
            _ => {}
        }
        self.bot_involved = i64::from(
            self.bot_answers + self.fallbacks > 0
                || matches!(self.handoff_reason.as_deref(), Some("customer_asked" | "model_handoff")),
        );
        self.resolved_without_human = i64::from(
            self.closed_at.is_some() && self.bot_answers > 0 && self.handed_off_at.is_none() && self.human_replied == 0,
        );
        Ok(true)
    }

    fn hand_off(&mut self, at: DateTime<Utc>, reason: &str) {
        if self.handed_off_at.is_none() {
            self.handed_off_at = Some(format_time(at));
            self.handoff_reason = Some(reason.to_owned());
        }
    }

    fn human_reply(&mut self, at: DateTime<Utc>) -> Result<(), ProjectionError> {
        if self.handed_off_at.is_none() && self.bot_answers + self.fallbacks > 0 {
            self.hand_off(at, "agent_replied");
        } else if let Some(handed) = &self.handed_off_at
            && self.human_replied == 0
            && self.handoff_reason.as_deref() != Some("agent_replied")
        {
            self.handoff_to_human_ms = Some((at - parse(handed)?).num_milliseconds().max(0));
        }
        self.human_replied = 1;
        Ok(())
    }

    fn cells(self) -> Vec<Cell> {
        vec![
            self.conversation_id.into(),
            self.account_id.into(),
            self.opened_at.into(),
            self.opened_day.into(),
            self.bot_answers.into(),
            self.fallbacks.into(),
            self.handed_off_at.into(),
            self.handoff_reason.into(),
            self.handoff_to_human_ms.into(),
            self.human_replied.into(),
            self.closes.into(),
            self.closed_at.into(),
            self.last_closed_at.into(),
            self.reopened_within_7_days.into(),
            self.bot_involved.into(),
            self.resolved_without_human.into(),
            self.version.into(),
        ]
    }
}

/// The counts of one day (or of a whole range).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct AiCounts {
    /// Conversations opened.
    pub conversations: i64,
    /// Of those, the ones the bot took part in.
    pub bot_involved: i64,
    /// The model's answers (fallback messages not included).
    pub bot_answers: i64,
    /// Fallback messages (the model failed).
    pub fallbacks: i64,
    pub handed_off: i64,
    /// Hand-offs by reason: `agent_replied`, `customer_asked`, `model_handoff`, `model_failed`.
    pub handoff_reasons: BTreeMap<String, i64>,
    pub resolved_without_human: i64,
    /// Bot conversations closed at least once.
    pub closed: i64,
    /// Bot conversations reopened within 7 days of a close.
    pub reopened_within_7_days: i64,
}

impl AiCounts {
    fn add(&mut self, other: &AiCounts) {
        self.conversations += other.conversations;
        self.bot_involved += other.bot_involved;
        self.bot_answers += other.bot_answers;
        self.fallbacks += other.fallbacks;
        self.handed_off += other.handed_off;
        for (reason, n) in &other.handoff_reasons {
            *self.handoff_reasons.entry(reason.clone()).or_default() += n;
        }
        self.resolved_without_human += other.resolved_without_human;
        self.closed += other.closed;
        self.reopened_within_7_days += other.reopened_within_7_days;
    }
}

/// Shares of the bot's conversations (`None` when there are none to divide by).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct AiRates {
    /// `resolved_without_human / bot_involved`.
    pub resolved_without_human: Option<f64>,
    /// `handed_off / bot_involved`.
    pub handed_off: Option<f64>,
    /// `reopened_within_7_days / closed`.
    pub reopened_within_7_days: Option<f64>,
}

/// One day's counts, for the chart.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct AiDay {
    /// `YYYY-MM-DD`, UTC: the day the conversations opened.
    pub day: String,
    #[serde(flatten)]
    pub counts: AiCounts,
}

/// AI outcomes of the conversations an account opened from `from` to `to`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct AiReport {
    pub from: String,
    pub to: String,
    #[serde(flatten)]
    pub totals: AiCounts,
    pub rates: AiRates,
    /// From an explicit hand-off to the first reply of a person.
    pub handoff_to_human_reply: Durations,
    /// Days with any conversation, in order.
    pub days: Vec<AiDay>,
}

fn rate(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

impl AiOutcomesProjection {
    /// The report of `account` over the conversations opened from `from` to `to` (inclusive,
    /// `YYYY-MM-DD`, UTC).
    pub async fn report(
        conn: &mut AnyConnection,
        account: AccountId,
        from: &str,
        to: &str,
    ) -> Result<AiReport, ProjectionError> {
        let account = account.to_string();
        let mut days: BTreeMap<String, AiCounts> = BTreeMap::new();
        // Sums cast to BIGINT: PostgreSQL sums BIGINT as NUMERIC.
        let rows = sqlx::query(
            "SELECT opened_day, handoff_reason, COUNT(*) AS conversations, \
             CAST(SUM(bot_involved) AS BIGINT) AS bot_involved, CAST(SUM(bot_answers) AS BIGINT) AS bot_answers, \
             CAST(SUM(fallbacks) AS BIGINT) AS fallbacks, \
             CAST(SUM(resolved_without_human) AS BIGINT) AS resolved_without_human, \
             CAST(SUM(CASE WHEN bot_involved = 1 AND closes > 0 THEN 1 ELSE 0 END) AS BIGINT) AS closed, \
             CAST(SUM(CASE WHEN bot_involved = 1 THEN reopened_within_7_days ELSE 0 END) AS BIGINT) AS reopened \
             FROM ai_outcomes WHERE account_id = $1 AND opened_day >= $2 AND opened_day <= $3 \
             GROUP BY opened_day, handoff_reason",
        )
        .bind(account.clone())
        .bind(from.to_owned())
        .bind(to.to_owned())
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            let counts = days.entry(row.try_get("opened_day")?).or_default();
            let reason: Option<String> = row.try_get("handoff_reason")?;
            let conversations: i64 = row.try_get("conversations")?;
            counts.conversations += conversations;
            counts.bot_involved += row.try_get::<i64, _>("bot_involved")?;
            counts.bot_answers += row.try_get::<i64, _>("bot_answers")?;
            counts.fallbacks += row.try_get::<i64, _>("fallbacks")?;
            counts.resolved_without_human += row.try_get::<i64, _>("resolved_without_human")?;
            counts.closed += row.try_get::<i64, _>("closed")?;
            counts.reopened_within_7_days += row.try_get::<i64, _>("reopened")?;
            if let Some(reason) = reason {
                counts.handed_off += conversations;
                *counts.handoff_reasons.entry(reason).or_default() += conversations;
            }
        }
        let waits: Vec<i64> = sqlx::query_scalar(
            "SELECT handoff_to_human_ms FROM ai_outcomes WHERE account_id = $1 AND opened_day >= $2 \
             AND opened_day <= $3 AND handoff_to_human_ms IS NOT NULL",
        )
        .bind(account)
        .bind(from.to_owned())
        .bind(to.to_owned())
        .fetch_all(&mut *conn)
        .await?;
        let mut totals = AiCounts::default();
        for counts in days.values() {
            totals.add(counts);
        }
        for reason in HANDOFF_REASONS {
            totals.handoff_reasons.entry(reason.to_owned()).or_default();
        }
        Ok(AiReport {
            from: from.to_owned(),
            to: to.to_owned(),
            rates: AiRates {
                resolved_without_human: rate(totals.resolved_without_human, totals.bot_involved),
                handed_off: rate(totals.handed_off, totals.bot_involved),
                reopened_within_7_days: rate(totals.reopened_within_7_days, totals.closed),
            },
            totals,
            handoff_to_human_reply: Durations::of(waits),
            days: days.into_iter().map(|(day, counts)| AiDay { day, counts }).collect(),
        })
    }

    /// Every conversation's outcome in `account`, in conversation id order.
    pub async fn outcomes(conn: &mut AnyConnection, account: AccountId) -> Result<Vec<Outcome>, ProjectionError> {
        let select = format!(
            "SELECT {} FROM ai_outcomes WHERE account_id = $1 ORDER BY conversation_id",
            COLUMNS.join(", ")
        );
        Ok(sqlx::query_as(&select)
            .bind(account.to_string())
            .fetch_all(&mut *conn)
            .await?)
    }
}

#[async_trait]
impl Projection for AiOutcomesProjection {
    fn name(&self) -> &'static str {
        "ai_outcomes"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["ai_outcomes"]
    }

    fn query_indexes(&self) -> &'static [&'static str] {
        &["CREATE INDEX IF NOT EXISTS ai_outcomes_by_day ON ai_outcomes (account_id, opened_day)"]
    }

    async fn setup(&self, conn: &mut AnyConnection) -> Result<(), ProjectionError> {
        for statement in [
            "CREATE TABLE IF NOT EXISTS ai_outcomes (conversation_id TEXT PRIMARY KEY, account_id TEXT NOT NULL, \
                opened_at TEXT NOT NULL, opened_day TEXT NOT NULL, bot_answers BIGINT NOT NULL, \
                fallbacks BIGINT NOT NULL, handed_off_at TEXT, handoff_reason TEXT, handoff_to_human_ms BIGINT, \
                human_replied BIGINT NOT NULL, closes BIGINT NOT NULL, closed_at TEXT, last_closed_at TEXT, \
                reopened_within_7_days BIGINT NOT NULL, bot_involved BIGINT NOT NULL, \
                resolved_without_human BIGINT NOT NULL, version BIGINT NOT NULL)",
        ] {
            sqlx::query(statement).execute(&mut *conn).await?;
        }
        Ok(())
    }

    async fn apply(&self, conn: &mut AnyConnection, event: &RecordedEvent) -> Result<(), ProjectionError> {
        self.apply_batch(conn, std::slice::from_ref(event))
            .await
            .map_err(|(_, e)| e)
    }

    /// Loads the rows of the conversations a batch touches, applies its events in memory (each
    /// once: a row records the last version applied) and writes the changed rows back.
    async fn apply_batch(
        &self,
        conn: &mut AnyConnection,
        events: &[RecordedEvent],
    ) -> Result<(), (i64, ProjectionError)> {
        let first = events.first().map_or(0, |e| e.global_position);
        let ids = crate::rows::stream_ids(events, ConversationEvent::STREAM_TYPE);
        if ids.is_empty() {
            return Ok(());
        }
        let select = format!(
            "SELECT {} FROM ai_outcomes WHERE conversation_id IN ({{ids}})",
            COLUMNS.join(", ")
        );
        let loaded: Vec<Outcome> = select_in(conn, &select, &ids).await.map_err(|e| (first, e.into()))?;
        let mut rows: HashMap<String, (Outcome, bool)> = loaded
            .into_iter()
            .map(|o| (o.conversation_id.clone(), (o, false)))
            .collect();
        for event in events {
            if event.stream_type != ConversationEvent::STREAM_TYPE {
                continue;
            }
            let decoded = ConversationEvent::decode_shared(event).map_err(|e| (event.global_position, e.into()))?;
            let decoded = &*decoded;
            if let ConversationEvent::ConversationCreated(e) = decoded {
                rows.entry(event.stream_id.clone()).or_insert_with(|| {
                    let row = Outcome::opened(&event.stream_id, &e.account_id.to_string(), e.created_at, event.version);
                    (row, true)
                });
                continue;
            }
            if let Some((row, dirty)) = rows.get_mut(&event.stream_id) {
                *dirty |= row
                    .apply(event.version, decoded)
                    .map_err(|e| (event.global_position, e))?;
            }
        }
        let changed: Vec<Vec<Cell>> = rows
            .into_values()
            .filter(|(_, dirty)| *dirty)
            .map(|(row, _)| row.cells())
            .collect();
        let replace = replace_on("conversation_id", &COLUMNS);
        insert_rows(conn, "ai_outcomes", &COLUMNS, &changed, &replace)
            .await
            .map_err(|e| (first, e.into()))
    }
}

#[cfg(test)]
mod tests;
