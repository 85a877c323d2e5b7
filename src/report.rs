//! Analytics read from the projections: the AI outcomes report (`GET /api/reporting/ai`,
//! `netia report ai`), its date range rules and its text form.

use std::fmt::Write as _;

use chrono::NaiveDate;
use netia_events::AccountId;
use netia_projections::{AiOutcomesProjection, AiReport, ProjectionError};
use sqlx::AnyConnection;

/// The longest range a report covers, in days (from and to included: 367 days).
pub const MAX_RANGE_DAYS: i64 = 366;

/// Checks a report's range: `from` not after `to`, at most [`MAX_RANGE_DAYS`] apart.
pub fn check_range(from: NaiveDate, to: NaiveDate) -> Result<(), String> {
    if to < from || (to - from).num_days() > MAX_RANGE_DAYS {
        return Err(format!(
            "from..to must be an ordered range of at most {} days, both included (got {from}..{to})",
            MAX_RANGE_DAYS + 1
        ));
    }
    Ok(())
}

/// The AI outcomes of `account`'s conversations opened from `from` to `to` (UTC days, inclusive).
pub async fn ai_report(
    conn: &mut AnyConnection,
    account: AccountId,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<AiReport, ProjectionError> {
    let day = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
    AiOutcomesProjection::report(conn, account, &day(from), &day(to)).await
}

/// The accounts with conversations opened from `from` to `to`, in id order.
pub async fn accounts_with_conversations(
    conn: &mut AnyConnection,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<AccountId>, ProjectionError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT account_id FROM ai_outcomes WHERE opened_day >= $1 AND opened_day <= $2 ORDER BY account_id",
    )
    .bind(from.format("%Y-%m-%d").to_string())
    .bind(to.format("%Y-%m-%d").to_string())
    .fetch_all(&mut *conn)
    .await?;
    ids.iter()
        .map(|id| {
            id.parse()
                .map_err(|_| ProjectionError::Invalid(format!("account id {id:?} in ai_outcomes")))
        })
        .collect()
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "–".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

fn seconds(s: Option<f64>) -> String {
    s.map_or_else(|| "–".to_owned(), |s| format!("{s:.0} s"))
}

/// The report as text: totals, rates, hand-off reasons, then one line per day.
pub fn render_ai_report(account: AccountId, report: &AiReport) -> String {
    let t = &report.totals;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "AI outcomes of account {account}, conversations opened {} to {}",
        report.from, report.to
    );
    let _ = writeln!(
        out,
        "  conversations {}, the bot took part in {} ({} answers, {} fallbacks)",
        t.conversations, t.bot_involved, t.bot_answers, t.fallbacks
    );
    let _ = writeln!(
        out,
        "  resolved without a human {} ({}), handed off {} ({}), reopened within 7 days {} of {} closed ({})",
        t.resolved_without_human,
        percent(report.rates.resolved_without_human),
        t.handed_off,
        percent(report.rates.handed_off),
        t.reopened_within_7_days,
        t.closed,
        percent(report.rates.reopened_within_7_days)
    );
    let reasons: Vec<String> = t.handoff_reasons.iter().map(|(r, n)| format!("{r} {n}")).collect();
    let _ = writeln!(out, "  hand-off reasons: {}", reasons.join(", "));
    let wait = &report.handoff_to_human_reply;
    let _ = writeln!(
        out,
        "  hand-off to first human reply: {} measured, average {}, median {}",
        wait.count,
        seconds(wait.average_seconds),
        seconds(wait.median_seconds)
    );
    let _ = writeln!(
        out,
        "  {:<10} {:>13} {:>8} {:>9} {:>11}",
        "day", "conversations", "bot", "resolved", "handed off"
    );
    for day in &report.days {
        let c = &day.counts;
        let _ = writeln!(
            out,
            "  {:<10} {:>13} {:>8} {:>9} {:>11}",
            day.day, c.conversations, c.bot_involved, c.resolved_without_human, c.handed_off
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::check_range;

    #[test]
    fn a_range_is_ordered_and_at_most_367_days_both_included() {
        let d = |s: &str| s.parse().unwrap();
        assert!(check_range(d("2026-01-01"), d("2026-01-01")).is_ok());
        assert!(check_range(d("2025-01-01"), d("2026-01-02")).is_ok());
        let refused = check_range(d("2025-01-01"), d("2026-01-03")).unwrap_err();
        assert!(refused.contains("at most 367 days, both included"), "{refused}");
        assert!(check_range(d("2026-01-02"), d("2026-01-01")).is_err());
    }
}
