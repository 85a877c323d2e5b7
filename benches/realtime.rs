//! WebSocket load against a `netia serve` child process on PostgreSQL (NETIA_BENCH_DATABASE_URL as
//! for the other benches). Prints:
//! - end-to-end latency of customer `shout` → agent receives the saved message, at 1,000 msgs/s
//!   for 10 s over 100 conversations (each message durably appended before it is broadcast);
//! - deliveries/s in one conversation with 1,000 subscribers;
//! - server memory per idle connection, with 10,000 connections open.
//!
//! The load client shares the machine (2 cores) with the server and PostgreSQL.
//! NETIA_BENCH_RATE sets the shout rate (default 1000/s); NETIA_BENCH_ONLY=latency or =memory runs
//! one part.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Writer = SplitSink<Ws, Message>;
type Reader = SplitStream<Ws>;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn post(http: &reqwest::Client, url: String, token: Option<&str>, body: Value) -> Value {
    let mut request = http.post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap()
}

/// A customer with an open conversation: (conversation id, customer token).
async fn conversation(http: &reqwest::Client, base: &str, account: &str) -> (String, String) {
    let customer = post(
        http,
        format!("{base}/api/customers"),
        None,
        json!({"account_id": account}),
    )
    .await;
    let token = customer["data"]["token"].as_str().unwrap().to_owned();
    let id = customer["data"]["id"].as_str().unwrap();
    let created = post(
        http,
        format!("{base}/api/conversations"),
        Some(&token),
        json!({"account_id": account, "customer_id": id}),
    )
    .await;
    (created["data"]["id"].as_str().unwrap().to_owned(), token)
}

async fn connect(ws_base: &str, token: &str) -> (Writer, Reader) {
    let url = format!("{ws_base}/socket/websocket?vsn=2.0.0&token={token}");
    let (ws, _) = connect_async_with_config(url, None, true).await.unwrap();
    ws.split()
}

/// Joins `topic` and waits for the ok reply.
async fn join(writer: &mut Writer, reader: &mut Reader, topic: &str) {
    let frame = json!(["1", "1", topic, "phx_join", {}]).to_string();
    writer.send(Message::text(frame)).await.unwrap();
    while let Some(Ok(message)) = reader.next().await {
        if let Message::Text(text) = message {
            let frame: Value = serde_json::from_str(&text).unwrap();
            if frame[1] == "1" && frame[3] == "phx_reply" {
                assert_eq!(frame[4]["status"], "ok", "{frame}");
                return;
            }
        }
    }
    panic!("no join reply");
}

