//! The relay and a consumer on real PostgreSQL and RabbitMQ. Prints:
//! - relay throughput: events published to `netia.events` with publisher confirms (and the
//!   checkpoint moved), from a backlog of NETIA_BENCH_EVENTS (default 50,000);
//! - added latency commit → consumer: events appended one by one at 500/s; the time from the append's
//!   return to the consumer's `handle` (p50/p99).
//!
//! `cargo bench --bench bus` (PostgreSQL at NETIA_BENCH_DATABASE_URL, RabbitMQ at AMQP_URL; a scratch
//! database and scratch queues are created and removed). Load generator on the same 2 cores.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lapin::options::QueueDeleteOptions;
use netia::bus::{Consumer, Failure, RetryPolicy, amqp, relay};
use netia::store::{EventStore, PgStore};
use netia_events::{Checkpoint, NewEvent, RecordedEvent, StreamRef};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::watch;
use uuid::Uuid;

fn event(i: usize) -> NewEvent {
    NewEvent::new(
        "BenchEventHappened",
        1,
        json!({"n": i, "body": "hello, is anyone there?"}),
        json!({"actor": {"kind": "system", "component": "bench"}}),
    )
}

/// Notes when each event arrives.
struct Stopwatch {
    name: &'static str,
    arrived: Mutex<HashMap<Uuid, Instant>>,
}

#[async_trait]
impl Consumer for Stopwatch {
    fn name(&self) -> &'static str {
        self.name
    }

    fn bindings(&self) -> Vec<String> {
        vec!["benchlatency.#".into()]
    }

    async fn handle(&self, event: &RecordedEvent) -> Result<(), Failure> {
        self.arrived.lock().unwrap().insert(event.event_id, Instant::now());
        Ok(())
    }
}

#[tokio::main]
async fn main() {
    let admin_url = std::env::var("NETIA_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let amqp_url = std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let total: usize = std::env::var("NETIA_BENCH_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50_000);
    let Ok(admin) = PgPoolOptions::new().max_connections(1).connect(&admin_url).await else {
        println!("bus bench skipped: PostgreSQL not reachable at {admin_url}");
        return;
    };
    let db = format!("netia_bench_bus_{}", Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&admin)
        .await
        .unwrap();
    let url = format!("{}/{db}", admin_url.rsplit_once('/').unwrap().0);
    let store: Arc<dyn EventStore> = Arc::new(PgStore::connect(&url, 10).await.unwrap());
    store.migrate().await.unwrap();
    let pool = netia::projector::read_model_pool(&url, 10).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    netia_projections::Checkpoints::setup(&mut conn).await.unwrap();
    netia_projections::Checkpoints::save(&mut conn, relay::NAME, Checkpoint::START)
        .await
        .unwrap();
    drop(conn);

    // Throughput: a backlog, relayed from the start.
    for chunk in 0..total / 500 {
        let stream = StreamRef::new("benchbacklog", format!("s{chunk}"));
        store
            .append(&stream, 0, (0..500).map(|i| event(chunk * 500 + i)).collect())
            .await
            .unwrap();
    }
    let (stop, _) = watch::channel(false);
    let started = Instant::now();
    netia::telemetry::recorder::handle(); // counts from now on
    let relay = relay::Relay::new(store.clone(), pool.clone(), amqp_url.clone());
    tokio::spawn(relay.run(stop.subscribe()));
    while published() < (total / 500 * 500) as f64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    println!(
        "relay: {} events published with confirms in {:.2} s: {:.0} events/s",
        total / 500 * 500,
        elapsed.as_secs_f64(),
        (total / 500 * 500) as f64 / elapsed.as_secs_f64()
    );

    // Latency: commit → consumer, at 500 appends/s.
    let name: &'static str = Box::leak(format!("bench_{}", Uuid::now_v7().simple()).into_boxed_str());
    let watch = Arc::new(Stopwatch {
        name,
        arrived: Mutex::new(HashMap::new()),
    });
    let policy = RetryPolicy::default();
    let consumer: Arc<dyn Consumer> = watch.clone();
    tokio::spawn(amqp::run(
        amqp_url.clone(),
        netia::bus::DEFAULT_PREFIX.to_owned(),
        pool.clone(),
        consumer,
        policy,
        stop.subscribe(),
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut committed = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    let count = 5_000;
    for i in 0..count {
        tick.tick().await;
        let stream = StreamRef::new("benchlatency", format!("s{i}"));
        let recorded = store.append(&stream, 0, vec![event(i)]).await.unwrap();
        committed.insert(recorded[0].event_id, Instant::now());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while watch.arrived.lock().unwrap().len() < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let arrived = watch.arrived.lock().unwrap().clone();
    let mut latencies: Vec<f64> = committed
        .iter()
        .filter_map(|(id, at)| {
            arrived
                .get(id)
                .map(|got| got.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "commit -> consumer at 500 events/s: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} of {count} delivered)",
        pct(0.5),
        pct(0.99),
        latencies.last().copied().unwrap_or_default(),
        latencies.len()
    );

    let _ = stop.send(true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_c, channel) = relay::open(&amqp_url).await.unwrap();
    let mut queues = vec![
        amqp::queue(netia::bus::DEFAULT_PREFIX, name),
        amqp::parked_queue(netia::bus::DEFAULT_PREFIX, name),
    ];
    queues.extend(
        (1..policy.max_attempts.max(2)).map(|a| amqp::retry_queue(netia::bus::DEFAULT_PREFIX, name, policy.backoff(a))),
    );
    for queue in queues {
        let _ = channel.queue_delete(queue.into(), QueueDeleteOptions::default()).await;
    }
    drop(store);
    drop(pool);
    sqlx::query(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
}

/// Events the relay has published (with confirms), from this process' metrics.
fn published() -> f64 {
    netia::telemetry::recorder::render()
        .lines()
        .find_map(|line| line.strip_prefix("netia_relay_published_total ")?.trim().parse().ok())
        .unwrap_or(0.0)
}
