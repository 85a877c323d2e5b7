//! Given a conversation's history, then its outcome: each rule of the module documentation.

use chrono::{DateTime, Duration, Utc};
use netia_events::conversation::{
    AgentMessagePosted, Author, BotMessagePosted, ConversationClosed, ConversationEvent, ConversationReopened,
    CustomerMessagePosted, EmailMessageReceived, HandedToHuman, HandoffReason, MessageFormat, PrivateNoteAdded,
    ReopenReason,
};
use netia_events::{CustomerId, MessageId, UserId};
use uuid::Uuid;

use super::Outcome;

fn t(seconds: i64) -> DateTime<Utc> {
    "2026-05-04T08:00:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::seconds(seconds)
}

fn customer(at: i64) -> ConversationEvent {
    ConversationEvent::CustomerMessagePosted(CustomerMessagePosted {
        message_id: MessageId::new(),
        customer_id: CustomerId::new(),
        body: "hello".into(),
        client_message_id: None,
        format: MessageFormat::Text,
        attachments: Vec::new(),
        sent_at: t(at),
    })
}

fn bot(at: i64, fallback: bool) -> ConversationEvent {
    ConversationEvent::BotMessagePosted(BotMessagePosted {
        message_id: MessageId::new(),
        body: "answer".into(),
        trigger_event_id: Uuid::nil(),
        format: MessageFormat::Markdown,
        attachments: Vec::new(),
        fallback,
        sent_at: t(at),
    })
}

fn agent(at: i64) -> ConversationEvent {
    ConversationEvent::AgentMessagePosted(AgentMessagePosted {
        message_id: MessageId::new(),
        user_id: UserId::new(),
        body: "a person".into(),
        client_message_id: None,
        format: MessageFormat::Text,
        attachments: Vec::new(),
        sent_at: t(at),
    })
}

fn note(at: i64) -> ConversationEvent {
    ConversationEvent::PrivateNoteAdded(PrivateNoteAdded {
        message_id: MessageId::new(),
        user_id: UserId::new(),
        body: "internal".into(),
        client_message_id: None,
        format: MessageFormat::Text,
        attachments: Vec::new(),
        sent_at: t(at),
    })
}

fn email(at: i64, author: Author) -> ConversationEvent {
    ConversationEvent::EmailMessageReceived(EmailMessageReceived {
        message_id: MessageId::new(),
        author,
        body: "by email".into(),
        subject: None,
        email_message_id: format!("<{at}@example.com>"),
        in_reply_to: None,
        gmail: None,
        sent_at: t(at),
    })
}

fn handed(at: i64, reason: HandoffReason) -> ConversationEvent {
    ConversationEvent::HandedToHuman(HandedToHuman { reason, at: t(at) })
}

fn closed(at: i64) -> ConversationEvent {
    ConversationEvent::ConversationClosed(ConversationClosed { closed_at: t(at) })
}

fn reopened(at: i64) -> ConversationEvent {
    ConversationEvent::ConversationReopened(ConversationReopened {
        reason: ReopenReason::CustomerMessage,
        reopened_at: t(at),
    })
}

/// The outcome after `history` (versions 2, 3, … after the creation at version 1).
fn given(history: Vec<ConversationEvent>) -> Outcome {
    let mut outcome = Outcome::opened("c1", "a1", t(0), 1);
    for (i, event) in history.iter().enumerate() {
        outcome.apply(i as i64 + 2, event).unwrap();
    }
    outcome
}

#[test]
fn the_bot_answers_and_the_conversation_closes_resolved_without_a_human() {
    let o = given(vec![
        customer(1),
        bot(3, false),
        customer(60),
        bot(62, false),
        closed(120),
    ]);
    assert_eq!((o.bot_answers, o.fallbacks, o.handed_off_at.as_deref()), (2, 0, None));
    assert_eq!((o.bot_involved, o.resolved_without_human, o.closes), (1, 1, 1));
    assert_eq!((o.opened_day.as_str(), o.version), ("2026-05-04", 6));
}

