//! The inbox read model against both databases: every filter, counts, cursor paging, idempotency.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use chrono::{Duration, Utc};
use common::TestDb;
use netia::command_bus::CommandBus;
use netia::projector::{Projector, read_model_pool};
use netia_commands::{Conversation, ConversationCommand, Customer, CustomerCommand};
use netia_events::conversation::{Author, Priority, Source};
use netia_events::customer::CustomerIdentity;
use netia_events::{AccountId, ConversationId, CustomerId, MessageId, Metadata, UserId};
use netia_projections::{Assignee, InboxProjection, InboxQuery, Projection};
use sqlx::{AnyPool, Connection};

struct World {
    account: AccountId,
    agent: UserId,
    open: ConversationId,
    closed: ConversationId,
    snoozed: ConversationId,
    urgent: ConversationId,
}

async fn world(db: &TestDb) -> World {
    let bus = CommandBus::new(db.store.clone());
    let meta = Metadata::system("test");
    let account = AccountId::new();
    let agent = UserId::new();
    let ada = CustomerId::new();
    let identity = CustomerIdentity {
        name: Some("Ada Lovelace".into()),
        email: Some("ada@example.com".into()),
        ..Default::default()
    };
    let create = CustomerCommand::Create {
        customer_id: ada,
        account_id: account,
        identity,
        metadata: Default::default(),
        verified: false,
    };
    bus.execute::<Customer>(ada, create, &meta).await.unwrap();
    let conversation = |account_id: AccountId, subject: &str| {
        let bus = bus.clone();
        let meta = meta.clone();
        let subject = subject.to_owned();
        async move {
            let id = ConversationId::new();
            let cmd = ConversationCommand::Create {
                conversation_id: id,
                account_id,
                customer_id: ada,
                inbox_id: netia_events::InboxId::new(),
                source: Source::Chat,
                subject: Some(subject),
                at: Utc::now(),
            };
            bus.execute::<Conversation>(id, cmd, &meta).await.unwrap();
            id
        }
    };
    let run = |id: ConversationId, cmd: ConversationCommand| {
        let bus = bus.clone();
        let meta = meta.clone();
        async move { bus.execute::<Conversation>(id, cmd, &meta).await.unwrap() }
    };
    let say = |author: Author, body: &str| ConversationCommand::PostMessage {
        message_id: MessageId::new(),
        author,
        body: body.into(),
        format: netia_events::conversation::MessageFormat::Text,
        private: false,
        client_message_id: None,
        attachments: Vec::new(),
        at: Utc::now(),
    };
    let closed = conversation(account, "Refund please").await;
    run(closed, say(Author::Customer { customer_id: ada }, "I want a refund")).await;
    run(closed, ConversationCommand::Close { at: Utc::now() }).await;
    let snoozed = conversation(account, "Later").await;
    run(
        snoozed,
        ConversationCommand::Snooze {
            until: Utc::now() + Duration::hours(2),
            at: Utc::now(),
        },
    )
    .await;
    let urgent = conversation(account, "Invoice wrong").await;
    run(
        urgent,
        ConversationCommand::SetPriority {
            priority: Priority::Priority,
        },
    )
    .await;
    run(urgent, ConversationCommand::Assign { assignee: Some(agent) }).await;
    run(urgent, ConversationCommand::Tag { tag: "billing".into() }).await;
    run(urgent, ConversationCommand::Tag { tag: "vip".into() }).await;
    run(urgent, ConversationCommand::Untag { tag: "vip".into() }).await;
    run(urgent, say(Author::Agent { user_id: agent }, "We are on it")).await;
    let open = conversation(account, "Where is my parcel").await;
    run(
        open,
        say(Author::Customer { customer_id: ada }, "Where is my parcel? It is late"),
    )
    .await;
    // Another account's conversation must never show.
    conversation(AccountId::new(), "Other account").await;
    World {
        account,
        agent,
        open,
        closed,
        snoozed,
        urgent,
    }
}

async fn projected(db: &TestDb) -> AnyPool {
    let pool = read_model_pool(&db.url, 4).await.unwrap();
    let projector = Projector::new(db.store.clone(), pool.clone(), Arc::new(InboxProjection)).with_batch(5);
    projector.setup().await.unwrap();
    projector.catch_up().await.unwrap();
    pool
}

