//! Upcasting on stored data (ADR 0017): a history written by the code whose message events were at
//! version 1 (`tests/fixtures/v1`, committed JSON, never regenerated) is loaded into a fresh log as
//! stored rows, then decoded (the four chat message events become version 2 with `format: text`
//! and no attachments), verified, projected by `netia projections rebuild` and replayed by
//! `netia replay` — and every read-model row and every replay equals what the version-1 code made
//! of the same history.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::{Raw, TestDb};
use netia_events::conversation::{ConversationEvent, MessageFormat};
use netia_events::{DomainEvent, RecordedEvent};
use netia_projections::conversation::SEEN_AT;
use serde_json::{Map, Value};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v1");

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Writes the fixture's rows into the log as they were stored (same ids, payloads, times, hashes).
async fn load_stored_history(db: &TestDb) -> Vec<Value> {
    let rows = fixture("events.json").as_array().unwrap().clone();
    for row in &rows {
        let text = |k: &str| row[k].as_str().unwrap().to_owned();
        let hash = hex::decode(text("hash")).unwrap();
        match &db.raw {
            Raw::Postgres(pool) => {
                sqlx::query(
                    "INSERT INTO events (event_id, stream_type, stream_id, version, event_type, event_version, \
                     payload, metadata, recorded_at, hash) \
                     VALUES ($1::uuid, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9::timestamptz, $10)",
                )
                .bind(text("event_id"))
                .bind(text("stream_type"))
                .bind(text("stream_id"))
                .bind(row["version"].as_i64().unwrap())
                .bind(text("event_type"))
                .bind(row["event_version"].as_i64().unwrap() as i32)
                .bind(row["payload"].to_string())
                .bind(row["metadata"].to_string())
                .bind(text("recorded_at"))
                .bind(hash)
                .execute(pool)
                .await
                .unwrap();
            }
            Raw::Sqlite(pool) => {
                let position = row["global_position"].as_i64().unwrap();
                sqlx::query(
                    "INSERT INTO events (global_position, tx_id, event_id, stream_type, stream_id, version, \
                     event_type, event_version, payload, metadata, recorded_at, hash) \
                     VALUES (?1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .bind(position)
                .bind(text("event_id"))
                .bind(text("stream_type"))
                .bind(text("stream_id"))
                .bind(row["version"].as_i64().unwrap())
                .bind(text("event_type"))
                .bind(row["event_version"].as_i64().unwrap())
                .bind(row["payload"].to_string())
                .bind(row["metadata"].to_string())
                .bind(text("recorded_at"))
                .bind(hash)
                .execute(pool)
                .await
                .unwrap();
            }
        }
    }
    rows
}

async fn a_stored_version_1_history_decodes_projects_and_replays_as_it_did(db: &TestDb) {
    let rows = load_stored_history(db).await;
    let events: Vec<RecordedEvent> = common::all_events(db.store.as_ref()).await;
    assert_eq!(events.len(), rows.len());

    // Decoding: every stored event decodes; version-1 messages come up as version 2.
    let mut upcast: BTreeMap<&str, usize> = BTreeMap::new();
    for (event, row) in events.iter().zip(&rows) {
        assert_eq!(event.global_position, row["global_position"].as_i64().unwrap());
        assert_eq!(event.event_version, 1, "stored as version 1");
        if event.stream_type != ConversationEvent::STREAM_TYPE {
            continue;
        }
        let decoded = ConversationEvent::decode(event).unwrap_or_else(|e| panic!("{e}"));
        let shape = match &decoded {
            ConversationEvent::CustomerMessagePosted(e) => Some((e.format, e.attachments.len())),
            ConversationEvent::AgentMessagePosted(e) => Some((e.format, e.attachments.len())),
            ConversationEvent::PrivateNoteAdded(e) => Some((e.format, e.attachments.len())),
            ConversationEvent::BotMessagePosted(e) => Some((e.format, e.attachments.len())),
            _ => None,
        };
        if let Some(shape) = shape {
            assert_eq!(shape, (MessageFormat::Text, 0), "{}", event.event_type);
            assert_eq!(decoded.event_version(), 2);
            *upcast.entry(decoded.event_type()).or_default() += 1;
            // The version-2 payload is the version-1 payload plus the two fields, nothing else.
            let mut v2 = decoded.to_payload().unwrap();
            let v2 = v2.as_object_mut().unwrap();
            assert_eq!(v2.remove("format"), Some(Value::from("text")));
            assert_eq!(v2.remove("attachments"), Some(Value::Array(Vec::new())));
            assert_eq!(&Value::Object(v2.clone()), &event.payload, "{}", event.event_type);
        }
    }
    assert_eq!(
        upcast.keys().copied().collect::<Vec<_>>(),
        vec![
            "AgentMessagePosted",
            "BotMessagePosted",
            "CustomerMessagePosted",
            "PrivateNoteAdded"
        ],
        "the fixture holds every upcast kind: {upcast:?}"
    );

    // The chain still verifies: it hashes what is stored, which upcasting never touches.
    let verification = netia::audit::verify(db.store.as_ref(), None).await.unwrap();
    assert!(verification.broken.is_empty(), "{:?}", verification.broken);
    assert_eq!(verification.events, rows.len());

    // Projection: every read-model row the version-1 code made, column for column; messages
    // gained `format`, which is `text` for all of them, and `attachments`, none for all of them.
    db.netia(&["projections", "rebuild"]);
    let expected = fixture("read_models.json");
    for (table, want) in expected.as_object().unwrap() {
        let mut got = if table == "conversation_messages" {
            // Read receipts are rows of their own now: a message's `seen_at` is read through them.
            let sql = format!("SELECT *, {SEEN_AT} AS seen_at_read FROM conversation_messages");
            let mut rows = common::rows::query_rows(db, &sql).await;
            for row in &mut rows {
                let read = row.remove("seen_at_read").unwrap();
                row.insert("seen_at".into(), read);
            }
            rows
        } else {
            common::rows::table_rows(db, table).await
        };
        let want = want.as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{table}: row count");
        if table == "conversation_messages" {
            for row in &mut got {
                assert_eq!(row.remove("format"), Some(Value::from("text")), "{table}: {row:?}");
                assert_eq!(row.remove("attachments"), Some(Value::from("[]")), "{table}: {row:?}");
            }
        }
        let key = |r: &Map<String, Value>| serde_json::to_string(r).unwrap();
        let mut got: Vec<String> = got.iter().map(key).collect();
        let mut want: Vec<String> = want.iter().map(|r| key(r.as_object().unwrap())).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{table}");
    }

    // Replay: each conversation's history and state, as `netia replay` printed them.
    let replays = fixture("replays.json");
    for (id, want) in replays.as_object().unwrap() {
        let printed = db.netia(&[
            "replay",
            "conversation",
            id,
            "--json",
            "--as-of",
            "2030-01-01T00:00:00Z",
        ]);
        let got: Value = serde_json::from_str(&printed).unwrap();
        assert_eq!(&got, want, "replay of {id}");
    }
}

on_both_backends!(a_stored_version_1_history_decodes_projects_and_replays_as_it_did);
