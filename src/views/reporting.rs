//! Views of the reporting read models (`GET /api/reporting`, `GET /api/reporting/ai`).

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// One day of the reporting read model.
#[derive(Debug, Serialize, ToSchema)]
pub struct DayView {
    pub day: String,
    pub opened: i64,
    pub closed: i64,
    /// Messages by kind.
    #[schema(value_type = Object)]
    pub messages: Value,
    /// Public replies per agent id.
    #[schema(value_type = Object)]
    pub agent_replies: Value,
    /// `{count, average_seconds, median_seconds}` for first responses to conversations opened that day.
    #[schema(value_type = Object)]
    pub first_response: Value,
    /// The same for conversations closed that day (opened → closed).
    #[schema(value_type = Object)]
    pub resolution: Value,
}

/// `GET /api/reporting/ai`: AI outcomes of the conversations opened in a range of days (the
/// `ai_outcomes` projection; rules in `netia_projections::ai_outcomes`).
#[derive(Debug, Serialize, ToSchema)]
pub struct AiReportView {
    /// First day, `YYYY-MM-DD` (UTC).
    pub from: String,
    /// Last day, inclusive.
    pub to: String,
    /// Conversations opened in the range.
    pub conversations: i64,
    /// Of those, the ones the bot answered, failed in, or was asked to step aside in.
    pub bot_involved: i64,
    /// The model's answers (fallback messages not counted).
    pub bot_answers: i64,
    /// Fallback messages posted because the model failed.
    pub fallbacks: i64,
    pub handed_off: i64,
    /// Hand-offs by reason: `agent_replied`, `customer_asked`, `model_handoff`, `model_failed`.
    #[schema(value_type = Object)]
    pub handoff_reasons: Value,
    /// Closed, the bot answered, nobody took over and no person replied.
    pub resolved_without_human: i64,
    /// Bot conversations closed at least once.
    pub closed: i64,
    /// Bot conversations reopened at most 7 days after a close.
    pub reopened_within_7_days: i64,
    /// `{resolved_without_human, handed_off, reopened_within_7_days}`: shares (0–1) of `bot_involved`
    /// (the last of `closed`), `null` when there is nothing to divide by.
    #[schema(value_type = Object)]
    pub rates: Value,
    /// `{count, average_seconds, median_seconds}` from an explicit hand-off to a person's first reply.
    #[schema(value_type = Object)]
    pub handoff_to_human_reply: Value,
    /// Per day with conversations: `day` and the counts above.
    #[schema(value_type = Vec<Object>)]
    pub days: Vec<Value>,
}
