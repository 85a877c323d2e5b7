//! Projections without downtime (ADR 0019), on both databases. A server starts over a history
//! whose read models are in three states at once:
//! - `reporting` was built by an older version of its projection (its tables are wrong): it is
//!   rebuilt in its shadow in the background and swapped in, and ends equal to a fresh rebuild;
//! - `ai_outcomes` is new (no checkpoint, no table): it builds from the whole log in the background;
//! - `customer` was built by a newer version than this code's: it is left alone;
//!
//! while the other projections keep following the log: conversations written meanwhile reach the
//! inbox.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::TestDb;
use common::ai_history;
use common::api::Api;
use common::rows::table_rows;
use netia::command_bus::CommandBus;
use netia::projector::{ProjectionStatus, read_model_pool, status};
use netia_events::AccountId;
use serde_json::{Map, Value};

/// Writes `n` conversations of `account`, each with a customer message, an agent reply and a close.
async fn history(bus: &CommandBus, account: AccountId, n: usize) {
    use ai_history::Step::{Agent, Close, Customer};
    for _ in 0..n {
        ai_history::conversation(bus, account, chrono::Utc::now(), &[Customer(1), Agent(2), Close(3)]).await;
    }
}

async fn sql(db: &TestDb, statement: &str) {
    let pool = read_model_pool(&db.url, 2).await.unwrap();
    sqlx::query(statement).execute(&pool).await.unwrap();
    pool.close().await;
}

async fn projection(db: &TestDb, name: &str) -> ProjectionStatus {
    let pool = read_model_pool(&db.url, 2).await.unwrap();
    let all = status(&db.store, &pool).await.unwrap();
    pool.close().await;
    all.into_iter().find(|p| p.name == name).unwrap()
}

/// The rows of `table`, in a stable order.
async fn sorted(db: &TestDb, table: &str) -> Vec<String> {
    let mut rows: Vec<String> = table_rows(db, table)
        .await
        .iter()
        .map(|row: &Map<String, Value>| serde_json::to_string(row).unwrap())
        .collect();
    rows.sort();
    rows
}

async fn stale_new_and_newer_projections_settle_while_the_others_follow_the_log(db: &TestDb) {
    let bus = CommandBus::new(db.store.clone());
    let account = AccountId::new();
    history(&bus, account, 40).await;
    db.netia(&["projections", "rebuild"]);
    let customer_at = projection(db, "customer").await.checkpoint;
    // reporting: built by "version 0", whose tables lack what version 1 writes.
    sql(
        db,
        "UPDATE projection_checkpoints SET version = 0 WHERE name = 'reporting'",
    )
    .await;
    sql(db, "DELETE FROM reporting_daily").await;
    // ai_outcomes: never built.
    sql(db, "DELETE FROM projection_checkpoints WHERE name = 'ai_outcomes'").await;
    sql(db, "DROP TABLE ai_outcomes").await;
    // customer: built by a future version.
    sql(
        db,
        "UPDATE projection_checkpoints SET version = 99 WHERE name = 'customer'",
    )
    .await;

    let _api = Api::start(db).await;
    // Conversations keep coming while the rebuilds run.
    history(&bus, account, 10).await;
    let head = db.store.head().await.unwrap();
    let settled = |p: &ProjectionStatus| p.checkpoint == head && p.stored_version == Some(p.version);
    for _ in 0..400 {
        let (reporting, outcomes, inbox) = (
            projection(db, "reporting").await,
            projection(db, "ai_outcomes").await,
            projection(db, "inbox").await,
        );
        if settled(&reporting) && settled(&outcomes) && settled(&inbox) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for name in ["reporting", "ai_outcomes", "inbox", "conversation"] {
        let p = projection(db, name).await;
        assert!(settled(&p), "{name}: {p:?} (log head {head:?})");
    }
    let customer = projection(db, "customer").await;
    assert_eq!(
        (customer.stored_version, customer.checkpoint),
        (Some(99), customer_at),
        "a newer version's tables are left alone"
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM inbox").await, 50);
    assert_eq!(db.count("SELECT COUNT(*) FROM ai_outcomes").await, 50);

    // What the server built in the background equals a fresh rebuild of the whole log.
    let built = (sorted(db, "reporting_daily").await, sorted(db, "ai_outcomes").await);
    assert!(!built.0.is_empty());
    db.netia(&["projections", "rebuild", "reporting", "ai_outcomes"]);
    assert_eq!(
        (sorted(db, "reporting_daily").await, sorted(db, "ai_outcomes").await),
        built
    );

    // `projections status` shows each projection's version.
    let printed: Value = serde_json::from_str(&db.netia(&["projections", "status", "--json"])).unwrap();
    let customer = printed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "customer")
        .unwrap();
    assert_eq!(
        (customer["version"].as_i64(), customer["stored_version"].as_i64()),
        (Some(1), Some(99))
    );
}

on_both_backends!(stale_new_and_newer_projections_settle_while_the_others_follow_the_log);