/// Reads and drops everything (so the server never sees this client as slow).
fn drain(mut reader: Reader) {
    tokio::spawn(async move { while reader.next().await.is_some() {} });
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(i).copied().unwrap_or_default().as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    let admin_url = std::env::var("NETIA_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let Ok(admin) = PgPoolOptions::new().max_connections(1).connect(&admin_url).await else {
        println!("realtime bench skipped: PostgreSQL not reachable at {admin_url}");
        return;
    };
    let db = format!("netia_bench_rt_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&admin)
        .await
        .unwrap();
    let url = format!("{}/{db}", admin_url.rsplit_once('/').unwrap().0);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_netia"))
        .arg("serve")
        .env("DATABASE_URL", &url)
        .env("DATABASE_MAX_CONNECTIONS", "20")
        .env("PORT", port.to_string())
        .env(
            "RUST_LOG",
            std::env::var("NETIA_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .env("RATE_LIMIT_IP_PER_MINUTE", "1000000")
        .env("RATE_LIMIT_SOCKETS_PER_MINUTE", "1000000")
        .env("RATE_LIMIT_FRAMES_PER_SECOND", "1000000")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if reqwest::get(format!("{base}/health/ready"))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run(&base, server.id().unwrap()).await;
    server.kill().await.unwrap();
    sqlx::query(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
}

async fn run(base: &str, pid: u32) {
    let http = reqwest::Client::new();
    let ws_base = base.replace("http://", "ws://");
    let registered = post(
        &http,
        format!("{base}/api/registration"),
        None,
        json!({"email": "bench@example.com", "password": "bench-password", "account_name": "Bench"}),
    )
    .await;
    let agent_token = registered["data"]["token"].as_str().unwrap().to_owned();
    let account = registered["data"]["account_id"].as_str().unwrap().to_owned();
    if std::env::var("NETIA_BENCH_ONLY").is_ok_and(|o| o == "memory") {
        return memory(&http, base, &ws_base, &account, pid).await;
    }

    // --- latency: customer shout → the agent (on notification:<account>) gets the saved message ---
    let (mut agent_writer, mut agent_reader) = connect(&ws_base, &agent_token).await;
    join(&mut agent_writer, &mut agent_reader, &format!("notification:{account}")).await;
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    {
        let sent = sent.clone();
        let latencies = latencies.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = agent_reader.next().await {
                let Message::Text(text) = message else { continue };
                let frame: Value = serde_json::from_str(&text).unwrap_or_default();
                if frame[3] != "shout" {
                    continue;
                }
                let key = frame[4]["client_message_id"].as_str().unwrap_or_default().to_owned();
                if let Some(at) = sent.lock().unwrap().remove(&key) {
                    latencies.lock().unwrap().push(at.elapsed());
                }
            }
        });
    }
    let mut customers = Vec::new();
    for _ in 0..100 {
        let (id, token) = conversation(&http, base, &account).await;
        let (mut writer, mut reader) = connect(&ws_base, &token).await;
        let topic = format!("conversation:{id}");
        join(&mut writer, &mut reader, &topic).await;
        drain(reader);
        customers.push((writer, topic));
    }
    let rate: usize = std::env::var("NETIA_BENCH_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1_000);
    let total = rate * 10;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate as u64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let began = Instant::now();
    for i in 0..total {
        tick.tick().await;
        let (writer, topic) = &mut customers[i % 100];
        let key = format!("m{i}");
        let frame =
            json!(["1", i.to_string(), topic, "shout", {"body": format!("message {i}"), "client_message_id": key}]);
        sent.lock().unwrap().insert(key, Instant::now());
        writer.send(Message::text(frame.to_string())).await.unwrap();
    }
    let send_rate = total as f64 / began.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(15);
    while latencies.lock().unwrap().len() < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort();
    println!(
        "shout -> agent at {send_rate:.0} msgs/s: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} of {total} delivered)",
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        lat.len()
    );
    drop(customers);
    if std::env::var("NETIA_BENCH_ONLY").is_ok_and(|o| o == "latency") {
        return;
    }

    // --- fan-out: one conversation, 1,000 subscribers (tabs of its customer) ---
    let (id, token) = conversation(&http, base, &account).await;
    let topic = format!("conversation:{id}");
    let delivered = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut subscribers = Vec::new();
    let setup = Instant::now();
    for _ in 0..1_000 {
        let (mut writer, mut reader) = connect(&ws_base, &token).await;
        join(&mut writer, &mut reader, &topic).await;
        let delivered = delivered.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = reader.next().await {
                if let Message::Text(text) = message
                    && text.contains("\"shout\"")
                    && text.starts_with("[null,null")
                {
                    delivered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        subscribers.push(writer);
    }
    println!("1,000 subscribers joined in {:.1} s", setup.elapsed().as_secs_f64());
    let shouts = 100u64;
    let began = Instant::now();
    for i in 0..shouts {
        let frame = json!(["1", format!("f{i}"), topic, "shout", {"body": format!("to everyone {i}")}]);
        subscribers[0].send(Message::text(frame.to_string())).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let expected = shouts * 1_000;
    let deadline = Instant::now() + Duration::from_secs(30);
    while delivered.load(std::sync::atomic::Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let got = delivered.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "fan-out, 1 conversation x 1,000 subscribers: {:.0} deliveries/s ({got} of {expected} in {:.2} s)",
        got as f64 / began.elapsed().as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
    drop(subscribers);
    tokio::time::sleep(Duration::from_secs(2)).await;

    memory(&http, base, &ws_base, &account, pid).await;
}

/// Server memory per idle connection, with 10,000 open.
async fn memory(http: &reqwest::Client, base: &str, ws_base: &str, account: &str, pid: u32) {
    let (_, token) = conversation(http, base, account).await;
    let before = rss_kib(pid);
    let mut idle = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        let (writer, reader) = connect(ws_base, &token).await;
        drain(reader);
        idle.push(writer);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid);
    println!(
        "10,000 idle connections: server RSS {} -> {} KiB, {:.1} KiB per connection",
        before,
        after,
        (after.saturating_sub(before)) as f64 / 10_000.0
    );
}
