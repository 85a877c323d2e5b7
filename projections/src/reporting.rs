//! The `reporting` read model: per account and day, conversations opened and closed, messages by
//! kind and per agent, first-response and resolution times (average and median).

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use netia_events::chain::format_time;
use netia_events::conversation::{Author, ConversationEvent};
use netia_events::{AccountId, DomainEvent, RecordedEvent};
use sqlx::{AnyConnection, FromRow, Row};

use crate::rows::{Cell, insert_rows, replace_on, select_in};
use crate::{Projection, ProjectionError};

pub struct ReportingProjection;

/// Average and median of a set of durations, in seconds.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Durations {
    pub count: usize,
    pub average_seconds: Option<f64>,
    pub median_seconds: Option<f64>,
}

impl Durations {
    /// Average and median of `millis` (milliseconds).
    pub(crate) fn of(mut millis: Vec<i64>) -> Self {
        millis.sort_unstable();
        let count = millis.len();
        if count == 0 {
            return Self::default();
        }
        let average = millis.iter().map(|&m| m as f64).sum::<f64>() / count as f64 / 1_000.0;
        let median = if count % 2 == 1 {
            millis[count / 2] as f64
        } else {
            (millis[count / 2 - 1] + millis[count / 2]) as f64 / 2.0
        } / 1_000.0;
        Self {
            count,
            average_seconds: Some(average),
            median_seconds: Some(median),
        }
    }
}

/// One day of one account.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct DayReport {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub opened: i64,
    pub closed: i64,
    /// By kind: customer, agent, note, bot, email, slack, sms.
    pub messages: BTreeMap<String, i64>,
    /// Public replies per agent (user id).
    pub agent_replies: BTreeMap<String, i64>,
    /// For conversations opened that day: first customer message → first agent reply.
    pub first_response: Durations,
    /// For closes that day: opened → closed.
    pub resolution: Durations,
}

/// The UTC day of `at`, `YYYY-MM-DD`.
pub(crate) fn day(at: DateTime<Utc>) -> String {
    format_time(at)[..10].to_owned()
}

impl ReportingProjection {
    /// Days from `from` to `to` (inclusive, `YYYY-MM-DD`) that had any activity.
    pub async fn report(
        conn: &mut AnyConnection,
        account: AccountId,
        from: &str,
        to: &str,
    ) -> Result<Vec<DayReport>, ProjectionError> {
        let account = account.to_string();
        let mut days: BTreeMap<String, DayReport> = BTreeMap::new();
        let counters = sqlx::query(
            "SELECT day, metric, user_id, value FROM reporting_daily \
             WHERE account_id = $1 AND day >= $2 AND day <= $3",
        )
        .bind(account.clone())
        .bind(from.to_owned())
        .bind(to.to_owned())
        .fetch_all(&mut *conn)
        .await?;
        for row in counters {
            let d: String = row.try_get("day")?;
            let metric: String = row.try_get("metric")?;
            let user: String = row.try_get("user_id")?;
            let value: i64 = row.try_get("value")?;
            let report = days.entry(d.clone()).or_insert_with(|| DayReport {
                day: d,
                ..Default::default()
            });
            match metric.as_str() {
                "opened" => report.opened += value,
                "closed" => report.closed += value,
                "agent_reply" => *report.agent_replies.entry(user).or_default() += value,
                kind => {
                    if let Some(kind) = kind.strip_prefix("messages:") {
                        *report.messages.entry(kind.to_owned()).or_default() += value;
                    }
                }
            }
        }
        let mut first: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for row in sqlx::query(
            "SELECT opened_day, first_response_ms FROM reporting_conversations \
             WHERE account_id = $1 AND opened_day >= $2 AND opened_day <= $3 AND first_response_ms IS NOT NULL",
        )
        .bind(account.clone())
        .bind(from.to_owned())
        .bind(to.to_owned())
        .fetch_all(&mut *conn)
        .await?
        {
            first
                .entry(row.try_get("opened_day")?)
                .or_default()
                .push(row.try_get("first_response_ms")?);
        }
        let mut resolved: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for row in sqlx::query(
            "SELECT day, resolution_ms FROM reporting_resolutions WHERE account_id = $1 AND day >= $2 AND day <= $3",
        )
        .bind(account)
        .bind(from.to_owned())
        .bind(to.to_owned())
        .fetch_all(&mut *conn)
        .await?
        {
            resolved
                .entry(row.try_get("day")?)
                .or_default()
                .push(row.try_get("resolution_ms")?);
        }
        for (d, millis) in first {
            let report = days.entry(d.clone()).or_insert_with(|| DayReport {
                day: d,
                ..Default::default()
            });
            report.first_response = Durations::of(millis);
        }
        for (d, millis) in resolved {
            let report = days.entry(d.clone()).or_insert_with(|| DayReport {
                day: d,
                ..Default::default()
            });
            report.resolution = Durations::of(millis);
        }
        Ok(days.into_values().collect())
    }
}

