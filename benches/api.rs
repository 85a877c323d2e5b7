//! HTTP API latency and throughput against PostgreSQL, through the real server.
//!
//! `cargo bench --bench api` (NETIA_BENCH_DATABASE_URL as for the other benches). Seeds one account
//! with 1,000 conversations, then:
//! - the inbox list, open loop at 500 requests/s for 10 s cycling over five filters, prints the
//!   achieved rate and latency percentiles (target: p99 < 10 ms);
//! - posting agent messages, 16 concurrent clients for 5 s, prints messages/s and latency.
//!
//! The load generator shares the machine (and its two cores) with the server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use netia::command_bus::CommandBus;
use netia::settings::Settings;
use netia::startup::Application;
use netia::store::{EventStore, PgStore};
use netia_commands::{Conversation, ConversationCommand, Customer, CustomerCommand};
use netia_events::conversation::{Author, Priority, Source};
use netia_events::customer::CustomerIdentity;
use netia_events::{AccountId, ConversationId, CustomerId, MessageId, Metadata, UserId};
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;

const CONVERSATIONS: usize = 1_000;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(i).copied().unwrap_or_default().as_secs_f64() * 1e3
}

fn report(label: &str, mut latencies: Vec<Duration>, errors: usize, elapsed: Duration) {
    latencies.sort();
    println!(
        "{label:<34} {:>7.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  ({} ok, {errors} failed)",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        latencies.len(),
    );
}

/// 1,000 conversations of the agent's account, written through the aggregates: a customer message
/// each, and a spread of assignments, priorities, tags and closes for the filters to find.
async fn seed(store: Arc<dyn EventStore>, account: AccountId, agent: UserId) -> Vec<ConversationId> {
    let bus = CommandBus::new(store);
    let meta = Metadata::system("bench").with_account(account);
    let mut ids = Vec::new();
    for i in 0..CONVERSATIONS {
        let customer = CustomerId::new();
        let create = CustomerCommand::Create {
            customer_id: customer,
            account_id: account,
            identity: CustomerIdentity {
                name: Some(format!("Customer {i}")),
                email: Some(format!("c{i}@example.com")),
                ..Default::default()
            },
            metadata: Default::default(),
            verified: false,
        };
        bus.execute::<Customer>(customer, create, &meta).await.unwrap();
        let id = ConversationId::new();
        let now = Utc::now();
        let mut commands = vec![
            ConversationCommand::Create {
                conversation_id: id,
                account_id: account,
                customer_id: customer,
                inbox_id: netia_events::InboxId::new(),
                source: Source::Chat,
                subject: None,
                at: now,
            },
            ConversationCommand::PostMessage {
                message_id: MessageId::new(),
                author: Author::Customer { customer_id: customer },
                body: format!("Hello, question number {i}"),
                format: netia_events::conversation::MessageFormat::Text,
                private: false,
                client_message_id: None,
                attachments: Vec::new(),
                at: now,
            },
        ];
        if i % 3 == 0 {
            commands.push(ConversationCommand::Assign { assignee: Some(agent) });
        }
        if i % 5 == 0 {
            commands.push(ConversationCommand::SetPriority {
                priority: Priority::Priority,
            });
        }
        if i % 7 == 0 {
            commands.push(ConversationCommand::Tag { tag: "vip".into() });
        }
        if i % 4 == 0 {
            commands.push(ConversationCommand::Close { at: now });
        }
        bus.execute_all::<Conversation>(id, &commands, &meta).await.unwrap();
        ids.push(id);
    }
    ids
}

#[tokio::main]
async fn main() {
    let admin_url = std::env::var("NETIA_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let Ok(admin) = PgPoolOptions::new().max_connections(1).connect(&admin_url).await else {
        println!("api bench skipped: PostgreSQL not reachable at {admin_url}");
        return;
    };
    let db = format!("netia_bench_api_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&admin)
        .await
        .unwrap();
    let url = format!("{}/{db}", admin_url.rsplit_once('/').unwrap().0);
    {
        let store = PgStore::connect(&url, 20).await.unwrap();
        store.migrate().await.unwrap();
        let store: Arc<dyn EventStore> = Arc::new(store);
        let settings = Settings::from_map(&HashMap::from([
            ("PORT", "0"),
            ("DATABASE_URL", url.as_str()),
            ("DATABASE_MAX_CONNECTIONS", "20"),
        ]))
        .unwrap();
        let app = Application::start(&settings, store.clone()).await.unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        run(&base, store).await;
    }
    sqlx::query(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
}

async fn run(base: &str, store: Arc<dyn EventStore>) {
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    let registered: Value = http
        .post(format!("{base}/api/registration"))
        .json(&json!({"email": "bench@example.com", "password": "bench-password", "account_name": "Bench"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = registered["data"]["token"].as_str().unwrap().to_owned();
    let account: AccountId = registered["data"]["account_id"].as_str().unwrap().parse().unwrap();
    let agent: UserId = registered["data"]["user_id"].as_str().unwrap().parse().unwrap();
    let started = Instant::now();
    let ids = seed(store, account, agent).await;
    // Wait until the inbox shows all of them.
    loop {
        let counts: Value = http
            .get(format!("{base}/api/conversations/count"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let d = &counts["data"];
        if d["open"].as_i64().unwrap_or(0) + d["closed"].as_i64().unwrap_or(0) == CONVERSATIONS as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "seeded {CONVERSATIONS} conversations in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let filters = [
        "status=open",
        "assignee=me",
        "priority=priority",
        "tag=vip",
        "status=closed&limit=25",
    ];
    // Warm up connections and caches.
    for f in filters {
        http.get(format!("{base}/api/conversations?{f}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
    }

    // Open loop: one request every 2 ms whatever the previous ones do.
    let rate = 500;
    let seconds = 10;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(rate as usize * seconds);
    let began = Instant::now();
    for i in 0..(rate as usize * seconds) {
        tick.tick().await;
        let request = http
            .get(format!("{base}/api/conversations?{}", filters[i % filters.len()]))
            .bearer_auth(&token);
        tasks.push(tokio::spawn(async move {
            let at = Instant::now();
            let ok = request.send().await.is_ok_and(|r| r.status().is_success());
            (ok, at.elapsed())
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        match task.await.unwrap() {
            (true, latency) => latencies.push(latency),
            _ => errors += 1,
        }
    }
    report(
        &format!("inbox list, open loop at {rate}/s"),
        latencies,
        errors,
        began.elapsed(),
    );

    // Closed loop: 16 agents posting replies as fast as they get answers.
    let clients = 16;
    let deadline = Instant::now() + Duration::from_secs(5);
    let began = Instant::now();
    let mut workers = Vec::new();
    for c in 0..clients {
        let http = http.clone();
        let token = token.clone();
        let base = base.to_owned();
        let ids = ids.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            let mut n = 0;
            while Instant::now() < deadline {
                let id = ids[(c * 61 + n * 16) % ids.len()];
                n += 1;
                let at = Instant::now();
                let ok = http
                    .post(format!("{base}/api/conversations/{id}/messages"))
                    .bearer_auth(&token)
                    .json(&json!({"body": format!("reply {c}-{n}"), "client_message_id": format!("{c}-{n}")}))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    latencies.push(at.elapsed());
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (l, e) = worker.await.unwrap();
        latencies.extend(l);
        errors += e;
    }
    report(
        &format!("post message, {clients} clients"),
        latencies,
        errors,
        began.elapsed(),
    );
}
