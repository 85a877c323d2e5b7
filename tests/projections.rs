//! The projector runtime with the customer read model, on both backends: exactly once, idempotent,
//! live.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use common::TestDb;
use netia::command_bus::CommandBus;
use netia::projector::{Projector, read_model_pool};
use netia::store::StreamBound;
use netia_commands::{Conversation, ConversationCommand, Customer, CustomerCommand};
use netia_events::conversation::{Author, Source};
use netia_events::customer::CustomerIdentity;
use netia_events::{AccountId, ConversationId, CustomerId, MessageId, Metadata, RecordedEvent, StreamRef};
use netia_projections::{CustomerProjection, CustomerRow, Projection, ProjectionError};
use serde_json::{Map, json};
use sqlx::{AnyConnection, AnyPool, Connection};

fn meta() -> Metadata {
    Metadata::system("test")
}

/// `n` customers, each identified, with metadata changes, conversations and messages.
async fn history(db: &TestDb, n: usize) -> Vec<CustomerId> {
    let bus = CommandBus::new(db.store.clone());
    let account_id = AccountId::new();
    let mut ids = Vec::new();
    for i in 0..n {
        let id = CustomerId::new();
        let mut metadata = Map::new();
        metadata.insert("browser".into(), json!("Firefox"));
        let create = CustomerCommand::Create {
            customer_id: id,
            account_id,
            identity: CustomerIdentity::default(),
            metadata,
            verified: false,
        };
        bus.execute::<Customer>(id, create, &meta()).await.unwrap();
        let identity = CustomerIdentity {
            email: Some(format!("c{i}@example.com")),
            ..Default::default()
        };
        bus.execute::<Customer>(
            id,
            CustomerCommand::Identify {
                identity,
                verified: false,
            },
            &meta(),
        )
        .await
        .unwrap();
        let changes: Map<_, _> = [("plan".to_owned(), json!(i)), ("browser".to_owned(), json!(null))]
            .into_iter()
            .collect();
        bus.execute::<Customer>(id, CustomerCommand::UpdateMetadata { changes }, &meta())
            .await
            .unwrap();
        for _ in 0..(i % 3) {
            let conversation_id = ConversationId::new();
            let create = ConversationCommand::Create {
                conversation_id,
                account_id,
                customer_id: id,
                inbox_id: netia_events::InboxId::new(),
                source: Source::Chat,
                subject: None,
                at: Utc::now(),
            };
            bus.execute::<Conversation>(conversation_id, create, &meta())
                .await
                .unwrap();
            let post = ConversationCommand::PostMessage {
                message_id: MessageId::new(),
                author: Author::Customer { customer_id: id },
                body: "hello".into(),
                format: netia_events::conversation::MessageFormat::Text,
                private: false,
                client_message_id: None,
                attachments: Vec::new(),
                at: Utc::now(),
            };
            bus.execute::<Conversation>(conversation_id, post, &meta())
                .await
                .unwrap();
        }
        ids.push(id);
    }
    ids
}

async fn rows(pool: &AnyPool) -> Vec<CustomerRow> {
    CustomerProjection::all(&mut pool.acquire().await.unwrap())
        .await
        .unwrap()
}

async fn projector(db: &TestDb, projection: Arc<dyn Projection>) -> (Projector, AnyPool) {
    let pool = read_model_pool(&db.url, 4).await.unwrap();
    let projector = Projector::new(db.store.clone(), pool.clone(), projection).with_batch(7);
    projector.setup().await.unwrap();
    (projector, pool)
}

