//! Read-model throughput: rebuild speed per projection, of all of them in one pass (what
//! `netia projections rebuild` does), live lag of the inbox under steady load, and that lag while a
//! new read model builds from the whole log in the background (part `added`).
//!
//! `cargo bench --bench projections` (PostgreSQL at NETIA_BENCH_DATABASE_URL, default
//! postgres://postgres@127.0.0.1:5432/postgres; a scratch database is created and dropped).
//! NETIA_BENCH_EVENTS sets the history size (default 100000, over one conversation per 100 events);
//! NETIA_BENCH_ONLY (comma-separated: projection names, `all`, `postgres`, `sqlite`, `lag`, `added`) runs a subset.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use netia::projector::group::ProjectorGroup;
use netia::projector::{Projector, projections, read_model_pool};
use netia::rebuild::{RebuildOptions, RebuildOutcome, rebuild, rebuild_all};
use netia::store::{EventStore, PgStore, SqliteStore};
use netia_events::conversation::{ConversationCreated, ConversationEvent, CustomerMessagePosted, Source};
use netia_events::{AccountId, Checkpoint, ConversationId, CustomerId, DomainEvent, MessageId, NewEvent, StreamRef};
use netia_projections::{Checkpoints, InboxProjection};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;

fn encode(event: ConversationEvent) -> NewEvent {
    NewEvent::new(
        event.event_type(),
        event.event_version(),
        event.to_payload().unwrap(),
        json!({"actor": {"kind": "bot"}}),
    )
}

async fn run(name: &str, store: Arc<dyn EventStore>, url: &str, events: usize) {
    let seeded = netia::seed::seed_demo(store.clone(), events, (events / 100).max(1), 42)
        .await
        .unwrap();
    println!(
        "{name:<9} seed-demo {} events                         {:>10.0} events/s",
        seeded.events,
        seeded.events as f64 / seeded.seconds
    );
    for projection in projections() {
        let label = projection.name();
        if !selected(label) {
            continue;
        }
        let RebuildOutcome::Swapped { events, seconds } =
            rebuild(store.clone(), url, projection, &RebuildOptions::default())
                .await
                .unwrap()
        else {
            unreachable!()
        };
        println!(
            "{name:<9} rebuild {label:<13} {events} events     {:>10.0} events/s",
            events as f64 / seconds
        );
    }
    if selected("all") {
        let RebuildOutcome::Swapped { events, seconds } =
            rebuild_all(store.clone(), url, projections(), &RebuildOptions::default())
                .await
                .unwrap()
        else {
            unreachable!()
        };
        println!(
            "{name:<9} rebuild all, one pass  {events} events     {:>10.0} events/s",
            events as f64 / seconds
        );
    }
    if selected("lag") {
        live_lag(name, store.clone(), url).await;
    }
    if selected("added") {
        group_lag(name, store, url).await;
    }
}

/// Whether NETIA_BENCH_ONLY (if set) names this part; backends and parts are filtered separately.
fn selected(part: &str) -> bool {
    let Ok(only) = std::env::var("NETIA_BENCH_ONLY") else {
        return true;
    };
    let names: Vec<&str> = only.split(',').map(str::trim).collect();
    let backends = ["postgres", "sqlite"];
    let is_backend = backends.contains(&part);
    let names_any = names.iter().any(|n| backends.contains(n) == is_backend);
    !names_any || names.contains(&part)
}

/// Appends customer messages at 1,000 events/s for 10 s while the inbox projector runs alone; prints
/// how long each event took to reach the inbox.
async fn live_lag(name: &str, store: Arc<dyn EventStore>, url: &str) {
    let pool = read_model_pool(url, 4).await.unwrap();
    let projector = Projector::new(store.clone(), pool.clone(), Arc::new(InboxProjection)).with_batch(500);
    projector.setup().await.unwrap();
    projector.catch_up().await.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(projector.run(stopped));
    let lags = under_load(&store, &pool).await;
    stop.send(true).unwrap();
    running.await.unwrap();
    print_lags(name, "inbox alone", &lags);
}

