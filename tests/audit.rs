//! Auditors: history and as-of state from the log alone, and chain verification, in code and on the CLI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use common::{Raw, TestDb};
use netia::audit::{AuditError, replay_conversation, verify};
use netia::command_bus::CommandBus;
use netia_commands::{Conversation, ConversationCommand};
use netia_events::conversation::Author;
use netia_events::{AccountId, Actor, ConversationId, CustomerId, Metadata, StreamRef, UserId};
use serde_json::Value;

/// A conversation that was opened, answered, tagged, and closed, with pauses between.
async fn story(db: &TestDb) -> (ConversationId, chrono::DateTime<Utc>, chrono::DateTime<Utc>) {
    let bus = CommandBus::new(db.store.clone());
    let id = ConversationId::new();
    let customer_id = CustomerId::new();
    let agent = UserId::new();
    let as_customer = Metadata::new(Actor::Customer { customer_id });
    let as_agent = Metadata::new(Actor::Agent { user_id: agent });
    let run = |cmd: ConversationCommand, meta: &Metadata| {
        let bus = bus.clone();
        let meta = meta.clone();
        async move { bus.execute::<Conversation>(id, cmd, &meta).await.unwrap() }
    };
    run(
        common::open_conversation(id, AccountId::new(), customer_id, Utc::now()),
        &as_customer,
    )
    .await;
    let post = |author: Author, body: &str| common::message(author, body, false, None, Utc::now());
    run(post(Author::Customer { customer_id }, "my order is late"), &as_customer).await;
    run(post(Author::Agent { user_id: agent }, "looking into it"), &as_agent).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let answered = Utc::now();
    tokio::time::sleep(Duration::from_millis(30)).await;
    run(ConversationCommand::Tag { tag: "shipping".into() }, &as_agent).await;
    run(ConversationCommand::Close { at: Utc::now() }, &as_agent).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let closed = Utc::now();
    (id, answered, closed)
}

async fn the_state_as_of_an_instant_comes_from_the_log(db: &TestDb) {
    let (id, answered, closed) = story(db).await;
    let then = replay_conversation(db.store.as_ref(), id, Some(answered))
        .await
        .unwrap();
    assert_eq!(
        (then.state.status, then.state.messages, then.state.version),
        ("open", 2, 3)
    );
    assert!(then.state.tags.is_empty() && then.state.handed_to_human);
    let later = replay_conversation(db.store.as_ref(), id, Some(closed)).await.unwrap();
    assert_eq!((later.state.status, later.state.version), ("closed", 5));
    assert_eq!(later.state.tags, vec!["shipping".to_owned()]);
    assert_eq!(later.events.len(), 5);
    assert!(matches!(later.events[2].actor, Some(Actor::Agent { .. })), "who");
    assert_eq!(later.events[4].summary, "closed", "what");
    assert!(later.events.windows(2).all(|w| w[0].at <= w[1].at), "when, in order");

    let before = replay_conversation(db.store.as_ref(), id, Some(answered - chrono::Duration::hours(1))).await;
    assert!(matches!(before, Err(AuditError::NotYet(..))));
    let missing = replay_conversation(db.store.as_ref(), ConversationId::new(), None).await;
    assert!(matches!(missing, Err(AuditError::NotFound(_))));
}

async fn verification_finds_the_first_broken_link(db: &TestDb) {
    let (id, _, _) = story(db).await;
    let report = verify(db.store.as_ref(), None).await.unwrap();
    assert_eq!((report.streams, report.events, report.broken.len()), (1, 5, 0));
    match &db.raw {
        Raw::Postgres(pool) => {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("ALTER TABLE events DISABLE TRIGGER events_no_update_delete")
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query(
                "UPDATE events SET payload = jsonb_set(payload::jsonb, '{tag}', '\"refunds\"')::json WHERE version = 4",
            )
            .execute(&mut *tx)
            .await
            .unwrap();
            tx.commit().await.unwrap();
        }
        Raw::Sqlite(pool) => {
            sqlx::query("DROP TRIGGER events_no_update")
                .execute(pool)
                .await
                .unwrap();
            sqlx::query("UPDATE events SET payload = json_set(payload, '$.tag', 'refunds') WHERE version = 4")
                .execute(pool)
                .await
                .unwrap();
        }
    }
    let report = verify(db.store.as_ref(), Some(StreamRef::new("conversation", id)))
        .await
        .unwrap();
    assert_eq!(report.broken.len(), 1);
    assert_eq!(report.broken[0].1.version, 4);
}

on_both_backends!(
    the_state_as_of_an_instant_comes_from_the_log,
    verification_finds_the_first_broken_link
);