#[async_trait]
impl Projection for ReportingProjection {
    fn name(&self) -> &'static str {
        "reporting"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["reporting_conversations", "reporting_daily", "reporting_resolutions"]
    }

    fn query_indexes(&self) -> &'static [&'static str] {
        &[
            "CREATE INDEX IF NOT EXISTS reporting_conversations_by_day ON reporting_conversations (account_id, opened_day)",
            "CREATE INDEX IF NOT EXISTS reporting_resolutions_by_day ON reporting_resolutions (account_id, day)",
        ]
    }

    async fn setup(&self, conn: &mut AnyConnection) -> Result<(), ProjectionError> {
        for statement in [
            "CREATE TABLE IF NOT EXISTS reporting_conversations (conversation_id TEXT PRIMARY KEY, \
                account_id TEXT NOT NULL, opened_at TEXT NOT NULL, opened_day TEXT NOT NULL, \
                first_customer_at TEXT, first_response_ms BIGINT, version BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS reporting_daily (account_id TEXT NOT NULL, day TEXT NOT NULL, \
                metric TEXT NOT NULL, user_id TEXT NOT NULL, value BIGINT NOT NULL, \
                PRIMARY KEY (account_id, day, metric, user_id))",
            "CREATE TABLE IF NOT EXISTS reporting_resolutions (conversation_id TEXT NOT NULL, version BIGINT NOT NULL, \
                account_id TEXT NOT NULL, day TEXT NOT NULL, resolution_ms BIGINT NOT NULL, \
                PRIMARY KEY (conversation_id, version))",
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

    /// Loads the conversations a batch touches, applies its events in memory (each once: a
    /// conversation's row records the last version applied), then writes the rows, the
    /// resolutions and the summed day counters with a few multi-row statements.
    async fn apply_batch(
        &self,
        conn: &mut AnyConnection,
        events: &[RecordedEvent],
    ) -> Result<(), (i64, ProjectionError)> {
        let first = events.first().map_or(0, |e| e.global_position);
        let ids = crate::rows::stream_ids(events, ConversationEvent::STREAM_TYPE);
        let select = format!(
            "SELECT {} FROM reporting_conversations WHERE conversation_id IN ({{ids}})",
            CONVERSATION.join(", ")
        );
        let loaded: Vec<Conversation> = select_in(conn, &select, &ids).await.map_err(|e| (first, e.into()))?;
        let mut batch = Batch {
            conversations: loaded.into_iter().map(|c| (c.conversation_id.clone(), c)).collect(),
            ..Batch::default()
        };
        for event in events {
            if event.stream_type == ConversationEvent::STREAM_TYPE {
                let decoded = ConversationEvent::decode_shared(event).map_err(|e| (event.global_position, e.into()))?;
                batch.apply(event, &decoded).map_err(|e| (event.global_position, e))?;
            }
        }
        batch.write(conn).await.map_err(|e| (first, e.into()))
    }
}

/// A conversation's row: when it opened and what is known about its first response.
#[derive(Debug, Clone, FromRow)]
struct Conversation {
    conversation_id: String,
    account_id: String,
    opened_at: String,
    opened_day: String,
    first_customer_at: Option<String>,
    first_response_ms: Option<i64>,
    version: i64,
    #[sqlx(skip)]
    dirty: bool,
}

const CONVERSATION: [&str; 7] = [
    "conversation_id",
    "account_id",
    "opened_at",
    "opened_day",
    "first_customer_at",
    "first_response_ms",
    "version",
];

/// What a batch changes, kept in memory until it is written.
#[derive(Default)]
struct Batch {
    conversations: HashMap<String, Conversation>,
    /// (account, day, metric, user) → increment.
    counters: BTreeMap<(String, String, String, String), i64>,
    /// (conversation, version, account, day, resolution ms).
    resolutions: Vec<Vec<Cell>>,
}

/// A stored RFC 3339 time.
pub(crate) fn parse(time: &str) -> Result<DateTime<Utc>, ProjectionError> {
    DateTime::parse_from_rfc3339(time)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ProjectionError::Invalid(format!("time {time:?}: {e}")))
}

