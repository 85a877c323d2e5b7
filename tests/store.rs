//! Event store conformance: the same suite against PostgreSQL and SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::{Raw, TestDb};
use netia::store::{EventStore, StoreError, StreamBound};
use netia::tail::Tailer;
use netia_events::conversation::ConversationEvent;
use netia_events::{Checkpoint, DomainEvent, NewEvent, RecordedEvent, StreamRef};
use serde_json::json;

fn event(n: usize) -> NewEvent {
    NewEvent::new(
        "Counted",
        1,
        json!({"n": n, "text": "héllo ✓", "nested": {"b": 1.5, "a": [1, 2]}}),
        json!({"actor": {"kind": "bot"}}),
    )
}

fn stream(id: &str) -> StreamRef {
    StreamRef::new("counter", id)
}

/// Appends with a retry loop, as a commuting writer would.
async fn append_retrying(store: &Arc<dyn EventStore>, s: &StreamRef, e: NewEvent) -> RecordedEvent {
    loop {
        let v = store.stream_version(s).await.unwrap();
        match store.append(s, v, vec![e.clone()]).await {
            Ok(mut recorded) => return recorded.remove(0),
            Err(StoreError::Conflict { .. }) => tokio::task::yield_now().await,
            Err(other) => panic!("append failed: {other}"),
        }
    }
}

/// Tails from the start until `n` events arrived (or 30 s passed).
async fn tail_n(store: &Arc<dyn EventStore>, n: usize) -> Vec<RecordedEvent> {
    let mut tailer = Tailer::new(store.clone(), Checkpoint::START).with_batch(500);
    let mut seen = Vec::new();
    while seen.len() < n {
        let batch = tokio::time::timeout(Duration::from_secs(30), tailer.next_batch())
            .await
            .expect("tailer stalled")
            .unwrap();
        seen.extend(batch);
    }
    assert!(
        tailer.try_next_batch().await.unwrap().is_empty(),
        "tailer delivered more than was written"
    );
    seen
}

