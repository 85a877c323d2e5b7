//! Event store throughput: appends with 1 and 8 writers, batched appends, and tailing, on both
//! backends; on PostgreSQL, the ceilings measured in the same run right after Netia's 8-writer
//! appends: raw `INSERT`s of the same event shape (same columns, indexes and uniqueness, no hash
//! chain, no append lock, no expected-version check) by 8 writers, one row per statement and 100
//! rows per statement, and the ratios.
//!
//! `cargo bench --bench store` (PostgreSQL at NETIA_BENCH_DATABASE_URL, default
//! postgres://postgres@127.0.0.1:5432/postgres; a scratch database is created and dropped).
//! Scale with NETIA_BENCH_EVENTS (default 16000 per phase).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use netia::store::{EventStore, PgStore, SqliteStore};
use netia::tail::Tailer;
use netia_events::{Checkpoint, NewEvent, StreamRef};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;

// The server's allocator (src/main.rs), so that the appends' client side costs what it costs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn event(i: usize) -> NewEvent {
    NewEvent::new(
        "CustomerMessagePosted",
        1,
        json!({"message_id": uuid::Uuid::now_v7(), "customer_id": uuid::Uuid::now_v7(), "body": format!("hello number {i}, is anyone there?"), "sent_at": "2026-11-25T09:00:00Z"}),
        json!({"actor": {"kind": "customer", "customer_id": uuid::Uuid::now_v7()}, "account_id": uuid::Uuid::now_v7()}),
    )
}