async fn customers_are_projected(db: &TestDb) {
    let ids = history(db, 6).await;
    let (projector, pool) = projector(db, Arc::new(CustomerProjection)).await;
    let applied = projector.catch_up().await.unwrap();
    assert_eq!(applied, 18 + 12, "3 events per customer, 2 per conversation");
    let all = rows(&pool).await;
    assert_eq!(all.len(), 6);
    let mut conn = pool.acquire().await.unwrap();
    for (i, id) in ids.iter().enumerate() {
        let row = CustomerProjection::get(&mut conn, *id).await.unwrap().unwrap();
        assert_eq!(row.email.as_deref(), Some(format!("c{i}@example.com").as_str()));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&row.metadata).unwrap(),
            json!({"plan": i})
        );
        assert_eq!(row.conversation_count, (i % 3) as i64);
        assert_eq!(row.last_seen_at.is_some(), i % 3 > 0);
        assert_eq!(row.version, 3);
    }
    assert_eq!(projector.catch_up().await.unwrap(), 0, "nothing new");
}

/// Fails once, on the event at a given position.
struct FailOnce {
    inner: CustomerProjection,
    at: AtomicI64,
}

#[async_trait]
impl Projection for FailOnce {
    fn name(&self) -> &'static str {
        "customer"
    }
    fn tables(&self) -> &'static [&'static str] {
        self.inner.tables()
    }
    async fn setup(&self, conn: &mut AnyConnection) -> Result<(), ProjectionError> {
        self.inner.setup(conn).await
    }
    async fn apply(&self, conn: &mut AnyConnection, event: &RecordedEvent) -> Result<(), ProjectionError> {
        if self.at.load(Ordering::SeqCst) == event.global_position {
            self.at.store(-1, Ordering::SeqCst);
            return Err(ProjectionError::Invalid("injected failure".into()));
        }
        self.inner.apply(conn, event).await
    }
}

async fn a_failed_batch_applies_nothing_and_the_next_run_loses_and_repeats_nothing(db: &TestDb) {
    history(db, 6).await;
    let events = common::all_events(db.store.as_ref()).await;
    let fail_at = events[events.len() / 2].global_position;
    let failing = Arc::new(FailOnce {
        inner: CustomerProjection,
        at: AtomicI64::new(fail_at),
    });
    let (projector, pool) = projector(db, failing).await;
    let err = projector.catch_up().await.unwrap_err();
    assert!(err.to_string().contains(&format!("position {fail_at}")), "{err}");
    let stopped = projector.checkpoint().await.unwrap();
    assert!(
        stopped.position < fail_at,
        "the failing batch did not move the checkpoint"
    );
    let partial = rows(&pool).await;

    projector.catch_up().await.unwrap();
    let recovered = rows(&pool).await;
    assert!(recovered.len() >= partial.len());

    // The same log projected in one clean pass gives the same rows.
    let (clean, clean_pool) = {
        let pool = read_model_pool(&db.url, 2).await.unwrap();
        let mut conn = pool.acquire().await.unwrap();
        sqlx::query("DELETE FROM customers").execute(&mut *conn).await.unwrap();
        sqlx::query("DELETE FROM customer_conversations")
            .execute(&mut *conn)
            .await
            .unwrap();
        sqlx::query("DELETE FROM projection_checkpoints")
            .execute(&mut *conn)
            .await
            .unwrap();
        drop(conn);
        (
            Projector::new(db.store.clone(), pool.clone(), Arc::new(CustomerProjection)),
            pool,
        )
    };
    clean.catch_up().await.unwrap();
    assert_eq!(rows(&clean_pool).await, recovered);
}

async fn applying_an_event_twice_changes_nothing(db: &TestDb) {
    history(db, 5).await;
    let (projector, pool) = projector(db, Arc::new(CustomerProjection)).await;
    projector.catch_up().await.unwrap();
    let before = rows(&pool).await;
    let events = common::all_events(db.store.as_ref()).await;
    let mut conn = pool.acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    for event in &events {
        CustomerProjection.apply(&mut tx, event).await.unwrap();
    }
    tx.commit().await.unwrap();
    drop(conn);
    assert_eq!(rows(&pool).await, before);
}