fn ids(rows: &[netia_projections::InboxRow]) -> Vec<String> {
    rows.iter().map(|r| r.conversation_id.clone()).collect()
}

async fn every_filter_finds_what_it_should(db: &TestDb) {
    let w = world(db).await;
    let pool = projected(db).await;
    let mut conn = pool.acquire().await.unwrap();
    let base = InboxQuery {
        account_id: Some(w.account),
        limit: 50,
        ..Default::default()
    };
    let q = |f: &dyn Fn(&mut InboxQuery)| {
        let mut q = base.clone();
        f(&mut q);
        q
    };
    let all = InboxProjection::list(&mut conn, &base).await.unwrap();
    assert_eq!(
        ids(&all),
        [w.open, w.urgent, w.snoozed, w.closed]
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>(),
        "most recent first, one account only"
    );
    let open_row = &all[0];
    assert_eq!(open_row.customer_name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(
        open_row.last_message_preview.as_deref(),
        Some("Where is my parcel? It is late")
    );
    assert_eq!(open_row.message_count, 1);
    let urgent = &all[1];
    assert_eq!(
        (urgent.priority.as_str(), urgent.tags.as_deref()),
        ("priority", Some("billing"))
    );
    assert_eq!(urgent.assignee_id, Some(w.agent.to_string()));

    let cases: Vec<(InboxQuery, Vec<ConversationId>)> = vec![
        (q(&|q| q.status = Some("open".into())), vec![w.open, w.urgent]),
        (q(&|q| q.status = Some("closed".into())), vec![w.closed]),
        (q(&|q| q.status = Some("snoozed".into())), vec![w.snoozed]),
        (q(&|q| q.priority = Some("priority".into())), vec![w.urgent]),
        (q(&|q| q.assignee = Some(Assignee::User(w.agent))), vec![w.urgent]),
        (
            q(&|q| q.assignee = Some(Assignee::Unassigned)),
            vec![w.open, w.snoozed, w.closed],
        ),
        (q(&|q| q.tag = Some("billing".into())), vec![w.urgent]),
        (q(&|q| q.tag = Some("vip".into())), vec![]),
        (
            q(&|q| q.source = Some("chat".into())),
            vec![w.open, w.urgent, w.snoozed, w.closed],
        ),
        (q(&|q| q.text = Some("PARCEL".into())), vec![w.open]),
        (
            q(&|q| q.text = Some("lovelace".into())),
            vec![w.open, w.urgent, w.snoozed, w.closed],
        ),
        (q(&|q| q.text = Some("100%_off".into())), vec![]),
        (q(&|q| q.unread_for = Some(w.agent)), vec![w.open, w.closed]),
        (q(&|q| q.unread_for = Some(UserId::new())), vec![w.open, w.closed]),
    ];
    for (query, expected) in cases {
        let got = InboxProjection::list(&mut conn, &query).await.unwrap();
        let expected: Vec<String> = expected.iter().map(|i| i.to_string()).collect();
        assert_eq!(ids(&got), expected, "{query:?}");
        assert_eq!(
            InboxProjection::count(&mut conn, &query).await.unwrap(),
            expected.len() as i64
        );
    }
}

async fn reading_clears_unread_and_archiving_hides(db: &TestDb) {
    let w = world(db).await;
    let bus = CommandBus::new(db.store.clone());
    let meta = Metadata::system("test");
    bus.execute::<Conversation>(w.open, ConversationCommand::MarkRead { user_id: w.agent }, &meta)
        .await
        .unwrap();
    bus.execute::<Conversation>(
        w.closed,
        ConversationCommand::Archive {
            at: Utc::now() + Duration::days(15),
        },
        &meta,
    )
    .await
    .unwrap();
    let pool = projected(db).await;
    let mut conn = pool.acquire().await.unwrap();
    let unread = InboxQuery {
        account_id: Some(w.account),
        unread_for: Some(w.agent),
        include_archived: true,
        limit: 50,
        ..Default::default()
    };
    assert_eq!(
        ids(&InboxProjection::list(&mut conn, &unread).await.unwrap()),
        vec![w.closed.to_string()]
    );
    let visible = InboxQuery {
        account_id: Some(w.account),
        limit: 50,
        ..Default::default()
    };
    assert_eq!(
        InboxProjection::count(&mut conn, &visible).await.unwrap(),
        3,
        "archived hidden by default"
    );
}

async fn pages_follow_the_cursor_without_gaps_or_repeats(db: &TestDb) {
    let w = world(db).await;
    let pool = projected(db).await;
    let mut conn = pool.acquire().await.unwrap();
    let mut query = InboxQuery {
        account_id: Some(w.account),
        limit: 3,
        ..Default::default()
    };
    let first = InboxProjection::list(&mut conn, &query).await.unwrap();
    assert_eq!(first.len(), 3);
    let last = first.last().unwrap();
    query.after = Some((last.last_activity_at.clone(), last.conversation_id.clone()));
    let second = InboxProjection::list(&mut conn, &query).await.unwrap();
    assert_eq!(ids(&second), vec![w.closed.to_string()]);
}

async fn applying_every_event_twice_changes_nothing(db: &TestDb) {
    let w = world(db).await;
    let pool = projected(db).await;
    let query = InboxQuery {
        account_id: Some(w.account),
        include_archived: true,
        limit: 50,
        ..Default::default()
    };
    let mut conn = pool.acquire().await.unwrap();
    let before = InboxProjection::list(&mut conn, &query).await.unwrap();
    let events = common::all_events(db.store.as_ref()).await;
    let mut tx = conn.begin().await.unwrap();
    for event in &events {
        InboxProjection.apply(&mut tx, event).await.unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(InboxProjection::list(&mut conn, &query).await.unwrap(), before);
}

on_both_backends!(
    every_filter_finds_what_it_should,
    reading_clears_unread_and_archiving_hides,
    pages_follow_the_cursor_without_gaps_or_repeats,
    applying_every_event_twice_changes_nothing,
);

/// The batch path (used by projectors and rebuilds) and the event-by-event path build the same inbox.
async fn batches_and_single_events_build_the_same_inbox(db: &TestDb) {
    let seeded = netia::seed::seed_demo(db.store.clone(), 3_000, 30, 5).await.unwrap();
    let pool = read_model_pool(&db.url, 2).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    InboxProjection.setup_with_query_indexes(&mut conn).await.unwrap();
    let events = common::all_events(db.store.as_ref()).await;
    let query = InboxQuery {
        include_archived: true,
        limit: 200,
        ..Default::default()
    };
    let dump = async |conn: &mut sqlx::AnyConnection| {
        let rows = InboxProjection::list(conn, &query).await.unwrap();
        let mut unread = Vec::new();
        for agent in &seeded.agents {
            let q = InboxQuery {
                unread_for: Some(*agent),
                ..query.clone()
            };
            unread.push(InboxProjection::count(conn, &q).await.unwrap());
        }
        (rows, unread)
    };

    let mut tx = conn.begin().await.unwrap();
    for event in &events {
        InboxProjection.apply(&mut tx, event).await.unwrap();
    }
    tx.commit().await.unwrap();
    let one_by_one = dump(&mut conn).await;

    for table in ["inbox", "inbox_tags", "inbox_reads", "inbox_customers"] {
        sqlx::query(&format!("DELETE FROM {table}"))
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    for chunk in events.chunks(333) {
        let mut tx = conn.begin().await.unwrap();
        InboxProjection
            .apply_batch(&mut tx, chunk)
            .await
            .map_err(|(p, e)| format!("{p}: {e}"))
            .unwrap();
        tx.commit().await.unwrap();
    }
    let batched = dump(&mut conn).await;
    assert_eq!(batched.0.len(), 30);
    assert_eq!(batched, one_by_one);

    // And a batch applied a second time changes nothing.
    let mut tx = conn.begin().await.unwrap();
    InboxProjection
        .apply_batch(&mut tx, &events)
        .await
        .map_err(|(p, e)| format!("{p}: {e}"))
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(dump(&mut conn).await, one_by_one);
}

mod batch {
    use super::*;
    on_both_backends!(batches_and_single_events_build_the_same_inbox);
}
