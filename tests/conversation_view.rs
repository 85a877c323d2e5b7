//! The conversation read model on both databases: messages in order, private notes, seen receipts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use chrono::Utc;
use common::TestDb;
use netia::command_bus::CommandBus;
use netia::projector::{Projector, read_model_pool};
use netia_commands::{Conversation, ConversationCommand};
use netia_events::conversation::Author;
use netia_events::{AccountId, ConversationId, CustomerId, MessageId, Metadata, UserId};
use netia_projections::{ConversationProjection, Projection};
use sqlx::Connection;

async fn messages_are_listed_in_order_with_notes_for_agents_only(db: &TestDb) {
    let bus = CommandBus::new(db.store.clone());
    let meta = Metadata::system("test");
    let id = ConversationId::new();
    let customer_id = CustomerId::new();
    let agent = UserId::new();
    let run = |cmd: ConversationCommand| {
        let bus = bus.clone();
        let meta = meta.clone();
        async move { bus.execute::<Conversation>(id, cmd, &meta).await.unwrap() }
    };
    let post = |author: Author, body: &str, private: bool, key: Option<&str>| {
        common::message(author, body, private, key, Utc::now())
    };
    run(common::open_conversation(id, AccountId::new(), customer_id, Utc::now())).await;
    let trigger = run(post(Author::Customer { customer_id }, "<b>hi</b>", false, Some("c-1"))).await;
    run(ConversationCommand::PostBotReply {
        message_id: MessageId::new(),
        body: "Hello! How can I help?".into(),
        trigger_event_id: trigger.events[0].event_id,
        reply_to: None,
        fallback: false,
        at: Utc::now(),
    })
    .await;
    run(post(Author::Agent { user_id: agent }, "internal: VIP", true, None)).await;
    run(post(Author::Agent { user_id: agent }, "I'm here", false, None)).await;
    run(ConversationCommand::MarkRead { user_id: agent }).await;
    run(post(Author::Customer { customer_id }, "thanks", false, None)).await;

    let pool = read_model_pool(&db.url, 2).await.unwrap();
    let projector = Projector::new(db.store.clone(), pool.clone(), Arc::new(ConversationProjection));
    projector.setup().await.unwrap();
    projector.catch_up().await.unwrap();
    let mut conn = pool.acquire().await.unwrap();

    let for_agents = ConversationProjection::messages(&mut conn, id, true, 0, 100)
        .await
        .unwrap();
    let kinds: Vec<&str> = for_agents.iter().map(|m| m.kind.as_str()).collect();
    assert_eq!(kinds, vec!["customer", "bot", "note", "agent", "customer"]);
    assert_eq!(for_agents[0].body, "<b>hi</b>", "stored as text, unchanged");
    assert_eq!(for_agents[0].client_message_id.as_deref(), Some("c-1"));
    assert_eq!(for_agents[2].private, 1);
    assert!(for_agents[0].seen_at.is_some(), "read by an agent");
    assert!(for_agents[4].seen_at.is_none(), "written after the read");
    assert!(for_agents.iter().all(|m| m.delivery_status == "sent"));

    let for_customer = ConversationProjection::messages(&mut conn, id, false, 0, 100)
        .await
        .unwrap();
    assert_eq!(for_customer.len(), 4);
    assert!(for_customer.iter().all(|m| m.private == 0));
    let after = ConversationProjection::messages(&mut conn, id, false, for_customer[1].version, 100)
        .await
        .unwrap();
    assert_eq!(after.len(), 2, "paging by version");

    // Applying every event again changes nothing.
    let events = common::all_events(db.store.as_ref()).await;
    let mut tx = conn.begin().await.unwrap();
    for event in &events {
        ConversationProjection.apply(&mut tx, event).await.unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(
        ConversationProjection::messages(&mut conn, id, true, 0, 100)
            .await
            .unwrap(),
        for_agents
    );
}

/// A read model made before external agents (no `author_name` column) keeps its rows and gains
/// the column when the projection starts; a later external agent's reply lands in it. Its
/// messages keep the `seen_at` they were stored with (before read receipts had a table of their
/// own), and a later read receipt sees those stored unseen.
async fn an_older_message_table_gains_the_author_name(db: &TestDb) {
    let pool = read_model_pool(&db.url, 2).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query(
        "CREATE TABLE conversation_messages (message_id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL, \
         account_id TEXT NOT NULL, version BIGINT NOT NULL, kind TEXT NOT NULL, customer_id TEXT, user_id TEXT, \
         body TEXT NOT NULL, private BIGINT NOT NULL, client_message_id TEXT, external_id TEXT, \
         sent_at TEXT NOT NULL, seen_at TEXT, delivery_status TEXT NOT NULL)",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    let id = ConversationId::new();
    sqlx::query(
        "INSERT INTO conversation_messages VALUES ('old', $1, 'a', 1, 'agent', NULL, 'u', 'earlier', 0, NULL, NULL, \
         '2026-01-01T00:00:00.000000Z', NULL, 'sent')",
    )
    .bind(id.to_string())
    .execute(&mut *conn)
    .await
    .unwrap();
    for (message_id, seen_at) in [("old-seen", Some("2026-01-01T00:00:01.000000Z")), ("old-unseen", None)] {
        sqlx::query(
            "INSERT INTO conversation_messages VALUES ($1, $2, 'a', 1, 'customer', 'c', NULL, 'hello', 0, NULL, \
             NULL, '2026-01-01T00:00:00.000000Z', $3, 'sent')",
        )
        .bind(message_id)
        .bind(id.to_string())
        .bind(seen_at)
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    drop(conn);

    let bus = CommandBus::new(db.store.clone());
    let meta = Metadata::system("test");
    let customer_id = CustomerId::new();
    bus.execute::<Conversation>(
        id,
        common::open_conversation(id, AccountId::new(), customer_id, Utc::now()),
        &meta,
    )
    .await
    .unwrap();
    let external = Author::ExternalAgent {
        name: "Sam Stranger".into(),
        channel_user_id: "U0STRANGER".into(),
    };
    let reply = ConversationCommand::ReceiveSlackMessage {
        message_id: MessageId::new(),
        author: external,
        body: "On it".into(),
        slack_event_id: "Ev1".into(),
        slack_ts: None,
        at: Utc::now(),
    };
    bus.execute::<Conversation>(id, reply, &meta).await.unwrap();
    let projector = Projector::new(db.store.clone(), pool.clone(), Arc::new(ConversationProjection));
    projector.setup().await.unwrap();
    projector.setup().await.unwrap(); // a second start finds the column
    projector.catch_up().await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let rows = ConversationProjection::messages(&mut conn, id, true, 0, 100)
        .await
        .unwrap();
    let rows: Vec<_> = rows.iter().filter(|m| m.kind != "customer").collect();
    let names: Vec<(&str, Option<&str>)> = rows
        .iter()
        .map(|m| (m.body.as_str(), m.author_name.as_deref()))
        .collect();
    assert_eq!(names, vec![("earlier", None), ("On it", Some("Sam Stranger"))]);
    assert!(rows[1].user_id.is_none() && rows[1].customer_id.is_none());

    let seen = |message_id: &'static str| {
        let pool = pool.clone();
        async move {
            let mut conn = pool.acquire().await.unwrap();
            let row = ConversationProjection::message(&mut conn, message_id).await.unwrap();
            row.unwrap().seen_at
        }
    };
    assert_eq!(seen("old-seen").await.as_deref(), Some("2026-01-01T00:00:01.000000Z"));
    assert_eq!(seen("old-unseen").await, None);
    // An agent reads the conversation; the receipt is applied in a later batch than the messages.
    let read = bus
        .execute::<Conversation>(id, ConversationCommand::MarkRead { user_id: UserId::new() }, &meta)
        .await
        .unwrap();
    projector.catch_up().await.unwrap();
    let read_at = netia_events::chain::format_time(read.events[0].recorded_at);
    assert_eq!(seen("old-unseen").await, Some(read_at), "seen by the later receipt");
    assert_eq!(
        seen("old-seen").await.as_deref(),
        Some("2026-01-01T00:00:01.000000Z"),
        "kept"
    );
}

on_both_backends!(
    messages_are_listed_in_order_with_notes_for_agents_only,
    an_older_message_table_gains_the_author_name
);
