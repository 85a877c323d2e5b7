//! The tailer never skips a transaction that commits late, and hands every event out exactly once.
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

/// Exactly `n` events, waiting as a tailer does (other tests' transactions elsewhere in the cluster
/// may hold events back for a moment), then checks that nothing else follows.
async fn collect(tailer: &mut Tailer, n: usize, store: &dyn EventStore) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    while all.len() < n {
        let batch = tokio::time::timeout(Duration::from_secs(30), tailer.next_batch())
            .await
            .expect("tailer stalled")
            .unwrap();
        all.extend(batch);
    }
    while store.has_pending(tailer.checkpoint()).await.unwrap() {
        all.extend(tailer.try_next_batch().await.unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    all.extend(drain(tailer).await);
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_transaction_that_commits_late_is_not_skipped() {
    let Some(db) = TestDb::postgres().await else { return };
    let Raw::Postgres(pool) = &db.raw else { unreachable!() };
    let mut tailer = Tailer::new(db.store.clone(), Checkpoint::START);
    assert!(
        drain(&mut tailer).await.is_empty(),
        "the tailer starts before both transactions"
    );

    // A inserts first (lower position, lower xid) but commits last.
    let mut a = pool.begin().await.unwrap();
    let pos_a: i64 = sqlx::query(INSERT_PG)
        .bind(uuid::Uuid::now_v7())
        .bind("A")
        .fetch_one(&mut *a)
        .await
        .unwrap()
        .get(0);
    let mut b = pool.begin().await.unwrap();
    let pos_b: i64 = sqlx::query(INSERT_PG)
        .bind(uuid::Uuid::now_v7())
        .bind("B")
        .fetch_one(&mut *b)
        .await
        .unwrap()
        .get(0);
    assert!(pos_a < pos_b);
    b.commit().await.unwrap();

    // The hazard: a reader by position alone now sees B only and would move its checkpoint past A.
    let naive: Vec<i64> = sqlx::query_scalar("SELECT global_position FROM events WHERE global_position > 0")
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(naive, vec![pos_b], "B is visible while A is still open");
    // The tailer holds B back while A is open.
    assert!(
        drain(&mut tailer).await.is_empty(),
        "nothing is handed out while an older transaction is open"
    );
    assert!(
        db.store.has_pending(tailer.checkpoint()).await.unwrap(),
        "B is known to be waiting"
    );

    a.commit().await.unwrap();
    let got = collect(&mut tailer, 2, db.store.as_ref()).await;
    let streams: Vec<&str> = got.iter().map(|e| e.stream_id.as_str()).collect();
    assert_eq!(streams, vec!["A", "B"], "both, once each, in (tx_id, position) order");
    assert!(got[0].tx_id < got[1].tx_id);

    // And a tailer started from A's checkpoint gets B exactly once more, nothing else.
    let mut from_a = Tailer::new(db.store.clone(), got[0].checkpoint());
    assert_eq!(
        collect(&mut from_a, 1, db.store.as_ref())
            .await
            .iter()
            .map(|e| e.global_position)
            .collect::<Vec<_>>(),
        vec![pos_b]
    );
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

/// Transaction ids must order as numbers: 99 before 100 (ordering by their text would put "100" first
/// and make a tailer skip and repeat events once the cluster's ids gain a digit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_events_are_ordered_by_transaction_id_as_a_number() {
    let Some(db) = TestDb::postgres().await else { return };
    let Raw::Postgres(pool) = &db.raw else { unreachable!() };
    // Rows written with explicit old transaction ids, inserted out of order.
    for (stream_id, tx) in [("t100", 100), ("t99", 99), ("t1000", 1000), ("t9", 9), ("t10", 10)] {
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
    let mut tailer = Tailer::new(db.store.clone(), Checkpoint::START).with_batch(2);
    let got = collect(&mut tailer, 5, db.store.as_ref()).await;
    let ids: Vec<u64> = got.iter().map(|e| e.tx_id).collect();
    assert_eq!(ids, vec![9, 10, 99, 100, 1000]);
    db.cleanup().await;
}

/// A tailer started at the head sees what is appended later and nothing before.
async fn a_tailer_from_the_head_sees_only_later_events(db: &TestDb) {
    let store = db.store.as_ref();
    assert_eq!(store.head().await.unwrap(), Checkpoint::default(), "empty log");
    let stream = StreamRef::new("test", "head");
    let event = || NewEvent::new("Happened", 1, json!({}), json!({}));
    let before = store.append(&stream, 0, vec![event(), event()]).await.unwrap();
    // Other tests' open transactions elsewhere in the cluster may hold the head back a moment.
    let mut head = store.head().await.unwrap();
    for _ in 0..250 {
        if head == before[1].checkpoint() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        head = store.head().await.unwrap();
    }
    assert_eq!(head, before[1].checkpoint());
    let after = store.append(&stream, 2, vec![event()]).await.unwrap();
    let mut tailer = Tailer::new(db.store.clone(), head);
    let seen = collect(&mut tailer, 1, store).await;
    assert_eq!(
        seen.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        vec![after[0].event_id]
    );
}

mod head {
    use super::*;
    on_both_backends!(a_tailer_from_the_head_sees_only_later_events);
}
