//! A conversation's Slack mirror: its thread, and posts that failed for good.

use netia_events::conversation::*;

use super::aggregate::{Conversation, Decision};
use super::{ConversationCommand, ConversationError};

/// Longest failure text kept in the log.
pub(super) const MAX_ERROR_CHARS: usize = 500;

impl Conversation {
    /// `event`, unless a record under `key` (in `external_ids`) says it happened already.
    pub(super) fn once(&self, key: &str, event: ConversationEvent) -> Vec<ConversationEvent> {
        if self.external_ids.contains(key) {
            Vec::new()
        } else {
            vec![event]
        }
    }

    pub(super) fn decide_slack(&self, command: &ConversationCommand) -> Decision {
        match command {
            ConversationCommand::StartSlackThread { channel_id, thread_ts } => {
                if channel_id.is_empty() || thread_ts.is_empty() || channel_id.len() > 40 || thread_ts.len() > 40 {
                    return Err(ConversationError::InvalidSlackThread);
                }
                if self.slack_thread.is_some() {
                    return Ok(Vec::new());
                }
                Ok(vec![ConversationEvent::SlackThreadStarted(SlackThreadStarted {
                    channel_id: channel_id.clone(),
                    thread_ts: thread_ts.clone(),
                })])
            }
            ConversationCommand::RecordSlackPostFailure {
                trigger_event_id,
                error,
            } => {
                let failed = ConversationEvent::SlackPostFailed(SlackPostFailed {
                    trigger_event_id: *trigger_event_id,
                    error: error.chars().take(MAX_ERROR_CHARS).collect(),
                });
                Ok(self.once(&format!("slack-failed:{trigger_event_id}"), failed))
            }
            _ => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use netia_events::{AccountId, ConversationId, CustomerId};
    use uuid::Uuid;

    use super::*;

    type ConversationTest = TestFramework<Conversation>;

    fn created() -> ConversationEvent {
        ConversationEvent::ConversationCreated(ConversationCreated {
            conversation_id: ConversationId(Uuid::from_u128(1)),
            account_id: AccountId(Uuid::from_u128(2)),
            customer_id: CustomerId(Uuid::from_u128(3)),
            inbox_id: None,
            source: Source::Chat,
            subject: None,
            created_at: chrono::Utc::now(),
        })
    }

    fn start(ts: &str) -> ConversationCommand {
        ConversationCommand::StartSlackThread {
            channel_id: "C0SUPPORT".into(),
            thread_ts: ts.into(),
        }
    }

    fn started(ts: &str) -> ConversationEvent {
        ConversationEvent::SlackThreadStarted(SlackThreadStarted {
            channel_id: "C0SUPPORT".into(),
            thread_ts: ts.into(),
        })
    }

    #[test]
    fn a_conversation_has_one_slack_thread() {
        ConversationTest::with(())
            .given(vec![created()])
            .when(start("1700000000.000100"))
            .then_expect_events(vec![started("1700000000.000100")]);
        ConversationTest::with(())
            .given(vec![created(), started("1700000000.000100")])
            .when(start("1700000000.000200"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_failed_slack_post_is_recorded_once_per_trigger() {
        let failure = ConversationCommand::RecordSlackPostFailure {
            trigger_event_id: Uuid::from_u128(9),
            error: "Slack answered 500".into(),
        };
        let recorded = ConversationEvent::SlackPostFailed(SlackPostFailed {
            trigger_event_id: Uuid::from_u128(9),
            error: "Slack answered 500".into(),
        });
        ConversationTest::with(())
            .given(vec![created()])
            .when(failure.clone())
            .then_expect_events(vec![recorded.clone()]);
        ConversationTest::with(())
            .given(vec![created(), recorded])
            .when(failure)
            .then_expect_events(vec![]);
    }
}