impl Batch {
    fn count(&mut self, account: &str, at: DateTime<Utc>, metric: &str, user: &str) {
        *self
            .counters
            .entry((account.to_owned(), day(at), metric.to_owned(), user.to_owned()))
            .or_default() += 1;
    }

    fn apply(&mut self, event: &RecordedEvent, decoded: &ConversationEvent) -> Result<(), ProjectionError> {
        use ConversationEvent::*;
        let id = &event.stream_id;
        if let ConversationCreated(e) = &decoded {
            if !self.conversations.contains_key(id) {
                let account = e.account_id.to_string();
                self.count(&account, e.created_at, "opened", "");
                self.conversations.insert(
                    id.clone(),
                    Conversation {
                        conversation_id: id.clone(),
                        account_id: account,
                        opened_at: format_time(e.created_at),
                        opened_day: day(e.created_at),
                        first_customer_at: None,
                        first_response_ms: None,
                        version: event.version,
                        dirty: true,
                    },
                );
            }
            return Ok(());
        }
        // Exactly once per event: only when the conversation's row moves past this version.
        let Some(conversation) = self.conversations.get_mut(id) else {
            return Ok(());
        };
        if conversation.version >= event.version {
            return Ok(());
        }
        conversation.version = event.version;
        conversation.dirty = true;
        // (kind, when, from the customer, a person's answer, the agent who answered)
        let (kind, at, from_customer, answer, agent) = match &decoded {
            CustomerMessagePosted(e) => ("customer", e.sent_at, true, false, None),
            AgentMessagePosted(e) => ("agent", e.sent_at, false, true, Some(e.user_id.to_string())),
            PrivateNoteAdded(e) => ("note", e.sent_at, false, false, None),
            BotMessagePosted(e) => ("bot", e.sent_at, false, false, None),
            EmailMessageReceived(e) => channel_message("email", e.sent_at, &e.author),
            SlackMessageReceived(e) => channel_message("slack", e.sent_at, &e.author),
            SmsMessageReceived(e) => ("sms", e.sent_at, true, false, None),
            ConversationClosed(e) => {
                let resolution = (e.closed_at - parse(&conversation.opened_at)?)
                    .num_milliseconds()
                    .max(0);
                let account = conversation.account_id.clone();
                self.resolutions.push(vec![
                    id.clone().into(),
                    event.version.into(),
                    account.clone().into(),
                    day(e.closed_at).into(),
                    resolution.into(),
                ]);
                self.count(&account, e.closed_at, "closed", "");
                return Ok(());
            }
            _ => return Ok(()),
        };
        if from_customer && conversation.first_customer_at.is_none() {
            conversation.first_customer_at = Some(format_time(at));
        }
        if answer
            && conversation.first_response_ms.is_none()
            && let Some(first) = &conversation.first_customer_at
        {
            conversation.first_response_ms = Some((at - parse(first)?).num_milliseconds().max(0));
        }
        let account = conversation.account_id.clone();
        self.count(&account, at, &format!("messages:{kind}"), "");
        if let Some(user) = agent {
            self.count(&account, at, "agent_reply", &user);
        }
        Ok(())
    }

