//! The reporting read model on both databases: daily counts, first response and resolution times.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use common::TestDb;
use netia::command_bus::CommandBus;
use netia::projector::{Projector, read_model_pool};
use netia_commands::{Conversation, ConversationCommand};
use netia_events::conversation::{Author, Source};
use netia_events::{AccountId, ConversationId, CustomerId, MessageId, Metadata, UserId};
use netia_projections::{Projection, ReportingProjection};
use sqlx::Connection;

async fn days_report_counts_and_response_times(db: &TestDb) {
    let bus = CommandBus::new(db.store.clone());
    let meta = Metadata::system("test");
    let account = AccountId::new();
    let agent = UserId::new();
    let t0: DateTime<Utc> = "2026-03-01T10:00:00Z".parse().unwrap();
    let t1: DateTime<Utc> = "2026-03-02T09:00:00Z".parse().unwrap();
    let s = Duration::seconds;
    let run = |id: ConversationId, cmd: ConversationCommand| {
        let bus = bus.clone();
        let meta = meta.clone();
        async move { bus.execute::<Conversation>(id, cmd, &meta).await.unwrap() }
    };
    let create = |id, customer_id, account_id, at| ConversationCommand::Create {
        conversation_id: id,
        account_id,
        customer_id,
        inbox_id: netia_events::InboxId::new(),
        source: Source::Chat,
        subject: None,
        at,
    };
    let say = |author, private, at| ConversationCommand::PostMessage {
        message_id: MessageId::new(),
        author,
        body: "text".into(),
        format: netia_events::conversation::MessageFormat::Text,
        private,
        client_message_id: None,
        attachments: Vec::new(),
        at,
    };
    // Day 1: two conversations answered in 240 s and 120 s, resolved in 3600 s and 1790 s.
    for (start, ask, answer, close) in [(0, 60, 300, 3600), (10, 20, 140, 1800)] {
        let (id, customer_id) = (ConversationId::new(), CustomerId::new());
        run(id, create(id, customer_id, account, t0 + s(start))).await;
        run(id, say(Author::Customer { customer_id }, false, t0 + s(ask))).await;
        run(id, say(Author::Agent { user_id: agent }, false, t0 + s(answer))).await;
        run(id, say(Author::Agent { user_id: agent }, false, t0 + s(answer + 5))).await;
        run(id, ConversationCommand::Close { at: t0 + s(close) }).await;
    }
    // Day 2: one conversation with a bot reply and a note, still open.
    let (id, customer_id) = (ConversationId::new(), CustomerId::new());
    run(id, create(id, customer_id, account, t1)).await;
    let trigger = run(id, say(Author::Customer { customer_id }, false, t1 + s(1))).await;
    run(
        id,
        ConversationCommand::PostBotReply {
            message_id: MessageId::new(),
            body: "bot".into(),
            trigger_event_id: trigger.events[0].event_id,
            reply_to: None,
            fallback: false,
            at: t1 + s(2),
        },
    )
    .await;
    run(id, say(Author::Agent { user_id: agent }, true, t1 + s(3))).await;
    // Another account's activity never counts.
    let other = ConversationId::new();
    run(other, create(other, CustomerId::new(), AccountId::new(), t0)).await;

    let pool = read_model_pool(&db.url, 2).await.unwrap();
    let projector = Projector::new(db.store.clone(), pool.clone(), Arc::new(ReportingProjection)).with_batch(4);
    projector.setup().await.unwrap();
    projector.catch_up().await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let report = ReportingProjection::report(&mut conn, account, "2026-03-01", "2026-03-02")
        .await
        .unwrap();
    assert_eq!(report.len(), 2);
    let (d1, d2) = (&report[0], &report[1]);
    assert_eq!((d1.day.as_str(), d1.opened, d1.closed), ("2026-03-01", 2, 2));
    assert_eq!(d1.messages.get("customer"), Some(&2));
    assert_eq!(d1.messages.get("agent"), Some(&4));
    assert_eq!(d1.agent_replies.get(&agent.to_string()), Some(&4));
    assert_eq!(d1.first_response.count, 2);
    assert_eq!(d1.first_response.average_seconds, Some(180.0));
    assert_eq!(d1.first_response.median_seconds, Some(180.0));
    assert_eq!(d1.resolution.average_seconds, Some(2695.0));
    assert_eq!((d2.opened, d2.closed), (1, 0));
    assert_eq!(d2.messages.get("bot"), Some(&1));
    assert_eq!(d2.messages.get("note"), Some(&1));
    assert_eq!(d2.first_response.count, 0, "a private note is not a response");

    let only_day_2 = ReportingProjection::report(&mut conn, account, "2026-03-02", "2026-03-02")
        .await
        .unwrap();
    assert_eq!(only_day_2, vec![d2.clone()]);

    // Every event applied again: nothing changes.
    let events = common::all_events(db.store.as_ref()).await;
    let mut tx = conn.begin().await.unwrap();
    for event in &events {
        ReportingProjection.apply(&mut tx, event).await.unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(
        ReportingProjection::report(&mut conn, account, "2026-03-01", "2026-03-02")
            .await
            .unwrap(),
        report
    );
}

on_both_backends!(days_report_counts_and_response_times);