#[test]
fn a_customer_asking_for_a_person_is_a_handoff_timed_to_the_first_public_reply() {
    let o = given(vec![
        customer(1),
        handed(2, HandoffReason::CustomerAsked),
        note(30),
        agent(92),
        agent(200),
        closed(300),
    ]);
    assert_eq!(o.handoff_reason.as_deref(), Some("customer_asked"));
    assert_eq!(o.handed_off_at, Some(netia_events::chain::format_time(t(2))));
    assert_eq!(
        o.handoff_to_human_ms,
        Some(90_000),
        "the note is not a reply; the second reply is not the first"
    );
    assert_eq!((o.bot_answers, o.bot_involved, o.resolved_without_human), (0, 1, 0));
}

#[test]
fn the_model_handing_over_is_its_own_reason() {
    let o = given(vec![
        customer(1),
        bot(2, false),
        customer(10),
        handed(11, HandoffReason::Model),
        agent(16),
    ]);
    assert_eq!(o.handoff_reason.as_deref(), Some("model_handoff"));
    assert_eq!(o.handoff_to_human_ms, Some(5_000));
}

#[test]
fn a_fallback_message_is_a_handoff_because_the_model_failed() {
    let o = given(vec![
        customer(1),
        bot(40, true),
        customer(50),
        bot(51, false),
        closed(70),
    ]);
    assert_eq!((o.bot_answers, o.fallbacks), (1, 1));
    assert_eq!(o.handoff_reason.as_deref(), Some("model_failed"));
    assert_eq!(
        o.resolved_without_human, 0,
        "a conversation the bot failed in is not the bot's resolution"
    );
    assert_eq!(o.handoff_to_human_ms, None, "nobody answered yet");
}

#[test]
fn an_agent_replying_after_the_bot_takes_over_without_a_wait_to_measure() {
    let o = given(vec![
        customer(1),
        bot(2, false),
        agent(30),
        handed(31, HandoffReason::Model),
    ]);
    assert_eq!(
        o.handoff_reason.as_deref(),
        Some("agent_replied"),
        "only the first hand-off counts"
    );
    assert_eq!(o.handed_off_at, Some(netia_events::chain::format_time(t(30))));
    assert_eq!(o.handoff_to_human_ms, None);
}

#[test]
fn a_conversation_only_people_answered_is_not_the_bots() {
    let o = given(vec![customer(1), agent(5), closed(10)]);
    assert_eq!(
        (o.bot_involved, o.handed_off_at.as_deref(), o.resolved_without_human),
        (0, None, 0)
    );
    assert_eq!(o.human_replied, 1);
}

#[test]
fn an_external_agents_email_reply_is_a_persons_reply_and_a_customers_is_not() {
    let external = Author::ExternalAgent {
        name: "Sam".into(),
        channel_user_id: "sam@shop.example".into(),
    };
    let from_customer = Author::Customer {
        customer_id: CustomerId::new(),
    };
    let o = given(vec![
        email(1, from_customer),
        handed(2, HandoffReason::CustomerAsked),
        email(3, external),
    ]);
    assert_eq!(o.handoff_to_human_ms, Some(1_000));
    assert_eq!(o.human_replied, 1);
}

#[test]
fn a_reopen_within_seven_days_of_the_close_counts_and_reopening_unresolves() {
    let week = 7 * 24 * 3600;
    let o = given(vec![customer(1), bot(2, false), closed(10), reopened(10 + week)]);
    assert_eq!(
        (
            o.reopened_within_7_days,
            o.resolved_without_human,
            o.closed_at.as_deref()
        ),
        (1, 0, None)
    );
    let late = given(vec![
        customer(1),
        bot(2, false),
        closed(10),
        reopened(11 + week),
        closed(12 + week),
    ]);
    assert_eq!(
        (late.reopened_within_7_days, late.resolved_without_human, late.closes),
        (0, 1, 2)
    );
}

#[test]
fn an_event_applied_twice_changes_nothing() {
    let mut o = given(vec![customer(1), bot(2, false)]);
    let before = o.clone();
    assert!(!o.apply(3, &bot(2, false)).unwrap());
    assert_eq!(o, before);
}