async fn a_running_projector_follows_the_log(db: &TestDb) {
    let (projector, pool) = projector(db, Arc::new(CustomerProjection)).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(projector.run(stopped));
    let ids = history(db, 2).await;
    let last = db
        .store
        .read_stream(&StreamRef::new("customer", ids[1]), StreamBound::All)
        .await
        .unwrap()
        .last()
        .unwrap()
        .checkpoint();
    // Read-your-writes: the writer waits until the projection has its event.
    assert!(
        netia::projector::wait_for(&pool, "customer", last, Duration::from_secs(20))
            .await
            .unwrap(),
        "projector did not catch up"
    );
    let unreachable = netia_events::Checkpoint::at(i64::MAX);
    assert!(
        !netia::projector::wait_for(&pool, "customer", unreachable, Duration::from_millis(50))
            .await
            .unwrap()
    );
    let mut conn = pool.acquire().await.unwrap();
    assert!(CustomerProjection::get(&mut conn, ids[1]).await.unwrap().is_some());
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("stops")
        .unwrap();
}

/// A checkpoint stored as `(tx_id, position)` before ADR 0016 keeps its position, and the column
/// goes (the table is set up again as every start does).
async fn checkpoints_stored_with_a_transaction_id_keep_their_position(db: &TestDb) {
    let pool = read_model_pool(&db.url, 2).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query(
        "CREATE TABLE projection_checkpoints (name TEXT PRIMARY KEY, tx_id BIGINT NOT NULL, \
         position BIGINT NOT NULL, updated_at TEXT NOT NULL)",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query("INSERT INTO projection_checkpoints VALUES ('inbox', 987654, 42, '2026-11-30T00:00:00Z')")
        .execute(&mut *conn)
        .await
        .unwrap();
    netia_projections::Checkpoints::setup(&mut conn).await.unwrap();
    netia_projections::Checkpoints::setup(&mut conn).await.unwrap(); // again: nothing left to do
    let at = netia_projections::Checkpoints::load(&mut conn, "inbox").await.unwrap();
    assert_eq!(at, netia_events::Checkpoint::at(42));
    assert!(
        sqlx::query("SELECT tx_id FROM projection_checkpoints")
            .execute(&mut *conn)
            .await
            .is_err(),
        "the tx_id column is gone"
    );
    let to = netia_events::Checkpoint::at(50);
    assert!(
        netia_projections::Checkpoints::advance(&mut conn, "inbox", at, to)
            .await
            .unwrap()
    );
    assert!(
        !netia_projections::Checkpoints::advance(&mut conn, "inbox", at, to)
            .await
            .unwrap(),
        "moved already"
    );
}

on_both_backends!(
    checkpoints_stored_with_a_transaction_id_keep_their_position,
    customers_are_projected,
    a_failed_batch_applies_nothing_and_the_next_run_loses_and_repeats_nothing,
    applying_an_event_twice_changes_nothing,
    a_running_projector_follows_the_log,
    a_seeded_history_projects_consistently,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projections_status_shows_checkpoint_and_lag() {
    let db = TestDb::sqlite().await.unwrap();
    history(&db, 3).await; // 9 customer events + 3 conversations × 2
    let status = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_netia"))
            .env("NETIA_SECRET_KEY", common::api::SECRET_KEY)
            .env("DATABASE_URL", &db.url)
            .args(["projections", "status", "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        json.as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "customer")
            .cloned()
            .unwrap()
    };
    let behind = status();
    assert_eq!(behind["lag_events"], 15);
    assert!(behind["lag_seconds"].as_f64().unwrap() >= 0.0);
    let (projector, _) = projector(&db, Arc::new(CustomerProjection)).await;
    projector.catch_up().await.unwrap();
    let caught_up = status();
    assert_eq!(caught_up["lag_events"], 0);
    assert_eq!(caught_up["lag_seconds"], 0.0);
    db.cleanup().await;
}

async fn a_seeded_history_projects_consistently(db: &TestDb) {
    let report = netia::seed::seed_demo(db.store.clone(), 3_000, 30, 7).await.unwrap();
    assert!(report.events >= 3_000);
    let pool = read_model_pool(&db.url, 4).await.unwrap();
    for projection in netia::projector::projections() {
        let projector = Projector::new(db.store.clone(), pool.clone(), projection).with_batch(250);
        projector.setup().await.unwrap();
        projector.catch_up().await.unwrap();
    }
    let mut conn = pool.acquire().await.unwrap();
    let mut count = async |sql: &str| -> i64 { sqlx::query_scalar(sql).fetch_one(&mut *conn).await.unwrap() };
    assert_eq!(count("SELECT COUNT(*) FROM inbox").await, 30);
    let in_rows = count("SELECT CAST(SUM(message_count) AS BIGINT) FROM inbox").await;
    let messages = count("SELECT COUNT(*) FROM conversation_messages").await;
    assert_eq!(in_rows, messages, "inbox counts agree with the conversation view");
    assert_eq!(
        count("SELECT CAST(SUM(conversation_count) AS BIGINT) FROM customers").await,
        30
    );
    let verified = netia::audit::verify(db.store.as_ref(), None).await.unwrap();
    assert_eq!((verified.streams, verified.broken.len()), (60, 0));
}

/// Two nodes run the same projector: one holds the lease and works, the other waits; when the
/// first stops, the second takes over and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_one_active_projector_per_projection_with_failover() {
    let Some(db) = TestDb::postgres().await else { return };
    let common::Raw::Postgres(raw) = &db.raw else {
        unreachable!()
    };
    let pool = read_model_pool(&db.url, 4).await.unwrap();
    let node = |stopped| {
        let projector = Projector::new(db.store.clone(), pool.clone(), Arc::new(CustomerProjection));
        tokio::spawn(projector.run(stopped))
    };
    Projector::new(db.store.clone(), pool.clone(), Arc::new(CustomerProjection))
        .setup()
        .await
        .unwrap();
    let (stop_a, stopped_a) = tokio::sync::watch::channel(false);
    let (stop_b, stopped_b) = tokio::sync::watch::channel(false);
    let a = node(stopped_a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = node(stopped_b);
    let leases = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(raw)
        .await
        .unwrap()
    };
    let first = history(&db, 2).await;
    let head = common::all_events(db.store.as_ref()).await.last().unwrap().checkpoint();
    assert!(
        netia::projector::wait_for(&pool, "customer", head, Duration::from_secs(20))
            .await
            .unwrap()
    );
    assert_eq!(leases().await, 1, "one node holds the lease");

    stop_a.send(true).unwrap();
    a.await.unwrap();
    let second = history(&db, 2).await;
    let head = common::all_events(db.store.as_ref()).await.last().unwrap().checkpoint();
    assert!(
        netia::projector::wait_for(&pool, "customer", head, Duration::from_secs(20))
            .await
            .unwrap(),
        "the waiting node took over"
    );
    assert_eq!(leases().await, 1);
    let mut conn = pool.acquire().await.unwrap();
    for id in first.iter().chain(&second) {
        assert!(CustomerProjection::get(&mut conn, *id).await.unwrap().is_some());
    }
    stop_b.send(true).unwrap();
    b.await.unwrap();
    drop(conn);
    db.cleanup().await;
}

/// `netia projections rebuild` with no names rebuilds every read model in one pass and swaps them
/// in (all five then stand at the head); an unknown name is refused before anything runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rebuild_command_rebuilds_every_read_model_in_one_pass() {
    let db = TestDb::sqlite().await.unwrap();
    history(&db, 3).await;
    let netia = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_netia"))
            .env("NETIA_SECRET_KEY", common::api::SECRET_KEY)
            .env("DATABASE_URL", &db.url)
            .args(args)
            .output()
            .unwrap()
    };
    let unknown = netia(&["projections", "rebuild", "nonsense"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown projection"));
    let out = netia(&["projections", "rebuild"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("customer, inbox, conversation, reporting, ai_outcomes: rebuilt from 15 events in one pass"),
        "{said}"
    );
    let status = netia(&["projections", "status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    for projection in json.as_array().unwrap() {
        assert_eq!(projection["lag_events"], 0, "{projection}");
    }
    db.cleanup().await;
}
