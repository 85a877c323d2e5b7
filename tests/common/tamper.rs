//! Histories to tamper with, and tampering as the database's owner would (triggers off).

use chrono::Utc;
use netia::command_bus::CommandBus;
use netia::store::StreamBound;
use netia_commands::Conversation;
use netia_events::chain::{ChainInput, GENESIS, link};
use netia_events::conversation::Author;
use netia_events::{AccountId, ConversationId, CustomerId, Metadata, StreamRef};

use super::{Raw, TestDb};

/// A conversation with `n` customer messages (events at versions 1 to `n + 1`).
pub async fn conversation(db: &TestDb, n: usize) -> ConversationId {
    conversation_in(&db.store, n).await
}

/// [`conversation`] through `store` (e.g. one that links with a key).
pub async fn conversation_in(store: &std::sync::Arc<dyn netia::store::EventStore>, n: usize) -> ConversationId {
    let bus = CommandBus::new(store.clone());
    let (id, customer_id) = (ConversationId::new(), CustomerId::new());
    let meta = Metadata::system("test");
    let open = super::open_conversation(id, AccountId::new(), customer_id, Utc::now());
    bus.execute::<Conversation>(id, open, &meta).await.unwrap();
    for i in 0..n {
        let say = super::message(
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
pub async fn rewrite_history(db: &TestDb, id: ConversationId, version: i64) {
    let id = id.to_string();
    match &db.raw {
        Raw::Postgres(pool) => {
            sqlx::query("ALTER TABLE events DISABLE TRIGGER events_no_update_delete")
                .execute(pool)
                .await
                .unwrap();
            sqlx::query("UPDATE events SET payload = jsonb_set(payload::jsonb, '{body}', '\"rewritten\"')::json WHERE stream_id = $1 AND version = $2")
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
    // As stored (personal fields sealed): what the chain covers.
    let events = db
        .store
        .stored()
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
    match &db.raw {
        Raw::Postgres(pool) => {
            sqlx::query("ALTER TABLE events ENABLE TRIGGER events_no_update_delete")
                .execute(pool)
                .await
                .unwrap();
        }
        Raw::Sqlite(pool) => {
            sqlx::query(
                "CREATE TRIGGER events_no_update BEFORE UPDATE ON events \
                 BEGIN SELECT RAISE(ABORT, 'events are append-only (UPDATE refused)'); END",
            )
            .execute(pool)
            .await
            .unwrap();
        }
    }
}
