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

on_both_backends!(messages_are_listed_in_order_with_notes_for_agents_only);