/// `writers` tasks append `per_writer` single events (or batches of `batch`) to their own streams.
async fn appends(store: &Arc<dyn EventStore>, label: &str, writers: usize, total: usize, batch: usize) -> f64 {
    let per_writer = total / writers / batch;
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            let label = label.to_owned();
            tokio::spawn(async move {
                let stream = StreamRef::new("bench", format!("{label}-{w}"));
                let mut version = 0;
                for i in 0..per_writer {
                    let events = (0..batch).map(|j| event(i * batch + j)).collect();
                    version = store
                        .append(&stream, version, events)
                        .await
                        .unwrap()
                        .last()
                        .unwrap()
                        .version;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (per_writer * writers * batch) as f64 / start.elapsed().as_secs_f64()
}

async fn tail_all(store: &Arc<dyn EventStore>) -> (usize, f64) {
    let mut tailer = Tailer::new(store.clone(), Checkpoint::START).with_batch(2_000);
    let start = Instant::now();
    let mut n = 0;
    loop {
        let batch = tailer.try_next_batch().await.unwrap();
        if batch.is_empty() {
            break;
        }
        n += batch.len();
    }
    (n, n as f64 / start.elapsed().as_secs_f64())
}

/// The ceiling: `writers` tasks each insert `total / writers` rows of the events' shape into a
/// plain table with the same columns and indexes (no hash chain, append lock or version check),
/// `batch` rows per autocommit `INSERT` (one `VALUES` row, or `UNNEST` of arrays for more), on a
/// pool as large as the store's.
async fn raw_inserts(url: &str, writers: usize, total: usize, batch: usize) -> f64 {
    let pool = PgPoolOptions::new().max_connections(16).connect(url).await.unwrap();
    for ddl in [
        "CREATE TABLE IF NOT EXISTS raw_events (global_position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
         tx_id xid8 NOT NULL DEFAULT pg_current_xact_id(), \
         event_id uuid NOT NULL UNIQUE, stream_type text NOT NULL, stream_id text NOT NULL, version bigint NOT NULL, \
         event_type text NOT NULL, event_version integer NOT NULL, payload json NOT NULL, metadata json NOT NULL, \
         recorded_at timestamptz NOT NULL, hash bytea NOT NULL, UNIQUE (stream_type, stream_id, version))",
        // (events lost their (tx_id, position) index with ADR 0016; so does the ceiling)
        "DROP INDEX IF EXISTS raw_events_commit_order",
    ] {
        sqlx::query(ddl).execute(&pool).await.unwrap();
    }
    let per_writer = total / writers / batch;
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let stream = format!("raw-{batch}-{w}");
                for i in 0..per_writer {
                    if batch == 1 {
                        let e = event(i);
                        sqlx::query(
                            "INSERT INTO raw_events (event_id, stream_type, stream_id, version, event_type, \
                             event_version, payload, metadata, recorded_at, hash) \
                             VALUES ($1, 'bench', $2, $3, $4, $5, $6::json, $7::json, now(), $8)",
                        )
                        .bind(uuid::Uuid::now_v7())
                        .bind(&stream)
                        .bind(i as i64 + 1)
                        .bind(e.event_type)
                        .bind(e.event_version)
                        .bind(e.payload.to_string())
                        .bind(e.metadata.to_string())
                        .bind(vec![0u8; 32])
                        .execute(&pool)
                        .await
                        .unwrap();
                        continue;
                    }
                    let events: Vec<_> = (0..batch).map(|j| event(i * batch + j)).collect();
                    let versions: Vec<i64> = (0..batch).map(|j| (i * batch + j) as i64 + 1).collect();
                    sqlx::query(
                        "INSERT INTO raw_events (event_id, stream_type, stream_id, version, event_type, event_version, \
                         payload, metadata, recorded_at, hash) \
                         SELECT u.id, 'bench', $2, u.v, u.t, u.tv, u.p::json, u.m::json, now(), u.h \
                         FROM UNNEST($1::uuid[], $3::bigint[], $4::text[], $5::int[], $6::text[], $7::text[], $8::bytea[]) \
                              AS u(id, v, t, tv, p, m, h)",
                    )
                    .bind((0..batch).map(|_| uuid::Uuid::now_v7()).collect::<Vec<_>>())
                    .bind(&stream)
                    .bind(versions)
                    .bind(events.iter().map(|e| e.event_type.clone()).collect::<Vec<_>>())
                    .bind(events.iter().map(|e| e.event_version).collect::<Vec<_>>())
                    .bind(events.iter().map(|e| e.payload.to_string()).collect::<Vec<_>>())
                    .bind(events.iter().map(|e| e.metadata.to_string()).collect::<Vec<_>>())
                    .bind(vec![vec![0u8; 32]; batch])
                    .execute(&pool)
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (per_writer * writers * batch) as f64 / start.elapsed().as_secs_f64()
}

async fn run(name: &str, store: Arc<dyn EventStore>, total: usize, url: Option<&str>) {
    let one = appends(&store, "one", 1, total / 4, 1).await;
    println!("{name:<10} append, 1 writer, 1 event/append      {one:>10.0} events/s");
    let eight = appends(&store, "eight", 8, total, 1).await;
    println!("{name:<10} append, 8 writers, 1 event/append     {eight:>10.0} events/s");
    if let Some(url) = url {
        let ceiling = raw_inserts(url, 8, total, 1).await;
        println!("{name:<10} raw INSERT, 8 writers, 1 row each     {ceiling:>10.0} events/s (ceiling, same run)");
        println!(
            "{name:<10} append / raw INSERT, 8 writers        {:>10.0} %",
            eight / ceiling * 100.0
        );
    }
    let batched = appends(&store, "batch", 1, total * 4, 100).await;
    println!("{name:<10} append, 1 writer, 100 events/append   {batched:>10.0} events/s");
    let batched8 = appends(&store, "batch8", 8, total * 4, 100).await;
    println!("{name:<10} append, 8 writers, 100 events/append  {batched8:>10.0} events/s");
    if let Some(url) = url {
        let ceiling = raw_inserts(url, 8, total * 4, 100).await;
        println!("{name:<10} raw INSERT, 8 writers, 100 rows each  {ceiling:>10.0} events/s (ceiling, same run)");
        println!(
            "{name:<10} append / raw INSERT, 100 per append    {:>10.0} %",
            batched8 / ceiling * 100.0
        );
    }
    let (n, tail) = tail_all(&store).await;
    println!("{name:<10} tail {n} events from the start        {tail:>10.0} events/s");
}

#[tokio::main]
async fn main() {
    let total: usize = std::env::var("NETIA_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16_000);

    let admin_url = std::env::var("NETIA_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    match PgPoolOptions::new().max_connections(1).connect(&admin_url).await {
        Ok(admin) => {
            let name = format!("netia_bench_{}", uuid::Uuid::now_v7().simple());
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&admin)
                .await
                .unwrap();
            let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
            {
                let store = PgStore::connect(&url, 16).await.unwrap();
                store.migrate().await.unwrap();
                run("postgres", Arc::new(store), total, Some(&url)).await;
            }
            sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
                .execute(&admin)
                .await
                .unwrap();
        }
        Err(e) => println!("postgres   skipped: {admin_url} not reachable: {e}"),
    }

    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(&format!("sqlite://{}/bench.db", dir.path().display()), 4)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    run("sqlite", Arc::new(store), total, None).await;
}
