//! Anchors (issue 20 part 2), on both databases through the CLI: someone with the database
//! owner's rights rewrites an event and recomputes every later link of its stream, so that plain
//! `audit verify` passes; `audit verify --anchor FILE` against an anchor written before still
//! fails, and so does an anchor file whose heads were edited.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Utc;
use common::{Raw, TestDb};
use netia::command_bus::CommandBus;
use netia::store::StreamBound;
use netia_commands::Conversation;
use netia_events::chain::{ChainInput, GENESIS, link};
use netia_events::conversation::Author;
use netia_events::{AccountId, ConversationId, CustomerId, Metadata, StreamRef};
use serde_json::Value;

/// A conversation with `n` customer messages (events at versions 1 to `n + 1`).
async fn conversation(db: &TestDb, n: usize) -> ConversationId {
    let bus = CommandBus::new(db.store.clone());
    let (id, customer_id) = (ConversationId::new(), CustomerId::new());
    let meta = Metadata::system("test");
    let open = common::open_conversation(id, AccountId::new(), customer_id, Utc::now());
    bus.execute::<Conversation>(id, open, &meta).await.unwrap();
    for i in 0..n {
        let say = common::message(
            Author::Customer { customer_id },
            &format!("message {i}"),
            false,
            None,
            Utc::now(),
        );
        bus.execute::<Conversation>(id, say, &meta).await.unwrap();
    }
    id
}

/// Rewrites the body of the event at `version` of `id` and recomputes the plain SHA-256 chain from
/// there on, with the owner's rights (triggers off meanwhile).
async fn rewrite_history(db: &TestDb, id: ConversationId, version: i64) {
    let id = id.to_string();
    match &db.raw {
        Raw::Postgres(pool) => {
            sqlx::query("ALTER TABLE events DISABLE TRIGGER events_no_update_delete")
                .execute(pool)
                .await
                .unwrap();
            sqlx::query("UPDATE events SET payload = jsonb_set(payload, '{body}', '\"rewritten\"') WHERE stream_id = $1 AND version = $2")
                .bind(&id)
                .bind(version)
                .execute(pool)
                .await
                .unwrap();
        }
        Raw::Sqlite(pool) => {
            sqlx::query("DROP TRIGGER events_no_update")
                .execute(pool)
                .await
                .unwrap();
            sqlx::query("UPDATE events SET payload = json_set(payload, '$.body', 'rewritten') WHERE stream_id = ?1 AND version = ?2")
                .bind(&id)
                .bind(version)
                .execute(pool)
                .await
                .unwrap();
        }
    }
    let events = db
        .store
        .read_stream(&StreamRef::new("conversation", &id), StreamBound::All)
        .await
        .unwrap();
    let mut prev = GENESIS.to_vec();
    for event in &events {
        let hash = link(
            &prev,
            &ChainInput {
                event_id: event.event_id,
                stream_type: &event.stream_type,
                stream_id: &event.stream_id,
                version: event.version,
                event_type: &event.event_type,
                event_version: event.event_version,
                payload: &event.payload,
                metadata: &event.metadata,
                recorded_at: event.recorded_at,
            },
        )
        .to_vec();
        if event.version >= version {
            match &db.raw {
                Raw::Postgres(pool) => {
                    sqlx::query("UPDATE events SET hash = $1 WHERE event_id = $2")
                        .bind(&hash)
                        .bind(event.event_id)
                        .execute(pool)
                        .await
                        .unwrap();
                }
                Raw::Sqlite(pool) => {
                    sqlx::query("UPDATE events SET hash = ?1 WHERE event_id = ?2")
                        .bind(&hash)
                        .bind(event.event_id.to_string())
                        .execute(pool)
                        .await
                        .unwrap();
                }
            }
        }
        prev = hash;
    }
    if let Raw::Postgres(pool) = &db.raw {
        sqlx::query("ALTER TABLE events ENABLE TRIGGER events_no_update_delete")
            .execute(pool)
            .await
            .unwrap();
    }
}

/// `netia ARGS` on `db`: (exit success, stdout).
fn run(db: &TestDb, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netia"))
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap())
}

async fn an_anchor_catches_a_rewrite_that_recomputed_the_chain(db: &TestDb) {
    let tampered = conversation(db, 3).await;
    let other = conversation(db, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("anchors.jsonl");
    let file = file.to_str().unwrap();

    let said = db.netia(&["audit", "anchor", "--file", file]);
    assert!(said.contains("anchored 2 streams"), "{said}");
    // Printed instead of appended: the same heads, one JSON line.
    let printed: Value = serde_json::from_str(db.netia(&["audit", "anchor"]).trim()).unwrap();
    assert_eq!(printed["streams"], 2);
    let kept: Value = serde_json::from_str(std::fs::read_to_string(file).unwrap().trim()).unwrap();
    assert_eq!(printed["merkle_root"], kept["merkle_root"]);
    assert!(
        db.netia(&["audit", "verify", "--anchor", file])
            .contains("2 anchored heads checked; 0 broken")
    );

    // More events after the anchor change nothing; a second anchor is appended.
    conversation(db, 1).await;
    db.netia(&["audit", "anchor", "--file", file]);
    assert_eq!(std::fs::read_to_string(file).unwrap().lines().count(), 2);
    assert!(
        db.netia(&["audit", "verify", "--anchor", file])
            .contains("2 anchors, 5 anchored heads checked; 0 broken")
    );

    rewrite_history(db, tampered, 2).await;
    let (plain, said) = run(db, &["audit", "verify"]);
    assert!(plain, "a recomputed plain chain verifies on its own: {said}");
    let (ok, said) = run(db, &["audit", "verify", "--anchor", file]);
    assert!(!ok, "{said}");
    assert!(
        said.contains(&format!("BROKEN conversation:{tampered} at version 4")),
        "{said}"
    );
    assert!(!said.contains(&other.to_string()), "the other stream is intact: {said}");
    assert!(said.contains("5 anchored heads checked; 2 broken"), "{said}");

    // An anchor file whose heads were edited no longer gives its root.
    let edited = std::fs::read_to_string(file)
        .unwrap()
        .replacen("\"version\":4", "\"version\":3", 1);
    std::fs::write(file, edited).unwrap();
    let (ok, said) = run(db, &["audit", "verify", "--anchor", file]);
    assert!(!ok && said.contains("BROKEN the anchor itself"), "{said}");
    // Not an anchor file at all: a clear error.
    std::fs::write(file, "{\"hello\":1}\n").unwrap();
    let (ok, _) = run(db, &["audit", "verify", "--anchor", file]);
    assert!(!ok);
}

on_both_backends!(an_anchor_catches_a_rewrite_that_recomputed_the_chain);
