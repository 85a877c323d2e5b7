//! The `reporting` read model: per account and day, conversations opened and closed, messages by
//! kind and per agent, first-response and resolution times (average and median).

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use netia_events::chain::format_time;
use netia_events::conversation::{Author, ConversationEvent};
use netia_events::{AccountId, DomainEvent, RecordedEvent};
use sqlx::{AnyConnection, Row};

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
    fn of(mut millis: Vec<i64>) -> Self {
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

fn day(at: DateTime<Utc>) -> String {
    format_time(at)[..10].to_owned()
}

async fn bump(
    conn: &mut AnyConnection,
    account: &str,
    day: &str,
    metric: &str,
    user: &str,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO reporting_daily (account_id, day, metric, user_id, value) VALUES ($1, $2, $3, $4, 1) \
         ON CONFLICT (account_id, day, metric, user_id) DO UPDATE SET value = reporting_daily.value + 1",
    )
    .bind(account.to_owned())
    .bind(day.to_owned())
    .bind(metric.to_owned())
    .bind(user.to_owned())
    .execute(conn)
    .await?;
    Ok(())
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

    async fn setup(&self, conn: &mut AnyConnection) -> Result<(), ProjectionError> {
        for statement in [
            "CREATE TABLE IF NOT EXISTS reporting_conversations (conversation_id TEXT PRIMARY KEY, \
                account_id TEXT NOT NULL, opened_at TEXT NOT NULL, opened_day TEXT NOT NULL, \
                first_customer_at TEXT, first_response_ms BIGINT, version BIGINT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS reporting_conversations_by_day ON reporting_conversations (account_id, opened_day)",
            "CREATE TABLE IF NOT EXISTS reporting_daily (account_id TEXT NOT NULL, day TEXT NOT NULL, \
                metric TEXT NOT NULL, user_id TEXT NOT NULL, value BIGINT NOT NULL, \
                PRIMARY KEY (account_id, day, metric, user_id))",
            "CREATE TABLE IF NOT EXISTS reporting_resolutions (conversation_id TEXT NOT NULL, version BIGINT NOT NULL, \
                account_id TEXT NOT NULL, day TEXT NOT NULL, resolution_ms BIGINT NOT NULL, \
                PRIMARY KEY (conversation_id, version))",
            "CREATE INDEX IF NOT EXISTS reporting_resolutions_by_day ON reporting_resolutions (account_id, day)",
        ] {
            sqlx::query(statement).execute(&mut *conn).await?;
        }
        Ok(())
    }

    async fn apply(&self, conn: &mut AnyConnection, event: &RecordedEvent) -> Result<(), ProjectionError> {
        use ConversationEvent::*;
        if event.stream_type != ConversationEvent::STREAM_TYPE {
            return Ok(());
        }
        let id = event.stream_id.clone();
        let decoded = ConversationEvent::decode(event)?;
        if let ConversationCreated(e) = &decoded {
            let inserted = sqlx::query(
                "INSERT INTO reporting_conversations (conversation_id, account_id, opened_at, opened_day, \
                 first_customer_at, first_response_ms, version) VALUES ($1, $2, $3, $4, NULL, NULL, $5) \
                 ON CONFLICT (conversation_id) DO NOTHING",
            )
            .bind(id)
            .bind(e.account_id.to_string())
            .bind(format_time(e.created_at))
            .bind(day(e.created_at))
            .bind(event.version)
            .execute(&mut *conn)
            .await?;
            if inserted.rows_affected() == 1 {
                bump(conn, &e.account_id.to_string(), &day(e.created_at), "opened", "").await?;
            }
            return Ok(());
        }
        // Exactly once per event: only when the conversation's row moves past this version.
        let row = sqlx::query(
            "UPDATE reporting_conversations SET version = $1 WHERE conversation_id = $2 AND version < $3 \
             RETURNING account_id, opened_at, first_customer_at, first_response_ms",
        )
        .bind(event.version)
        .bind(id.clone())
        .bind(event.version)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else { return Ok(()) };
        let account: String = row.try_get("account_id")?;
        let opened_at: String = row.try_get("opened_at")?;
        let first_customer_at: Option<String> = row.try_get("first_customer_at")?;
        let first_response_ms: Option<i64> = row.try_get("first_response_ms")?;
        let parse = |t: &str| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| ProjectionError::Invalid(format!("time {t:?}: {e}")))
        };
        let (kind, at, from_customer, agent) = match &decoded {
            CustomerMessagePosted(e) => ("customer", e.sent_at, true, None),
            AgentMessagePosted(e) => ("agent", e.sent_at, false, Some(e.user_id.to_string())),
            PrivateNoteAdded(e) => ("note", e.sent_at, false, None),
            BotMessagePosted(e) => ("bot", e.sent_at, false, None),
            EmailMessageReceived(e) => match e.author {
                Author::Customer { .. } => ("email", e.sent_at, true, None),
                Author::Agent { user_id } => ("email", e.sent_at, false, Some(user_id.to_string())),
            },
            SlackMessageReceived(e) => match e.author {
                Author::Customer { .. } => ("slack", e.sent_at, true, None),
                Author::Agent { user_id } => ("slack", e.sent_at, false, Some(user_id.to_string())),
            },
            SmsMessageReceived(e) => ("sms", e.sent_at, true, None),
            ConversationClosed(e) => {
                let resolution = (e.closed_at - parse(&opened_at)?).num_milliseconds().max(0);
                sqlx::query(
                    "INSERT INTO reporting_resolutions (conversation_id, version, account_id, day, resolution_ms) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (conversation_id, version) DO NOTHING",
                )
                .bind(id)
                .bind(event.version)
                .bind(account.clone())
                .bind(day(e.closed_at))
                .bind(resolution)
                .execute(&mut *conn)
                .await?;
                return bump(conn, &account, &day(e.closed_at), "closed", "").await;
            }
            _ => return Ok(()),
        };
        bump(conn, &account, &day(at), &format!("messages:{kind}"), "").await?;
        if from_customer && first_customer_at.is_none() {
            sqlx::query("UPDATE reporting_conversations SET first_customer_at = $1 WHERE conversation_id = $2")
                .bind(format_time(at))
                .bind(id.clone())
                .execute(&mut *conn)
                .await?;
        }
        if let Some(user) = agent {
            bump(conn, &account, &day(at), "agent_reply", &user).await?;
            if let (Some(first), None) = (first_customer_at, first_response_ms) {
                let ms = (at - parse(&first)?).num_milliseconds().max(0);
                sqlx::query("UPDATE reporting_conversations SET first_response_ms = $1 WHERE conversation_id = $2")
                    .bind(ms)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Durations;

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