fn netia(url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_netia"));
    cmd.env("DATABASE_URL", url)
        .env("NETIA_SECRET_KEY", common::api::SECRET_KEY)
        .env_remove("RUST_LOG");
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_replays_and_verifies() {
    let db = TestDb::sqlite().await.unwrap();
    let (id, answered, _) = story(&db).await;

    let out = netia(&db.url)
        .args([
            "replay",
            "conversation",
            &id.to_string(),
            "--json",
            "--as-of",
            &answered.to_rfc3339(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["state"]["status"], "open");
    assert_eq!(json["events"].as_array().unwrap().len(), 3);

    let text = netia(&db.url)
        .args(["replay", "conversation", &id.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("ConversationClosed") && text.contains("state: closed"),
        "{text}"
    );

    let bad_id = netia(&db.url)
        .args(["replay", "conversation", "not-a-uuid"])
        .output()
        .unwrap();
    assert_eq!(bad_id.status.code(), Some(2));
    let bad_time = netia(&db.url)
        .args(["replay", "conversation", &id.to_string(), "--as-of", "yesterday"])
        .output()
        .unwrap();
    assert_eq!(bad_time.status.code(), Some(2));
    let unknown = netia(&db.url)
        .args(["replay", "conversation", &ConversationId::new().to_string()])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not found"));

    let ok = netia(&db.url).args(["audit", "verify"]).output().unwrap();
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).contains("1 streams, 5 events checked; 0 broken"));

    let Raw::Sqlite(pool) = &db.raw else { unreachable!() };
    sqlx::query("DROP TRIGGER events_no_update")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE events SET metadata = '{}' WHERE version = 2")
        .execute(pool)
        .await
        .unwrap();
    let broken = netia(&db.url).args(["audit", "verify"]).output().unwrap();
    assert_eq!(broken.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&broken.stdout);
    assert!(
        stdout.contains(&format!("BROKEN conversation:{id} at version 2")),
        "{stdout}"
    );
    db.cleanup().await;
}

/// At several instants, the state replayed from the log as of that instant equals what the live
/// inbox projection showed then.
async fn as_of_matches_the_live_inbox_at_each_instant(db: &TestDb) {
    use netia_events::conversation::Priority;
    use netia_projections::{InboxProjection, InboxQuery};
    let bus = CommandBus::new(db.store.clone());
    let meta = Metadata::system("test");
    let id = ConversationId::new();
    let customer_id = CustomerId::new();
    let agent = UserId::new();
    let pool = netia::projector::read_model_pool(&db.url, 2).await.unwrap();
    let projector =
        netia::projector::Projector::new(db.store.clone(), pool.clone(), std::sync::Arc::new(InboxProjection));
    projector.setup().await.unwrap();
    let steps = vec![
        common::open_conversation(id, AccountId::new(), customer_id, Utc::now()),
        common::message(Author::Customer { customer_id }, "hi", false, None, Utc::now()),
        ConversationCommand::SetPriority {
            priority: Priority::Priority,
        },
        ConversationCommand::Assign { assignee: Some(agent) },
        ConversationCommand::Tag { tag: "billing".into() },
        ConversationCommand::Close { at: Utc::now() },
        ConversationCommand::Reopen { at: Utc::now() },
        ConversationCommand::Snooze {
            until: Utc::now() + chrono::Duration::days(1),
            at: Utc::now(),
        },
        ConversationCommand::Assign { assignee: None },
    ];
    let mut seen = Vec::new();
    for step in steps {
        bus.execute::<Conversation>(id, step, &meta).await.unwrap();
        projector.catch_up().await.unwrap();
        let mut conn = pool.acquire().await.unwrap();
        let query = InboxQuery {
            include_archived: true,
            limit: 10,
            ..Default::default()
        };
        let row = InboxProjection::list(&mut conn, &query).await.unwrap().remove(0);
        tokio::time::sleep(Duration::from_millis(5)).await;
        seen.push((Utc::now(), row));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for (instant, row) in seen {
        let then = replay_conversation(db.store.as_ref(), id, Some(instant))
            .await
            .unwrap()
            .state;
        let tags = if then.tags.is_empty() {
            None
        } else {
            Some(then.tags.join(","))
        };
        assert_eq!(
            (then.status, then.priority, then.assignee.map(|u| u.to_string()), tags),
            (
                row.status.as_str(),
                row.priority.as_str(),
                row.assignee_id.clone(),
                row.tags.clone()
            ),
            "as of {instant}"
        );
        assert_eq!(then.version, row.version);
    }
}

mod as_of {
    use super::*;
    on_both_backends!(as_of_matches_the_live_inbox_at_each_instant);
}