/// The server's projector group (every read model) under the same load, twice: with every read
/// model at the head (the baseline), then with `ai_outcomes` new to the server (its checkpoint and
/// table gone), so that it builds from the whole log in the background meanwhile (ADR 0019). Prints
/// the inbox's lag in both and when `ai_outcomes` reached the log's head.
async fn group_lag(name: &str, store: Arc<dyn EventStore>, url: &str) {
    let pool = read_model_pool(url, 8).await.unwrap();
    let group = || {
        let members = projections()
            .into_iter()
            .map(|projection| Projector::new(store.clone(), pool.clone(), projection))
            .collect();
        ProjectorGroup::new(store.clone(), pool.clone(), url, members)
    };
    group().setup().await.unwrap();
    let log = store.head().await.unwrap();
    for adding in [false, true] {
        // Every read model at the head first (a full rebuild on the first round).
        rebuild_all(store.clone(), url, projections(), &RebuildOptions::default())
            .await
            .unwrap();
        if adding {
            sqlx::query("DELETE FROM projection_checkpoints WHERE name = 'ai_outcomes'")
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("DROP TABLE ai_outcomes").execute(&pool).await.unwrap();
            // As a server starting with a new projection does: its tables exist before it runs.
            group().setup().await.unwrap();
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let started = Instant::now();
        let running = tokio::spawn(group().run(stopped));
        let lags = under_load(&store, &pool).await;
        let head = store.head().await.unwrap();
        let built = loop {
            let mut conn = pool.acquire().await.unwrap();
            if Checkpoints::load(&mut conn, "ai_outcomes").await.unwrap() >= head {
                break started.elapsed();
            }
            drop(conn);
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "ai_outcomes did not reach the head in 5 minutes"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        stop.send(true).unwrap();
        running.await.unwrap();
        if adding {
            print_lags(
                name,
                &format!("group, ai_outcomes building from {} events", log.position),
                &lags,
            );
            println!(
                "{name:<9} ai_outcomes added to a running group reached the head after {:.1} s ({:.0} events/s with the load)",
                built.as_secs_f64(),
                head.position as f64 / built.as_secs_f64()
            );
        } else {
            print_lags(name, "group, all at the head (baseline)", &lags);
        }
    }
}

/// Appends customer messages to 100 new conversations at 1,000 events/s for 10 s; returns how long
/// each took to reach the inbox (its checkpoint polled every 0.5 ms).
async fn under_load(store: &Arc<dyn EventStore>, pool: &sqlx::AnyPool) -> Vec<Duration> {
    let account_id = AccountId::new();
    let mut streams = Vec::new();
    for _ in 0..100 {
        let id = ConversationId::new();
        let customer_id = CustomerId::new();
        let created = ConversationEvent::ConversationCreated(ConversationCreated {
            conversation_id: id,
            account_id,
            customer_id,
            inbox_id: None,
            source: Source::Chat,
            subject: None,
            created_at: Utc::now(),
        });
        store
            .append(&StreamRef::new("conversation", id), 0, vec![encode(created)])
            .await
            .unwrap();
        streams.push((id, customer_id, 1_i64));
    }

    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel::<(Checkpoint, Instant)>();
    let writer_store = store.clone();
    let writer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for i in 0..10_000 {
            tick.tick().await;
            let (id, customer_id, version) = &mut streams[i % 100];
            let event = ConversationEvent::CustomerMessagePosted(CustomerMessagePosted {
                message_id: MessageId::new(),
                customer_id: *customer_id,
                body: format!("message {i}"),
                attachments: Vec::new(),
                format: netia_events::conversation::MessageFormat::Text,
                client_message_id: None,
                sent_at: Utc::now(),
            });
            let at = Instant::now();
            let recorded = writer_store
                .append(&StreamRef::new("conversation", *id), *version, vec![encode(event)])
                .await
                .unwrap();
            *version += 1;
            let _ = sent_tx.send((recorded[0].checkpoint(), at));
        }
    });

    let started = Instant::now();
    let mut lags = Vec::with_capacity(10_000);
    let mut pending: std::collections::VecDeque<(Checkpoint, Instant)> = Default::default();
    let mut conn = pool.acquire().await.unwrap();
    while lags.len() < 10_000 {
        while let Ok(sent) = sent_rx.try_recv() {
            pending.push_back(sent);
        }
        let at = Checkpoints::load(&mut conn, "inbox").await.unwrap();
        let now = Instant::now();
        while pending.front().is_some_and(|(c, _)| *c <= at) {
            let (_, sent) = pending.pop_front().unwrap();
            lags.push(now - sent);
        }
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    writer.await.unwrap();
    lags
}

fn print_lags(name: &str, what: &str, lags: &[Duration]) {
    let mut lags = lags.to_vec();
    lags.sort();
    let pct = |p: f64| {
        lags.get(((lags.len() as f64 * p) as usize).min(lags.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3
    };
    println!(
        "{name:<9} inbox lag at 1,000 appends/s, {what}: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms ({} events)",
        pct(0.50),
        pct(0.99),
        lags.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        lags.len()
    );
}

#[tokio::main]
async fn main() {
    let events: usize = std::env::var("NETIA_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let admin_url = std::env::var("NETIA_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    match PgPoolOptions::new().max_connections(1).connect(&admin_url).await {
        _ if !selected("postgres") => {}
        Ok(admin) => {
            let db = format!("netia_bench_{}", uuid::Uuid::now_v7().simple());
            sqlx::query(&format!("CREATE DATABASE {db}"))
                .execute(&admin)
                .await
                .unwrap();
            let url = format!("{}/{db}", admin_url.rsplit_once('/').unwrap().0);
            {
                let store = PgStore::connect(&url, 16).await.unwrap();
                store.migrate().await.unwrap();
                run("postgres", sealed(Arc::new(store), &url).await, &url, events).await;
            }
            sqlx::query(&format!("DROP DATABASE {db} WITH (FORCE)"))
                .execute(&admin)
                .await
                .unwrap();
        }
        Err(e) => println!("postgres  skipped: {admin_url} not reachable: {e}"),
    }
    if !selected("sqlite") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/bench.db", dir.path().display());
    let store = SqliteStore::connect(&url, 4).await.unwrap();
    store.migrate().await.unwrap();
    run("sqlite", sealed(Arc::new(store), &url).await, &url, events).await;
}

/// `store` as a server with a secret key runs it: personal fields sealed per customer (ADR 0023),
/// so every figure includes sealing on append and opening on read.
async fn sealed(store: Arc<dyn netia::store::EventStore>, url: &str) -> Arc<dyn netia::store::EventStore> {
    let keys = netia::projector::read_model_pool(url, 2).await.unwrap();
    Arc::new(netia::store::ShreddingStore::new(
        store,
        keys,
        netia::secrets::Sealer::ephemeral(),
    ))
}