    async fn write(self, conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
        let rows: Vec<Vec<Cell>> = self
            .conversations
            .into_values()
            .filter(|c| c.dirty)
            .map(|c| {
                vec![
                    c.conversation_id.into(),
                    c.account_id.into(),
                    c.opened_at.into(),
                    c.opened_day.into(),
                    c.first_customer_at.into(),
                    c.first_response_ms.into(),
                    c.version.into(),
                ]
            })
            .collect();
        let replace = replace_on("conversation_id", &CONVERSATION);
        insert_rows(conn, "reporting_conversations", &CONVERSATION, &rows, &replace).await?;
        insert_rows(
            conn,
            "reporting_resolutions",
            &["conversation_id", "version", "account_id", "day", "resolution_ms"],
            &self.resolutions,
            "ON CONFLICT (conversation_id, version) DO NOTHING",
        )
        .await?;
        let counters: Vec<Vec<Cell>> = self
            .counters
            .into_iter()
            .map(|((account, day, metric, user), value)| {
                vec![account.into(), day.into(), metric.into(), user.into(), value.into()]
            })
            .collect();
        insert_rows(
            conn,
            "reporting_daily",
            &["account_id", "day", "metric", "user_id", "value"],
            &counters,
            "ON CONFLICT (account_id, day, metric, user_id) DO UPDATE SET value = reporting_daily.value + excluded.value",
        )
        .await
    }
}

/// A channel message for the counts: `kind`, when, from the customer, a person's answer (an agent
/// or an external agent: it ends the wait for a first response), the agent who answered.
fn channel_message(
    kind: &'static str,
    at: DateTime<Utc>,
    author: &Author,
) -> (&'static str, DateTime<Utc>, bool, bool, Option<String>) {
    match author {
        Author::Customer { .. } => (kind, at, true, false, None),
        Author::Agent { user_id } => (kind, at, false, true, Some(user_id.to_string())),
        Author::ExternalAgent { .. } => (kind, at, false, true, None),
    }
}

#[cfg(test)]
mod tests {
    use super::{Author, Durations, Utc, channel_message};
    use netia_events::{CustomerId, UserId};

    #[test]
    fn a_channel_answer_ends_the_wait_but_only_agents_are_counted_by_name() {
        let at = Utc::now();
        let customer = Author::Customer {
            customer_id: CustomerId::new(),
        };
        let user_id = UserId::new();
        let external = Author::ExternalAgent {
            name: "Sam".into(),
            channel_user_id: "U1".into(),
        };
        assert_eq!(
            channel_message("slack", at, &customer),
            ("slack", at, true, false, None)
        );
        assert_eq!(
            channel_message("slack", at, &Author::Agent { user_id }),
            ("slack", at, false, true, Some(user_id.to_string()))
        );
        assert_eq!(
            channel_message("email", at, &external),
            ("email", at, false, true, None)
        );
    }

    #[test]
    fn averages_and_medians() {
        let d = Durations::of(vec![4_000, 1_000, 10_000]);
        assert_eq!(
            (d.count, d.average_seconds, d.median_seconds),
            (3, Some(5.0), Some(4.0))
        );
        let even = Durations::of(vec![1_000, 3_000]);
        assert_eq!(even.median_seconds, Some(2.0));
        assert_eq!(Durations::of(vec![]), Durations::default());
    }
}
