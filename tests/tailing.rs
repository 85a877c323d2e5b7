//! The tailer hands every committed event out exactly once, in log order: appends are serialized, so
//! none can commit behind an event already handed out, and nothing else holds events back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Raw, TestDb};
use netia::store::EventStore;
use netia::tail::Tailer;
use netia_events::{Checkpoint, NewEvent, RecordedEvent, StreamRef};
use serde_json::json;
use sqlx::Row;

const INSERT_PG: &str = "INSERT INTO events (event_id, stream_type, stream_id, version, event_type, event_version, \
     payload, metadata, recorded_at, hash) \
     VALUES ($1, 'probe', $2, 1, 'Probed', 1, '{}', '{}', now(), decode(repeat('00', 32), 'hex')) \
     RETURNING global_position";

/// Everything the tailer hands out right now, without waiting.
async fn drain(tailer: &mut Tailer) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    loop {
        let batch = tailer.try_next_batch().await.unwrap();
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

/// Exactly `n` events, waiting as a tailer does, then checks that nothing else follows.
async fn collect(tailer: &mut Tailer, n: usize) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    while all.len() < n {
        let batch = tokio::time::timeout(Duration::from_secs(30), tailer.next_batch())
            .await
            .expect("tailer stalled")
            .unwrap();
        all.extend(batch);
    }
    all.extend(drain(tailer).await);
    all
}