async fn appended_events_read_back_identically(db: &TestDb) {
    let s = stream("a");
    let before = Utc::now() - chrono::Duration::seconds(1);
    let written = db
        .store
        .append(&s, 0, vec![event(1), event(2), event(3)])
        .await
        .unwrap();
    assert_eq!(written.iter().map(|e| e.version).collect::<Vec<_>>(), vec![1, 2, 3]);
    let read = db.store.read_stream(&s, StreamBound::All).await.unwrap();
    assert_eq!(read, written);
    assert_eq!(db.store.stream_version(&s).await.unwrap(), 3);
    assert_eq!(
        db.store
            .read_stream(&s, StreamBound::UpToVersion(2))
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(
        db.store
            .read_stream(&s, StreamBound::AsOf(before))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        db.store
            .read_stream(&s, StreamBound::AsOf(Utc::now()))
            .await
            .unwrap()
            .len(),
        3
    );
    assert_eq!(db.store.stream_version(&stream("missing")).await.unwrap(), 0);
    assert_eq!(db.store.streams().await.unwrap(), vec![s]);
}

/// A reader of payloads (a rebuild) gets every event as `read_all` does, metadata left out.
async fn payload_reads_are_full_reads_without_metadata(db: &TestDb) {
    let s = stream("payloads");
    db.store
        .append(&s, 0, vec![event(1), event(2), event(3)])
        .await
        .unwrap();
    let full = db.store.read_all(Checkpoint::START, 10).await.unwrap();
    assert_eq!(full.len(), 3);
    assert!(full.iter().all(|e| e.metadata.is_object()), "{full:?}");
    let payloads = db.store.read_all_payloads(Checkpoint::START, 10).await.unwrap();
    let without: Vec<RecordedEvent> = full
        .into_iter()
        .map(|mut e| {
            e.metadata = serde_json::Value::Null;
            e
        })
        .collect();
    assert_eq!(payloads, without);
    let mut tailer = Tailer::new(db.store.clone(), Checkpoint::START)
        .with_batch(2)
        .without_metadata();
    assert_eq!(tailer.try_next_batch().await.unwrap(), without[..2]);
    assert_eq!(tailer.try_next_batch().await.unwrap(), without[2..]);
}

/// Numbers as clients send them survive storage and still verify: jsonb respells many of them.
async fn numbers_in_any_spelling_read_back_and_verify(db: &TestDb) {
    let s = stream("numbers");
    let texts = [
        r#"{"screen": 1e16, "big": 1.7976931348623157e308, "tiny": 1.0035322563707854e-7}"#,
        r#"{"ratio": 0.37447882052834275, "negzero": -0.0, "whole": 2.0, "max": 18446744073709551615}"#,
        r#"{"min": -9223372036854775808, "nested": [1e300, -1.5e-300, {"x": 3.0e0}], "s": "\u00e9\ud83d\ude00"}"#,
    ];
    let events: Vec<NewEvent> = texts
        .iter()
        .map(|t| NewEvent::new("Measured", 1, serde_json::from_str(t).unwrap(), json!({})))
        .collect();
    db.store.append(&s, 0, events).await.unwrap();
    let read = db.store.read_stream(&s, StreamBound::All).await.unwrap();
    assert_eq!(read.len(), 3);
    assert_eq!(read[1].payload["ratio"].as_f64(), Some(0.37447882052834275));
    assert_eq!(read[0].payload["big"].as_f64(), Some(f64::MAX));
    assert_eq!(db.store.verify_stream(&s).await.unwrap(), None);
    assert_eq!(tail_n(&db.store, 3).await.len(), 3, "tailers read them too");
}

async fn a_stale_expected_version_is_a_conflict(db: &TestDb) {
    let s = stream("c");
    db.store.append(&s, 0, vec![event(1)]).await.unwrap();
    for expected in [0, 2, 7] {
        match db.store.append(&s, expected, vec![event(2)]).await {
            Err(StoreError::Conflict {
                expected: e, actual: 1, ..
            }) => assert_eq!(e, expected),
            other => panic!("expected a conflict for {expected}, got {other:?}"),
        }
    }
    assert_eq!(
        db.store.stream_version(&s).await.unwrap(),
        1,
        "no gap, nothing half-written"
    );
}

async fn a_reused_event_id_is_refused_not_a_conflict(db: &TestDb) {
    let first = event(1);
    db.store.append(&stream("one"), 0, vec![first.clone()]).await.unwrap();
    let again = db.store.append(&stream("two"), 0, vec![first]).await;
    assert!(matches!(again, Err(StoreError::Database(_))), "{again:?}");
    assert_eq!(db.store.stream_version(&stream("two")).await.unwrap(), 0);
}

async fn invalid_appends_write_nothing(db: &TestDb) {
    let s = stream("bad");
    let nul = NewEvent::new("Counted", 1, json!({"text": "a\u{0}b"}), json!({}));
    let not_object = NewEvent::new("Counted", 1, json!([1]), json!({}));
    let bad_type = NewEvent::new("", 1, json!({}), json!({}));
    assert!(matches!(
        db.store.append(&s, 0, vec![]).await,
        Err(StoreError::Invalid(_))
    ));
    for e in [nul, not_object, bad_type] {
        let result = db.store.append(&s, 0, vec![event(1), e]).await;
        assert!(matches!(result, Err(StoreError::Invalid(_))), "{result:?}");
    }
    let long_id = StreamRef::new("counter", "x".repeat(201));
    assert!(matches!(
        db.store.append(&long_id, 0, vec![event(1)]).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(db.store.streams().await.unwrap().is_empty(), "nothing was written");
}

/// Appends committed together (group commit on PostgreSQL) succeed or fail one by one.
async fn a_conflicting_append_fails_alone(db: &TestDb) {
    let taken = stream("taken");
    db.store.append(&taken, 0, vec![event(0)]).await.unwrap();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let store = db.store.clone();
            let taken = taken.clone();
            tokio::spawn(async move {
                if i % 2 == 0 {
                    store
                        .append(&stream(&format!("fresh{i}")), 0, vec![event(i)])
                        .await
                        .is_ok()
                } else {
                    store.append(&taken, 0, vec![event(i)]).await.is_ok()
                }
            })
        })
        .collect();
    let mut ok = 0;
    for (i, t) in tasks.into_iter().enumerate() {
        let stored = t.await.unwrap();
        assert_eq!(stored, i % 2 == 0, "append {i}");
        ok += usize::from(stored);
    }
    assert_eq!(ok, 50);
    assert_eq!(db.store.stream_version(&taken).await.unwrap(), 1);
    assert_eq!(db.store.streams().await.unwrap().len(), 51);
}

async fn sixteen_writers_on_one_stream_lose_and_duplicate_nothing(db: &TestDb) {
    let s = stream("shared");
    let tasks: Vec<_> = (0..16)
        .map(|w| {
            let store = db.store.clone();
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..500 {
                    let e = NewEvent::new("Counted", 1, json!({"writer": w, "i": i}), json!({}));
                    append_retrying(&store, &s, e).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let events = db.store.read_stream(&s, StreamBound::All).await.unwrap();
    assert_eq!(events.len(), 8_000);
    assert!(
        events.iter().enumerate().all(|(i, e)| e.version == i as i64 + 1),
        "versions contiguous"
    );
    let pairs: HashSet<(i64, i64)> = events
        .iter()
        .map(|e| (e.payload["writer"].as_i64().unwrap(), e.payload["i"].as_i64().unwrap()))
        .collect();
    assert_eq!(pairs.len(), 8_000, "every write present exactly once");
    assert_eq!(db.store.verify_stream(&s).await.unwrap(), None);
    let tailed = tail_n(&db.store, 8_000).await;
    assert_eq!(tailed.iter().map(|e| e.event_id).collect::<HashSet<_>>().len(), 8_000);
}

async fn sixteen_writers_on_distinct_streams_lose_and_duplicate_nothing(db: &TestDb) {
    let tailer_store = db.store.clone();
    let tail = tokio::spawn(async move { tail_n(&tailer_store, 8_000).await });
    let tasks: Vec<_> = (0..16)
        .map(|w| {
            let store = db.store.clone();
            tokio::spawn(async move {
                let s = stream(&format!("w{w}"));
                for i in 0..500 {
                    store.append(&s, i, vec![event(i as usize)]).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let tailed = tail.await.unwrap();
    assert_eq!(tailed.len(), 8_000);
    let positions: HashSet<i64> = tailed.iter().map(|e| e.global_position).collect();
    assert_eq!(positions.len(), 8_000, "no duplicates");
    let mut per_stream: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for e in &tailed {
        per_stream.entry(e.stream_id.clone()).or_default().push(e.version);
    }
    assert_eq!(per_stream.len(), 16);
    for versions in per_stream.values() {
        assert_eq!(
            versions,
            &(1..=500).collect::<Vec<i64>>(),
            "each stream in order, complete"
        );
    }
    let checkpoints: Vec<Checkpoint> = tailed.iter().map(RecordedEvent::checkpoint).collect();
    assert!(
        checkpoints.windows(2).all(|w| w[0] < w[1]),
        "delivered in (tx_id, position) order"
    );
}

/// Changes the log around its append-only guard, as an owner with DDL rights could.
async fn tamper(db: &TestDb, postgres_sql: &str, sqlite_sql: &str) {
    match &db.raw {
        Raw::Postgres(pool) => {
            let mut tx = pool.begin().await.unwrap();
            for sql in [
                "ALTER TABLE events DISABLE TRIGGER events_no_update_delete",
                postgres_sql,
                "ALTER TABLE events ENABLE TRIGGER events_no_update_delete",
            ] {
                sqlx::query(sql).execute(&mut *tx).await.unwrap();
            }
            tx.commit().await.unwrap();
        }
        Raw::Sqlite(pool) => {
            for sql in [
                "DROP TRIGGER events_no_update",
                "DROP TRIGGER events_no_delete",
                sqlite_sql,
            ] {
                sqlx::query(sql).execute(pool).await.unwrap();
            }
        }
    }
}

async fn the_hash_chain_verifies_and_detects_tampering(db: &TestDb) {
    let s = stream("chain");
    db.store.append(&s, 0, vec![event(1), event(2)]).await.unwrap();
    db.store.append(&s, 2, vec![event(3)]).await.unwrap();
    assert_eq!(db.store.verify_stream(&s).await.unwrap(), None);

    // The log refuses edits outright...
    let refused = match &db.raw {
        Raw::Postgres(pool) => {
            sqlx::query("UPDATE events SET payload = '{\"n\": 9}' WHERE version = 2")
                .execute(pool)
                .await
        }
        Raw::Sqlite(pool) => sqlx::query("UPDATE events SET payload = '{\"n\": 9}' WHERE version = 2")
            .execute(pool)
            .await
            .map(|_| Default::default()),
    };
    assert!(refused.is_err(), "an UPDATE of the log must be refused");

    // ...and an edit made around the guard (an owner disabling it) is detected at its version.
    tamper(
        db,
        "UPDATE events SET payload = jsonb_set(payload::jsonb, '{n}', '9')::json WHERE stream_id = 'chain' AND version = 2",
        "UPDATE events SET payload = json_set(payload, '$.n', 9) WHERE stream_id = 'chain' AND version = 2",
    )
    .await;
    let broken = db.store.verify_stream(&s).await.unwrap().expect("the edit is detected");
    assert_eq!(broken.version, 2);
}

async fn reordered_events_break_the_chain(db: &TestDb) {
    let s = stream("order");
    db.store
        .append(&s, 0, vec![event(1), event(2), event(3)])
        .await
        .unwrap();
    let swap = "UPDATE events SET payload = o.payload FROM events o \
                WHERE events.stream_id = 'order' AND o.stream_id = 'order' \
                  AND events.version IN (1, 2) AND o.version = 3 - events.version";
    tamper(db, swap, swap).await;
    let read = db.store.read_stream(&s, StreamBound::All).await.unwrap();
    assert_eq!(
        read[0].payload["n"], 2,
        "the first two events now read in swapped order"
    );
    assert_eq!(db.store.verify_stream(&s).await.unwrap().map(|b| b.version), Some(1));
}

async fn a_deleted_event_breaks_the_chain(db: &TestDb) {
    let s = stream("gap");
    db.store
        .append(&s, 0, vec![event(1), event(2), event(3)])
        .await
        .unwrap();
    let delete = "DELETE FROM events WHERE stream_id = 'gap' AND version = 2";
    tamper(db, delete, delete).await;
    assert_eq!(db.store.verify_stream(&s).await.unwrap().map(|b| b.version), Some(2));
}

async fn an_unknown_event_type_is_reported_with_its_position(db: &TestDb) {
    let s = StreamRef::new("conversation", "c1");
    let written = db
        .store
        .append(
            &s,
            0,
            vec![NewEvent::new("ConversationTeleported", 1, json!({}), json!({}))],
        )
        .await
        .unwrap();
    let read = tail_n(&db.store, 1).await;
    let err = ConversationEvent::decode(&read[0]).unwrap_err();
    assert_eq!(err.position, written[0].global_position);
    assert!(
        err.to_string()
            .contains(&format!("position {}", written[0].global_position)),
        "{err}"
    );
}

async fn a_malformed_payload_is_reported_with_its_position(db: &TestDb) {
    let s = StreamRef::new("conversation", "m1");
    let written = db
        .store
        .append(
            &s,
            0,
            vec![NewEvent::new("ConversationTagged", 1, json!({"tag": 5}), json!({}))],
        )
        .await
        .unwrap();
    let read = db.store.read_stream(&s, StreamBound::All).await.unwrap();
    let err = ConversationEvent::decode(&read[0]).unwrap_err();
    assert_eq!(err.position, written[0].global_position);
    assert!(matches!(err.source, netia_events::DecodeError::Malformed(_)), "{err}");
}

async fn a_tailer_wakes_for_new_events(db: &TestDb) {
    // A long poll interval: only the wake-up (NOTIFY on PostgreSQL) can deliver promptly.
    let mut tailer = Tailer::new(db.store.clone(), Checkpoint::START).with_poll(Duration::from_secs(3600));
    assert!(tailer.try_next_batch().await.unwrap().is_empty());
    let store = db.store.clone();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        store.append(&stream("wake"), 0, vec![event(1)]).await.unwrap();
    });
    let batch = tokio::time::timeout(Duration::from_secs(10), tailer.next_batch())
        .await
        .expect("woken")
        .unwrap();
    assert_eq!(batch.len(), 1);
    writer.await.unwrap();
}

on_both_backends!(
    appended_events_read_back_identically,
    payload_reads_are_full_reads_without_metadata,
    numbers_in_any_spelling_read_back_and_verify,
    a_stale_expected_version_is_a_conflict,
    invalid_appends_write_nothing,
    a_reused_event_id_is_refused_not_a_conflict,
    a_conflicting_append_fails_alone,
    sixteen_writers_on_one_stream_lose_and_duplicate_nothing,
    sixteen_writers_on_distinct_streams_lose_and_duplicate_nothing,
    the_hash_chain_verifies_and_detects_tampering,
    a_deleted_event_breaks_the_chain,
    reordered_events_break_the_chain,
    an_unknown_event_type_is_reported_with_its_position,
    a_malformed_payload_is_reported_with_its_position,
    a_tailer_wakes_for_new_events,
);

/// SQLite keeps JSON as text: a row whose text is not JSON is an error naming its position, not a panic.
#[tokio::test]
async fn sqlite_a_row_that_is_not_json_is_reported_with_its_position() {
    let db = TestDb::sqlite().await.unwrap();
    db.store.append(&stream("ok"), 0, vec![event(1)]).await.unwrap();
    let Raw::Sqlite(pool) = &db.raw else { unreachable!() };
    sqlx::query(
        "INSERT INTO events (global_position, tx_id, event_id, stream_type, stream_id, version, event_type, \
         event_version, payload, metadata, recorded_at, hash) \
         VALUES (2, 2, '019ab9b5-3a1e-7f43-9f7c-1c1b5e5b1a11', 'counter', 'broken', 1, 'Counted', 1, '{not json', '{}', '2026-01-01T00:00:00.000000Z', zeroblob(32))",
    )
    .execute(pool)
    .await
    .unwrap();
    // The first event may come from the store's memory of its own append; the row written behind
    // its back comes from the database, and must be reported there.
    let mut tailer = Tailer::new(db.store.clone(), Checkpoint::START);
    let mut read = Vec::new();
    let error = loop {
        match tailer.try_next_batch().await {
            Ok(batch) if !batch.is_empty() && read.len() < 2 => read.extend(batch),
            other => break other,
        }
    };
    match error {
        Err(StoreError::Corrupt { position, reason }) => {
            assert_eq!(position, 2);
            assert!(reason.contains("payload"), "{reason}");
        }
        other => panic!("expected a corrupt-event error, got {other:?}"),
    }
    assert!(
        read.iter().all(|e| e.global_position == 1),
        "only the sound event is returned"
    );
    db.cleanup().await;
}

/// With PostgreSQL unreachable (a proxy in front of it, cut), twenty appends fail within their
/// deadline as unavailable — nothing stored, safe to retry — instead of waiting minutes; the ones
/// whose outcome the cut left open are looked up first. Once it is back, appends succeed again and
/// nothing was stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_appends_fail_fast_while_the_database_is_unreachable_and_resume_after() {
    let Some(db) = TestDb::postgres().await else { return };
    let proxy = common::proxy::TcpProxy::start("127.0.0.1:5432").await;
    let url = db.url.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    assert_ne!(url, db.url, "the test database is on 127.0.0.1:5432");
    let store = netia::store::connect(&url, 5).await.unwrap();
    // Half the streams were written before, so their heads are cached and the appends go straight
    // to the writer, whose connection the cut breaks mid-statement or before.
    for i in 0..10 {
        store
            .append(&stream(&format!("cut-{i}")), 0, vec![event(0)])
            .await
            .unwrap();
    }
    proxy.cut();
    let started = std::time::Instant::now();
    let appends = (0..20).map(|i| {
        let store = store.clone();
        let expected = if i < 10 { 1 } else { 0 };
        async move {
            store
                .append(&stream(&format!("cut-{i}")), expected, vec![event(i)])
                .await
        }
    });
    let results = futures_util::future::join_all(appends).await;
    let waited = started.elapsed();
    for result in &results {
        assert!(
            matches!(result, Err(StoreError::Unavailable(_) | StoreError::OutcomeUnknown(_))),
            "{result:?}"
        );
    }
    let unavailable = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::Unavailable(_))))
        .count();
    eprintln!("20 appends with PostgreSQL cut off: {unavailable} unavailable, the rest unknown, after {waited:?}");
    assert!(waited < Duration::from_secs(20), "callers waited {waited:?}");
    proxy.restore();
    let mut resumed = None;
    for _ in 0..40 {
        match store.append(&stream("after"), 0, vec![event(1)]).await {
            Ok(recorded) => {
                resumed = Some(recorded);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    assert!(resumed.is_some(), "appends resume once the database is back");
    // What was refused as unavailable was not stored.
    for (i, result) in results.iter().enumerate() {
        if matches!(result, Err(StoreError::Unavailable(_))) {
            let before = if i < 10 { 1 } else { 0 };
            assert_eq!(
                store.stream_version(&stream(&format!("cut-{i}"))).await.unwrap(),
                before,
                "{i}"
            );
        }
    }
    db.cleanup().await;
}

/// The append statement answers per append: with the append lock held elsewhere, 53 appends queue
/// up — 31 to fresh streams and 11 pairs racing for the first version of a stream each — and once
/// the lock goes, the statement the writer had sent and the one with everything queued behind it
/// commit every append that holds (two transaction ids at most) and refuse exactly one of each pair
/// as a conflict, instead of failing a statement and retrying each of its appends alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_conflicts_inside_a_batch_are_answered_per_append_in_one_statement() {
    let Some(db) = TestDb::postgres().await else { return };
    let Raw::Postgres(pool) = &db.raw else { unreachable!() };
    let mut streams: Vec<String> = (0..31).map(|i| format!("fresh-{i}")).collect();
    for i in 0..11 {
        streams.push(format!("raced-{i}"));
        streams.push(format!("raced-{i}"));
    }
    let appends = streams.iter().map(|id| (stream(id), 0)).collect();
    let outcomes = queued_behind_the_lock(pool, &db.store, appends, 1).await;
    let mut transactions: BTreeMap<u64, usize> = BTreeMap::new();
    let mut conflicts = 0;
    for outcome in outcomes {
        match outcome {
            Ok(recorded) => *transactions.entry(recorded[0].tx_id).or_default() += 1,
            Err(StoreError::Conflict { actual, .. }) => {
                assert_eq!(actual, 1, "the pair's winner is the stream's head");
                conflicts += 1;
            }
            Err(other) => panic!("append failed: {other}"),
        }
    }
    assert_eq!(conflicts, 11, "one of each pair");
    assert_eq!(transactions.values().sum::<usize>(), 42);
    eprintln!("appends per transaction: {transactions:?}");
    // The writer may have taken the first few appends before it met the lock; everything queued
    // behind that statement goes in the next one, conflicts or not (retried alone, the appends
    // would have taken a transaction each).
    assert!(transactions.len() <= 2, "appends per transaction: {transactions:?}");
    for i in 0..11 {
        assert_eq!(
            db.store.stream_version(&stream(&format!("raced-{i}"))).await.unwrap(),
            1
        );
    }
    db.cleanup().await;
}

/// An append alone is written by `netia_append_one`, which checks the expected version under the
/// append lock as the batch statement does: once another node has appended to the stream, this
/// node's append on its cached (stale) head is refused as a conflict with nothing written, and the
/// events of an append alone are placed where the database put them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_append_alone_on_a_stale_head_is_a_conflict_and_writes_nothing() {
    let Some(db) = TestDb::postgres().await else { return };
    let other_node = netia::store::PgStore::connect(&db.url, 2).await.unwrap();
    let s = stream("two-nodes");
    // This node caches the stream's head at version 2, then the other node appends version 3.
    db.store.append(&s, 0, vec![event(1), event(2)]).await.unwrap();
    other_node.append(&s, 2, vec![event(3)]).await.unwrap();
    match db.store.append(&s, 2, vec![event(4), event(5)]).await {
        Err(StoreError::Conflict {
            expected: 2, actual: 3, ..
        }) => {}
        other => panic!("expected a conflict at version 3, got {other:?}"),
    }
    assert_eq!(db.store.stream_version(&s).await.unwrap(), 3, "nothing was written");
    let placed = db.store.append(&s, 3, vec![event(4), event(5)]).await.unwrap();
    let stored = db.store.read_stream(&s, StreamBound::All).await.unwrap();
    assert_eq!(
        stored.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    let at = |events: &[RecordedEvent]| {
        events
            .iter()
            .map(|e| (e.event_id, e.version, e.global_position, e.tx_id))
            .collect::<Vec<_>>()
    };
    assert_eq!(at(&placed), at(&stored[3..]), "placed where the database put them");
    assert!(placed[0].global_position < placed[1].global_position);
    assert_eq!(db.store.verify_stream(&s).await.unwrap(), None);
    db.cleanup().await;
}

/// `netia_append_one` itself refuses an append whose first version does not follow the stream's
/// head — here one that skips a version, which the unique index alone would let in — with a single
/// row without a position that carries the log's head, nothing inserted and no NOTIFY; the same
/// call at the next version inserts and notifies (so the silence above is not a deaf listener).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_append_one_refuses_a_version_gap_with_the_log_head_and_no_notify() {
    let Some(db) = TestDb::postgres().await else { return };
    let Raw::Postgres(pool) = &db.raw else { unreachable!() };
    let head = db.store.append(&stream("gap"), 0, vec![event(1)]).await.unwrap()[0].global_position;
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await.unwrap();
    listener.listen("netia_events").await.unwrap();
    let call = |version: i64| {
        sqlx::query_as::<_, (Option<i64>, Option<String>, Option<i64>, i64)>(
            "SELECT placed_position, placed_tx, placed_version, head_position \
             FROM netia_append_one(ARRAY[$1::uuid], 'counter', 'gap', ARRAY[$2::bigint], '{Counted}', '{1}', \
                                   '{\"{}\"}', '{\"{}\"}', ARRAY[now()], ARRAY[sha256('x')], 'probe')",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(version)
        .fetch_all(pool)
    };
    assert_eq!(call(3).await.unwrap(), vec![(None, None, None, head)]);
    assert_eq!(
        db.store.stream_version(&stream("gap")).await.unwrap(),
        1,
        "nothing inserted"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), listener.recv())
            .await
            .is_err(),
        "a refused append notifies nobody"
    );
    let placed = call(2).await.unwrap();
    assert_eq!(placed.len(), 1);
    assert!(placed[0].0.is_some_and(|position| position > head), "{placed:?}");
    assert_eq!((placed[0].2, placed[0].3), (Some(2), head));
    let notified = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("an insert notifies")
        .unwrap();
    assert_eq!(notified.payload(), "probe");
    // The listener holds one of the pool's connections, which closing the pool waits for.
    drop(listener);
    db.cleanup().await;
}

/// The log keeps each document as the JSON text it was appended with (ADR 0025): PostgreSQL's
/// `json` stores what the store sent, where `jsonb` printed its own spelling (`{"n": 1, …}`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_log_keeps_the_json_text_it_was_appended_with() {
    let Some(db) = TestDb::postgres().await else { return };
    let Raw::Postgres(pool) = &db.raw else { unreachable!() };
    let written = db.store.append(&stream("verbatim"), 0, vec![event(7)]).await.unwrap();
    let (payload, metadata): (String, String) =
        sqlx::query_as("SELECT payload::text, metadata::text FROM events WHERE stream_id = 'verbatim'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(payload, serde_json::to_string(&written[0].payload).unwrap());
    assert_eq!(metadata, serde_json::to_string(&written[0].metadata).unwrap());
    assert_eq!(payload, r#"{"n":7,"nested":{"a":[1,2],"b":1.5},"text":"héllo ✓"}"#);
    db.cleanup().await;
}

/// A log written before migration 20261205000002 (documents as `jsonb`) comes through it whole:
/// every event reads back as it was written, the chains verify, and appends go on after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_log_written_as_jsonb_reads_back_and_verifies_after_the_json_migration() {
    let Some(db) = TestDb::postgres().await else { return };
    let Raw::Postgres(pool) = &db.raw else { unreachable!() };
    // A second database, migrated up to the migration before: the log as earlier releases left it.
    let old_url = format!("{}_old", db.url);
    let old_name = old_url.rsplit_once('/').unwrap().1.to_owned();
    sqlx::query(&format!("CREATE DATABASE {old_name}"))
        .execute(pool)
        .await
        .unwrap();
    let old_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&old_url)
        .await
        .unwrap();
    let mut before = sqlx::migrate!("./migrations/postgres");
    before.migrations = before
        .migrations
        .iter()
        .filter(|m| m.version < 20261205000002)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before.run(&old_pool).await.unwrap();
    let column =
        "SELECT data_type FROM information_schema.columns WHERE table_name = 'events' AND column_name = 'payload'";
    let kind: String = sqlx::query_scalar(column).fetch_one(&old_pool).await.unwrap();
    assert_eq!(kind, "jsonb");
    let store = netia::store::PgStore::from_pool(old_pool.clone());
    let s = stream("upgraded");
    let mut written = store.append(&s, 0, vec![event(1)]).await.unwrap();
    written.extend(store.append(&s, 1, vec![event(2), event(3)]).await.unwrap());
    drop(store);

    let store = netia::store::PgStore::from_pool(old_pool.clone());
    store.migrate().await.unwrap();
    let kind: String = sqlx::query_scalar(column).fetch_one(&old_pool).await.unwrap();
    assert_eq!(kind, "json");
    assert_eq!(store.read_stream(&s, StreamBound::All).await.unwrap(), written);
    written.extend(store.append(&s, 3, vec![event(4)]).await.unwrap());
    written.extend(store.append(&s, 4, vec![event(5), event(6)]).await.unwrap());
    assert_eq!(store.read_stream(&s, StreamBound::All).await.unwrap(), written);
    assert_eq!(store.verify_stream(&s).await.unwrap(), None);
    drop(store);
    old_pool.close().await;
    sqlx::query(&format!("DROP DATABASE {old_name} WITH (FORCE)"))
        .execute(pool)
        .await
        .unwrap();
    db.cleanup().await;
}

/// Events in an append big enough to go by COPY alone (the writer copies statements of 256 rows or
/// more, ADR 0026).
const COPIED: usize = 300;

/// A store on the test database whose sessions count calls of PL/pgSQL functions
/// (`track_functions = pl`).
async fn counting_store(db: &TestDb) -> Arc<dyn EventStore> {
    let url = format!("{}?options[track_functions]=pl", db.url);
    Arc::new(netia::store::PgStore::connect(&url, 8).await.unwrap())
}

/// How often the counting store's sessions called `netia_append_copied` and the append statements
/// (`netia_append_each`, `netia_append_one`). A session publishes its counts when it has been idle
/// for a while (up to 10 s) or when it ends, so every store session on the test database is ended
/// first (the stores are not used afterwards).
async fn statement_calls(pool: &sqlx::PgPool) -> (i64, i64) {
    let sessions: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'netia'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid")
        .bind(&sessions)
        .execute(pool)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY ($1)")
            .bind(&sessions)
            .fetch_one(pool)
            .await
            .unwrap();
        assert!(tokio::time::Instant::now() < deadline, "{left} sessions did not end");
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sqlx::query_as(
        "SELECT coalesce(sum(calls) FILTER (WHERE funcname = 'netia_append_copied'), 0)::bigint, \
                coalesce(sum(calls) FILTER (WHERE funcname IN ('netia_append_each', 'netia_append_one')), 0)::bigint \
         FROM pg_stat_user_functions",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Appends `events` events to each `(stream, expected version)` of `appends`, all at once, while
/// the append lock is held elsewhere, so that they queue into the writer's next statements;
/// returns each append's outcome, in the same order, once the lock goes.
async fn queued_behind_the_lock(
    pool: &sqlx::PgPool,
    store: &Arc<dyn EventStore>,
    appends: Vec<(StreamRef, i64)>,
    events: usize,
) -> Vec<Result<Vec<RecordedEvent>, StoreError>> {
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(1852142689, 1)")
        .execute(&mut *holder)
        .await
        .unwrap();
    let tasks: Vec<_> = appends
        .into_iter()
        .enumerate()
        .map(|(i, (s, expected))| {
            let store = store.clone();
            tokio::spawn(async move {
                let batch = (0..events).map(|e| event(i * 1_000 + e)).collect();
                store.append(&s, expected, batch).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await; // every append queued behind the lock
    holder.commit().await.unwrap();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    outcomes
}

/// A statement of many rows goes by COPY (ADR 0026): eight appends of 100 events queued behind
/// the held append lock are written in at most two statements, at least one of which holds three
/// appends or more and is copied (no append alone is big enough to be); each caller gets its
/// events where the database put them: consecutive positions in the order sent, one transaction
/// each; the log reads them back identically, a tailer reads them in order and every stream's
/// chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_large_batch_is_copied_and_each_append_placed_where_the_database_put_it() {
    let Some(db) = TestDb::postgres().await else { return };
    let Raw::Postgres(pool) = &db.raw else { unreachable!() };
    let store = counting_store(&db).await;
    let streams: Vec<StreamRef> = (0..8).map(|i| stream(&format!("copied-{i}"))).collect();
    let outcomes = queued_behind_the_lock(pool, &store, streams.iter().map(|s| (s.clone(), 0)).collect(), 100).await;
    let placed: Vec<Vec<RecordedEvent>> = outcomes.into_iter().map(|o| o.expect("appended")).collect();
    for (s, events) in streams.iter().zip(&placed) {
        assert_eq!(
            events.iter().map(|e| e.version).collect::<Vec<_>>(),
            (1..=100).collect::<Vec<i64>>()
        );
        for pair in events.windows(2) {
            assert_eq!(
                pair[1].global_position,
                pair[0].global_position + 1,
                "consecutive, in order"
            );
            assert_eq!(pair[1].tx_id, pair[0].tx_id);
        }
        let stored = db.store.read_stream(s, StreamBound::All).await.unwrap();
        assert_eq!(&stored, events, "placed where the database put them");
        assert_eq!(db.store.verify_stream(s).await.unwrap(), None);
    }
    let mut all: Vec<RecordedEvent> = placed.into_iter().flatten().collect();
    all.sort_by_key(|e| e.global_position);
    assert_eq!(tail_n(&db.store, all.len()).await, all, "tailed in log order");
    let (copied, statements) = statement_calls(pool).await;
    assert!(copied >= 1, "netia_append_copied was called {copied} times");
    assert!(statements <= 1, "{statements} append statements");
    db.cleanup().await;
}

/// A copied batch holding a stale append fails on the unique (stream, version) index as a whole;
/// the writer rolls it back and sends the batch through the append statement, which refuses the
/// stale append alone: its caller gets a conflict with nothing of it written, the others commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_stale_append_in_a_copied_batch_is_a_conflict_alone() {
    let Some(db) = TestDb::postgres().await else { return };
    let Raw::Postgres(pool) = &db.raw else { unreachable!() };
    let store = counting_store(&db).await;
    let raced = stream("raced");
    // This node caches the stream's head at 300; another node appends 300 more.
    let mine = store.append(&raced, 0, (0..300).map(event).collect()).await.unwrap();
    db.store
        .append(&raced, 300, (300..600).map(event).collect())
        .await
        .unwrap();
    let mut appends: Vec<(StreamRef, i64)> = (0..6).map(|i| (stream(&format!("fresh-{i}")), 0)).collect();
    appends.insert(3, (raced.clone(), 300));
    let outcomes = queued_behind_the_lock(pool, &store, appends, COPIED).await;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match (i, outcome) {
            (3, Err(StoreError::Conflict { actual: 600, .. })) => {}
            (3, other) => panic!("the stale append: {other:?}"),
            (_, Ok(events)) => assert_eq!(events.len(), COPIED),
            (_, Err(e)) => panic!("append {i}: {e}"),
        }
    }
    let stored = db.store.read_stream(&raced, StreamBound::All).await.unwrap();
    assert_eq!(stored.len(), 600, "nothing of the stale append was written");
    assert_eq!(stored[..300], mine[..]);
    assert_eq!(db.store.verify_stream(&raced).await.unwrap(), None);
    // The first append alone was copied; the stale append's statement (the batch, or the stale
    // append alone if the writer took it first) was copied, then sent as an append statement.
    let (copied, statements) = statement_calls(pool).await;
    assert!(
        copied >= 2 && statements >= 1,
        "copied {copied}, append statements {statements}"
    );
    db.cleanup().await;
}

/// `netia_append_copied` itself: it refuses to run outside the append lock; an append whose first
/// version does not follow its stream's head as the rows before it left it — a skipped version,
/// or a version copied before the one it follows — comes back as its index with no position, and
/// nothing is notified even if the transaction commits; appends that hold get the first row's
/// position, the transaction and the log's head before them, and a NOTIFY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_append_copied_refuses_a_skipped_or_misordered_version() {
    let Some(db) = TestDb::postgres().await else { return };
    let Raw::Postgres(pool) = &db.raw else { unreachable!() };
    db.store.append(&stream("skipped"), 0, vec![event(1)]).await.unwrap();
    db.store.append(&stream("misordered"), 0, vec![event(1)]).await.unwrap();
    let head = db.store.append(&stream("held"), 0, vec![event(1)]).await.unwrap()[0].global_position;
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await.unwrap();
    listener.listen("netia_events").await.unwrap();
    // Rows of one stream written in a transaction (by INSERT here: the function cares only that
    // they hold the last positions under the lock), then the check of appends starting at `firsts`.
    let check = |id: &'static str, versions: Vec<i64>, firsts: Vec<i64>, offsets: Vec<i64>| async move {
        let mut tx = pool.begin().await.unwrap();
        for version in &versions {
            sqlx::query(
                "INSERT INTO events (event_id, stream_type, stream_id, version, event_type, event_version, \
                                     payload, metadata, recorded_at, hash) \
                 VALUES ($1, 'counter', $2, $3, 'Counted', 1, '{}', '{}', now(), sha256('x'))",
            )
            .bind(uuid::Uuid::now_v7())
            .bind(id)
            .bind(version)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        let n = firsts.len();
        let rows = sqlx::query_as::<_, (Option<i64>, Option<String>, i64, Option<i32>)>(
            "SELECT first_position, placed_tx, head_position, refused_append \
             FROM netia_append_copied($1, $2, $3, $4, $5, 'probe')",
        )
        .bind(vec!["counter"; n])
        .bind(vec![id; n])
        .bind(firsts)
        .bind(offsets)
        .bind(i64::try_from(versions.len()).unwrap())
        .fetch_all(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        rows
    };
    let outside = sqlx::query("SELECT * FROM netia_append_copied('{counter}', '{held}', '{2}', '{0}', 1, 'probe')")
        .fetch_all(pool)
        .await
        .unwrap_err();
    assert!(outside.to_string().contains("under the append lock"), "{outside}");
    // Version 3 on a stream whose head is 1.
    let rows = check("skipped", vec![3], vec![3], vec![0]).await;
    assert_eq!(rows, vec![(None, None, head, Some(0))]);
    // Version 3 copied before version 2, as two appends: the first one does not follow the head.
    let rows = check("misordered", vec![3, 2], vec![3, 2], vec![0, 1]).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].0, rows[0].3), (None, Some(0)));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), listener.recv())
            .await
            .is_err(),
        "a refused copy notifies nobody, committed or not"
    );
    // Versions 2 and 3, two appends in order: both hold.
    let rows = check("held", vec![2, 3], vec![2, 3], vec![0, 1]).await;
    assert_eq!(rows.len(), 1);
    let (first, placed_tx, at, refused) = rows[0].clone();
    assert_eq!(refused, None);
    let stored = db.store.read_stream(&stream("held"), StreamBound::All).await.unwrap();
    assert_eq!(at, stored[1].global_position - 1, "the log's head before them");
    assert_eq!(first, Some(stored[1].global_position));
    assert_eq!(stored[2].global_position, stored[1].global_position + 1);
    assert_eq!(placed_tx, Some(stored[1].tx_id.to_string()));
    let notified = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("a copy that holds notifies")
        .unwrap();
    assert_eq!(notified.payload(), "probe");
    // The listener holds one of the pool's connections, which closing the pool waits for.
    drop(listener);
    db.cleanup().await;
}
