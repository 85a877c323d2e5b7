//! A conversation's SMS replies: what went to Twilio, what Twilio says became of it, and what
//! could not be sent.

use netia_events::conversation::*;

use super::aggregate::{Conversation, Decision};
use super::{ConversationCommand, ConversationError};

use super::slack::MAX_ERROR_CHARS;

/// Twilio's outbound message statuses in the order a message goes through them (Twilio's
/// "Message resource: status values"); the last three are final.
const STATUSES: [&str; 7] = [
    "accepted",
    "queued",
    "sending",
    "sent",
    "delivered",
    "undelivered",
    "failed",
];

fn rank(status: &str) -> Option<usize> {
    STATUSES.iter().position(|s| *s == status)
}

/// A Twilio message SID: `SM` or `MM` then 32 hex digits.
pub fn is_message_sid(sid: &str) -> bool {
    sid.len() == 34
        && (sid.starts_with("SM") || sid.starts_with("MM"))
        && sid[2..].chars().all(|c| c.is_ascii_hexdigit())
}

impl Conversation {
    pub(super) fn evolve_sms(&mut self, event: &ConversationEvent) {
        match event {
            ConversationEvent::SmsSent(e) => {
                self.external_ids.insert(format!("sms-sent:{}", e.trigger_event_id));
                for sid in &e.message_sids {
                    self.sms_sent.insert(sid.clone(), (e.message_id, "queued".to_owned()));
                }
            }
            ConversationEvent::SmsStatusUpdated(e) => {
                if let Some((_, status)) = self.sms_sent.get_mut(&e.message_sid) {
                    *status = e.status.clone();
                }
            }
            ConversationEvent::SmsSendFailed(e) => {
                self.external_ids.insert(format!("sms-failed:{}", e.trigger_event_id));
            }
            _ => {}
        }
    }

    pub(super) fn decide_sms(&self, command: &ConversationCommand) -> Decision {
        match command {
            ConversationCommand::RecordSmsSent {
                trigger_event_id,
                message_id,
                message_sids,
                to_number,
            } => {
                if message_sids.is_empty() || !message_sids.iter().all(|sid| is_message_sid(sid)) {
                    return Err(ConversationError::InvalidSms);
                }
                let sent = ConversationEvent::SmsSent(SmsSent {
                    trigger_event_id: *trigger_event_id,
                    message_id: *message_id,
                    message_sids: message_sids.clone(),
                    to_number: to_number.clone(),
                });
                Ok(self.once(&format!("sms-sent:{trigger_event_id}"), sent))
            }
            ConversationCommand::RecordSmsStatus { message_sid, status } => {
                let Some(new) = rank(status) else {
                    return Err(ConversationError::InvalidSms);
                };
                // Not one of ours (another conversation's, or a forged callback): nothing to record.
                let Some((message_id, current)) = self.sms_sent.get(message_sid) else {
                    return Ok(Vec::new());
                };
                // Twilio's callbacks may arrive out of order: `sent` after `delivered` says nothing new.
                if rank(current).is_some_and(|old| old >= new) {
                    return Ok(Vec::new());
                }
                Ok(vec![ConversationEvent::SmsStatusUpdated(SmsStatusUpdated {
                    message_id: *message_id,
                    message_sid: message_sid.clone(),
                    status: status.clone(),
                })])
            }
            ConversationCommand::RecordSmsFailure {
                trigger_event_id,
                message_id,
                error,
            } => {
                let failed = ConversationEvent::SmsSendFailed(SmsSendFailed {
                    trigger_event_id: *trigger_event_id,
                    message_id: *message_id,
                    error: error.chars().take(MAX_ERROR_CHARS).collect(),
                });
                Ok(self.once(&format!("sms-failed:{trigger_event_id}"), failed))
            }
            _ => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use netia_events::{AccountId, ConversationId, CustomerId, MessageId};
    use uuid::Uuid;

    use super::*;

    type ConversationTest = TestFramework<Conversation>;

    const SID: &str = "SM0123456789abcdef0123456789abcdef";
    const REPLY: MessageId = MessageId(Uuid::from_u128(7));

    fn created() -> ConversationEvent {
        ConversationEvent::ConversationCreated(ConversationCreated {
            conversation_id: ConversationId(Uuid::from_u128(1)),
            account_id: AccountId(Uuid::from_u128(2)),
            customer_id: CustomerId(Uuid::from_u128(3)),
            inbox_id: None,
            source: Source::Sms,
            subject: None,
            created_at: chrono::Utc::now(),
        })
    }

    fn sent() -> ConversationEvent {
        ConversationEvent::SmsSent(SmsSent {
            trigger_event_id: Uuid::from_u128(9),
            message_id: REPLY,
            message_sids: vec![SID.into()],
            to_number: "+15005550006".into(),
        })
    }

    fn status(status: &str) -> ConversationCommand {
        ConversationCommand::RecordSmsStatus {
            message_sid: SID.into(),
            status: status.into(),
        }
    }

    fn updated(status: &str) -> ConversationEvent {
        ConversationEvent::SmsStatusUpdated(SmsStatusUpdated {
            message_id: REPLY,
            message_sid: SID.into(),
            status: status.into(),
        })
    }

    #[test]
    fn a_sent_sms_is_recorded_once_per_trigger() {
        let record = ConversationCommand::RecordSmsSent {
            trigger_event_id: Uuid::from_u128(9),
            message_id: REPLY,
            message_sids: vec![SID.into()],
            to_number: "+15005550006".into(),
        };
        ConversationTest::with(())
            .given(vec![created()])
            .when(record.clone())
            .then_expect_events(vec![sent()]);
        ConversationTest::with(())
            .given(vec![created(), sent()])
            .when(record)
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_status_moves_forward_only() {
        ConversationTest::with(())
            .given(vec![created(), sent()])
            .when(status("delivered"))
            .then_expect_events(vec![updated("delivered")]);
        ConversationTest::with(())
            .given(vec![created(), sent(), updated("delivered")])
            .when(status("sent"))
            .then_expect_events(vec![]);
        ConversationTest::with(())
            .given(vec![created(), sent(), updated("delivered")])
            .when(status("delivered"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_status_for_an_sms_we_did_not_send_changes_nothing() {
        ConversationTest::with(())
            .given(vec![created()])
            .when(status("delivered"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_unknown_status_or_malformed_sid_is_refused() {
        ConversationTest::with(())
            .given(vec![created(), sent()])
            .when(status("teleported"))
            .then_expect_error(ConversationError::InvalidSms);
        ConversationTest::with(())
            .given(vec![created()])
            .when(ConversationCommand::RecordSmsSent {
                trigger_event_id: Uuid::from_u128(9),
                message_id: REPLY,
                message_sids: vec!["nope".into()],
                to_number: "+15005550006".into(),
            })
            .then_expect_error(ConversationError::InvalidSms);
    }

    #[test]
    fn a_failed_sms_is_recorded_once_per_trigger() {
        let failure = ConversationCommand::RecordSmsFailure {
            trigger_event_id: Uuid::from_u128(9),
            message_id: REPLY,
            error: "Twilio answered 500".into(),
        };
        let recorded = ConversationEvent::SmsSendFailed(SmsSendFailed {
            trigger_event_id: Uuid::from_u128(9),
            message_id: REPLY,
            error: "Twilio answered 500".into(),
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