/// The transaction id of the backend whose application name is `name` (`None` if it has none).
async fn backend_xid(pool: &sqlx::PgPool, name: &str) -> Option<String> {
    sqlx::query_scalar("SELECT backend_xid::text FROM pg_stat_activity WHERE application_name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_appends_are_serialized_so_none_commits_behind_one_handed_out() {
    let Some(db) = TestDb::postgres().await else { return };
    let Raw::Postgres(pool) = &db.raw else { unreachable!() };
    let mut tailer = Tailer::new(db.store.clone(), Checkpoint::START);
    assert!(drain(&mut tailer).await.is_empty());

    // A inserts and stays open, holding the append lock.
    let mut a = pool.begin().await.unwrap();
    let pos_a: i64 = sqlx::query(INSERT_PG)
        .bind(uuid::Uuid::now_v7())
        .bind("A")
        .fetch_one(&mut *a)
        .await
        .unwrap()
        .get(0);
    // B, on its own connection, must wait for A before it gets a transaction id: without the lock
    // it would commit first with a newer id, and a reader by position alone would skip A for good.
    let mut b_conn = pool.acquire().await.unwrap().detach();
    sqlx::query("SET application_name = 'tailing_test_b'")
        .execute(&mut b_conn)
        .await
        .unwrap();
    let b = tokio::spawn(async move {
        let mut tx = sqlx::Connection::begin(&mut b_conn).await.unwrap();
        let pos: i64 = sqlx::query(INSERT_PG)
            .bind(uuid::Uuid::now_v7())
            .bind("B")
            .fetch_one(&mut *tx)
            .await
            .unwrap()
            .get(0);
        tx.commit().await.unwrap();
        pos
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b.is_finished(), "B waits for A's append lock");
    assert_eq!(
        backend_xid(pool, "tailing_test_b").await,
        None,
        "B has no transaction id while it waits"
    );
    assert!(drain(&mut tailer).await.is_empty(), "nothing is committed yet");

    a.commit().await.unwrap();
    let pos_b = tokio::time::timeout(Duration::from_secs(10), b)
        .await
        .expect("B goes on once A commits")
        .unwrap();
    assert!(pos_a < pos_b);
    let got = collect(&mut tailer, 2).await;
    let streams: Vec<&str> = got.iter().map(|e| e.stream_id.as_str()).collect();
    assert_eq!(streams, vec!["A", "B"], "both, once each, in commit order");
    assert!(got[0].tx_id < got[1].tx_id);

    // A tailer started from A's checkpoint gets B exactly once more, nothing else.
    let mut from_a = Tailer::new(db.store.clone(), got[0].checkpoint());
    assert_eq!(
        collect(&mut from_a, 1)
            .await
            .iter()
            .map(|e| e.global_position)
            .collect::<Vec<_>>(),
        vec![pos_b]
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_open_transaction_elsewhere_does_not_hold_events_back() {
    let Some(db) = TestDb::postgres().await else { return };
    let Raw::Postgres(pool) = &db.raw else { unreachable!() };
    let mut tailer = Tailer::new(db.store.clone(), Checkpoint::START);
    // A read model's transaction (it has a transaction id older than the append's) stays open.
    let mut other = pool.begin().await.unwrap();
    sqlx::query("CREATE TABLE read_model_probe (n int)")
        .execute(&mut *other)
        .await
        .unwrap();
    sqlx::query("INSERT INTO read_model_probe VALUES (1)")
        .execute(&mut *other)
        .await
        .unwrap();
    let appended = db
        .store
        .append(
            &StreamRef::new("probe", "x"),
            0,
            vec![NewEvent::new("Probed", 1, json!({}), json!({}))],
        )
        .await
        .unwrap();
    // A second store (another node) reads the database itself rather than its own appends.
    let other_node = netia::store::PgStore::connect(&db.url, 2).await.unwrap();
    let seen = other_node.read_all(Checkpoint::START, 10).await.unwrap();
    assert_eq!(
        seen.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        vec![appended[0].event_id],
        "committed events are readable at once, whatever else is open"
    );
    assert_eq!(collect(&mut tailer, 1).await.len(), 1);
    other.rollback().await.unwrap();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_transaction_that_wrote_something_else_first_cannot_append() {
    let Some(db) = TestDb::postgres().await else { return };
    let Raw::Postgres(pool) = &db.raw else { unreachable!() };
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("CREATE TABLE written_first (n int)")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("INSERT INTO written_first VALUES (1)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let refused = sqlx::query(INSERT_PG)
        .bind(uuid::Uuid::now_v7())
        .bind("late")
        .fetch_one(&mut *tx)
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("events must be the first thing their transaction writes"),
        "{refused}"
    );
    tx.rollback().await.unwrap();
    // Appending twice in one transaction is fine: the lock is held from the first.
    let mut tx = pool.begin().await.unwrap();
    for stream in ["one", "two"] {
        sqlx::query(INSERT_PG)
            .bind(uuid::Uuid::now_v7())
            .bind(stream)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(common::all_events(db.store.as_ref()).await.len(), 2);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_tailer_is_woken_by_a_commit_from_another_connection() {
    let Some(db) = TestDb::postgres().await else { return };
    // A second store on the same database stands for another node.
    let other = netia::store::PgStore::connect(&db.url, 2).await.unwrap();
    let mut tailer = Tailer::new(db.store.clone(), Checkpoint::START).with_poll(Duration::from_secs(3600));
    assert!(drain(&mut tailer).await.is_empty());
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        other
            .append(
                &StreamRef::new("probe", "n"),
                0,
                vec![NewEvent::new("Probed", 1, json!({}), json!({}))],
            )
            .await
            .unwrap();
        other // the other node stays up
    });
    let batch = tokio::time::timeout(Duration::from_secs(10), tailer.next_batch())
        .await
        .expect("LISTEN/NOTIFY wakes the tailer")
        .unwrap();
    assert_eq!(batch.len(), 1);
    drop(writer.await.unwrap());
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_overlapping_writers_are_serialized_and_tailed_once_in_commit_order() {
    let db = TestDb::sqlite().await.unwrap();
    let Raw::Sqlite(pool) = &db.raw else { unreachable!() };
    let mut tailer = Tailer::new(db.store.clone(), Checkpoint::START);
    assert!(drain(&mut tailer).await.is_empty());

    // A takes the write lock and inserts; B (the store) must wait for A's commit.
    let mut a = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
    sqlx::query(
        "INSERT INTO events (global_position, tx_id, event_id, stream_type, stream_id, version, event_type, \
         event_version, payload, metadata, recorded_at, hash) \
         VALUES (1, 1, ?1, 'probe', 'A', 1, 'Probed', 1, '{}', '{}', '2026-01-01T00:00:00.000000Z', zeroblob(32))",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .execute(&mut *a)
    .await
    .unwrap();
    let store = db.store.clone();
    let b = tokio::spawn(async move {
        store
            .append(
                &StreamRef::new("probe", "B"),
                0,
                vec![NewEvent::new("Probed", 1, json!({}), json!({}))],
            )
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!b.is_finished(), "B waits for A's write lock");
    assert!(
        drain(&mut tailer).await.is_empty(),
        "A's uncommitted event is invisible"
    );
    a.commit().await.unwrap();
    let b = b.await.unwrap();
    assert_eq!(b[0].global_position, 2);
    let got = drain(&mut tailer).await;
    assert_eq!(
        got.iter().map(|e| e.stream_id.as_str()).collect::<Vec<_>>(),
        vec!["A", "B"]
    );
    db.cleanup().await;
}

/// The log is read in position order whatever the rows' transaction ids say (ADR 0016): after a
/// dump and restore into another cluster, the restored events carry transaction ids from the old
/// cluster, larger than the new cluster's; a tailer that ordered by transaction id read the new
/// events before the restored ones, and once past a restored one never saw a new event again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_events_are_read_in_position_order_whatever_their_transaction_ids() {
    let Some(db) = TestDb::postgres().await else { return };
    let Raw::Postgres(pool) = &db.raw else { unreachable!() };
    // "Restored" rows from a cluster whose transaction ids ran far ahead of this one's.
    for (stream_id, tx) in [("restored-1", 1u64 << 40), ("restored-2", (1u64 << 40) + 7)] {
        sqlx::query(
            "INSERT INTO events (tx_id, event_id, stream_type, stream_id, version, event_type, event_version, \
             payload, metadata, recorded_at, hash) \
             VALUES ($1::text::xid8, $2, 'probe', $3, 1, 'Probed', 1, '{}', '{}', now(), decode(repeat('00', 32), 'hex'))",
        )
        .bind(tx.to_string())
        .bind(uuid::Uuid::now_v7())
        .bind(stream_id)
        .execute(pool)
        .await
        .unwrap();
    }
    let mut tailer = Tailer::new(db.store.clone(), Checkpoint::START).with_batch(1);
    let restored = collect(&mut tailer, 2).await;
    assert_eq!(
        restored.iter().map(|e| e.stream_id.as_str()).collect::<Vec<_>>(),
        vec!["restored-1", "restored-2"]
    );
    // New appends get this cluster's (smaller) transaction ids and later positions.
    let appended = db
        .store
        .append(
            &StreamRef::new("probe", "new"),
            0,
            vec![NewEvent::new("Probed", 1, json!({}), json!({}))],
        )
        .await
        .unwrap();
    assert!(
        appended[0].tx_id < restored[1].tx_id,
        "the premise: a smaller transaction id"
    );
    assert!(appended[0].global_position > restored[1].global_position);
    let got = collect(&mut tailer, 1).await;
    assert_eq!(
        got[0].stream_id, "new",
        "the tailer past the restored events sees the new one"
    );
    assert_eq!(
        db.store.head().await.unwrap(),
        appended[0].checkpoint(),
        "the head is the last position"
    );
    let (lag, _) = db.store.lag(restored[1].checkpoint()).await.unwrap();
    assert_eq!(lag, 1, "one event after the restored ones");
    assert!(drain(&mut tailer).await.is_empty(), "nothing repeats");
    db.cleanup().await;
}

/// A tailer started at the head sees what is appended later and nothing before.
async fn a_tailer_from_the_head_sees_only_later_events(db: &TestDb) {
    let store = db.store.as_ref();
    assert_eq!(store.head().await.unwrap(), Checkpoint::default(), "empty log");
    let stream = StreamRef::new("test", "head");
    let event = || NewEvent::new("Happened", 1, json!({}), json!({}));
    let before = store.append(&stream, 0, vec![event(), event()]).await.unwrap();
    let head = store.head().await.unwrap();
    assert_eq!(head, before[1].checkpoint());
    let after = store.append(&stream, 2, vec![event()]).await.unwrap();
    let mut tailer = Tailer::new(db.store.clone(), head);
    let seen = collect(&mut tailer, 1).await;
    assert_eq!(
        seen.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        vec![after[0].event_id]
    );
}

mod head {
    use super::*;
    on_both_backends!(a_tailer_from_the_head_sees_only_later_events);
}

/// Two nodes append at once: each node's tailer (fed partly from its own appends in memory, partly
/// from the database) hands out every event of both exactly once, in the same order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_two_nodes_appending_at_once_are_tailed_alike() {
    let Some(db) = TestDb::postgres().await else { return };
    let nodes = [
        db.store.clone(),
        std::sync::Arc::new(netia::store::PgStore::connect(&db.url, 4).await.unwrap())
            as std::sync::Arc<dyn EventStore>,
    ];
    let mut tailers: Vec<Tailer> = nodes
        .iter()
        .map(|node| Tailer::new(node.clone(), Checkpoint::START).with_batch(7))
        .collect();
    const PER_WRITER: usize = 150;
    let mut writers = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for w in 0..3 {
            let node = node.clone();
            writers.push(tokio::spawn(async move {
                let stream = StreamRef::new("probe", format!("node{n}-writer{w}"));
                for version in 0..PER_WRITER as i64 {
                    let events = vec![NewEvent::new("Probed", 1, json!({ "v": version }), json!({}))];
                    node.append(&stream, version, events).await.unwrap();
                }
            }));
        }
    }
    let total = 2 * 3 * PER_WRITER;
    let reads = tailers.iter_mut().map(|tailer| async move {
        let mut got: Vec<RecordedEvent> = Vec::new();
        while got.len() < total {
            let batch = tokio::time::timeout(Duration::from_secs(30), tailer.next_batch())
                .await
                .expect("tailer stalled")
                .unwrap();
            got.extend(batch);
        }
        got
    });
    let seen = futures_util::future::join_all(reads).await;
    for writer in writers {
        writer.await.unwrap();
    }
    let stored: Vec<uuid::Uuid> = common::all_events(db.store.as_ref())
        .await
        .iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(stored.len(), total);
    for got in seen {
        let ids: Vec<uuid::Uuid> = got.iter().map(|e| e.event_id).collect();
        assert_eq!(ids, stored, "every event once, in log order");
    }
    for tailer in &mut tailers {
        assert!(drain(tailer).await.is_empty());
    }
    db.cleanup().await;
}
