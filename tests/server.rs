//! The server as users meet it: the binary, its settings, and the health endpoints over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TestDb;
use serde_json::Value;

async fn spawn(db: &TestDb) -> String {
    common::api::Api::start(db).await.base
}

async fn get(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn health_endpoints_answer(db: &TestDb) {
    let base = spawn(db).await;
    let (status, body) = get(&format!("{base}/health/live")).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = get(&format!("{base}/health/ready")).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ready");
    let (status, body) = get(&format!("{base}/nothing/here")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found");
}

on_both_backends!(health_endpoints_answer);

#[tokio::test]
async fn readiness_fails_when_the_database_is_gone() {
    let Some(db) = TestDb::postgres().await else { return };
    let base = spawn(&db).await;
    let common::Raw::Postgres(pool) = &db.raw else {
        unreachable!()
    };
    pool.close().await;
    let (status, body) = get(&format!("{base}/health/ready")).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"], "unavailable");
    let (status, _) = get(&format!("{base}/health/live")).await;
    assert_eq!(status, 200, "still alive");
    db.cleanup().await;
}

/// A background task that panics is restarted; meanwhile `/health/ready` answers 503 naming it,
/// and `/metrics` counts the restart. The task runs under the node's own supervisor, as the
/// projectors, broadcaster, scheduler, relay and consumers do.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_background_task_that_panics_is_restarted_and_readiness_says_so() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    let db = TestDb::sqlite().await.expect("a SQLite test database");
    let vars = std::collections::HashMap::from([
        ("PORT", "0"),
        ("DATABASE_URL", db.url.as_str()),
        ("METRICS_TOKEN", common::api::METRICS_TOKEN),
    ]);
    let settings = netia::settings::Settings::from_map(&vars).unwrap();
    let mut app = netia::startup::Application::start(&settings, db.store.clone())
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let runs = Arc::new(AtomicU32::new(0));
    let counted = runs.clone();
    app.supervise("probe", move |mut stop| {
        let run = counted.fetch_add(1, Ordering::SeqCst);
        async move {
            if run == 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                panic!("probe failed on purpose");
            }
            let _ = stop.wait_for(|stopped| *stopped).await;
        }
    });
    tokio::spawn(app.run_until_stopped());
    let (status, _) = get(&format!("{base}/health/ready")).await;
    assert_eq!(status, 200, "ready while every task runs");

    let started = Instant::now();
    let mut refused = None;
    while started.elapsed() < Duration::from_secs(5) {
        let (status, body) = get(&format!("{base}/health/ready")).await;
        if status == 503 {
            refused = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = refused.expect("readiness reported the failed task");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("probe (panicked: probe failed on purpose)"),
        "{message}"
    );

    let mut ready_again = false;
    while started.elapsed() < Duration::from_secs(10) {
        if get(&format!("{base}/health/ready")).await.0 == 200 {
            ready_again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready_again, "ready again once the task is restarted");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let api = common::api::Api {
        base: base.clone(),
        http: reqwest::Client::new(),
    };
    let metrics = api.metrics().await;
    assert!(
        metrics.contains("netia_task_restarts_total{task=\"probe\"} 1"),
        "{metrics}"
    );
    for task in ["projectors", "broadcaster", "scheduler", "presence_log"] {
        assert!(
            metrics.contains(&format!("netia_task_up{{task=\"{task}\"}} 1")),
            "{task}: {metrics}"
        );
    }
    db.cleanup().await;
}

/// `/metrics` on the API port only with `METRICS_TOKEN`; without one configured, only on
/// `METRICS_ADDR` (no token there: a private scrape address).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_need_the_token_or_the_private_address() {
    let db = TestDb::sqlite().await.expect("a SQLite test database");
    let api = common::api::Api::start(&db).await;
    let url = format!("{}/metrics", api.base);
    let (status, body) = get(&url).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("unauthorized")), "{body}");
    let wrong = api
        .http
        .get(&url)
        .bearer_auth("not-the-metrics-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(api.metrics().await.contains("netia_task_up"));

    let scrape = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let scrape_addr = scrape.to_string();
    let other = TestDb::sqlite().await.expect("a SQLite test database");
    let vars = std::collections::HashMap::from([
        ("PORT", "0"),
        ("DATABASE_URL", other.url.as_str()),
        ("METRICS_ADDR", scrape_addr.as_str()),
    ]);
    let settings = netia::settings::Settings::from_map(&vars).unwrap();
    let app = netia::startup::Application::start(&settings, other.store.clone())
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let (status, _) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 401, "no credentials");
    let refused = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth("any-token-at-all-here")
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status().as_u16(),
        403,
        "no token configured: not on the API port"
    );
    let body: Value = refused.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains(&scrape_addr), "{body}");
    let scraped = reqwest::get(format!("http://{scrape_addr}/metrics")).await.unwrap();
    assert_eq!(scraped.status().as_u16(), 200);
    assert!(
        scraped
            .text()
            .await
            .unwrap()
            .contains("netia_task_up{task=\"projectors\"} 1")
    );
    let elsewhere = reqwest::get(format!("http://{scrape_addr}/api/conversations"))
        .await
        .unwrap();
    assert_eq!(elsewhere.status().as_u16(), 404, "only metrics there");
    db.cleanup().await;
    other.cleanup().await;
}

/// Requests are counted and timed by route template (not by raw path: ids would make a series
/// each), and the sampler reports every follower's lag.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_requests_by_route_template_and_show_follower_lag() {
    let db = TestDb::sqlite().await.expect("a SQLite test database");
    let api = common::api::Api::start(&db).await;
    let admin = api.register("agent@example.com").await;
    let id = uuid::Uuid::now_v7();
    let (status, _) = api.get(&format!("/api/conversations/{id}"), &admin.token).await;
    assert_eq!(status, 404);
    let series =
        "netia_http_request_duration_seconds_count{method=\"GET\",route=\"/api/conversations/{id}\",status=\"404\"}";
    assert!(api.metric(series).await >= Some(1.0), "{}", api.metrics().await);
    let text = api.metrics().await;
    assert!(!text.contains(&id.to_string()), "no raw ids in labels");
    assert!(
        text.contains("netia_store_append_duration_seconds_bucket{backend=\"sqlite\""),
        "{text}"
    );
    // The sampler runs at start and every 5 s.
    let mut lag = None;
    for _ in 0..100 {
        lag = api
            .metric("netia_follower_lag_events{follower=\"inbox\",kind=\"projection\"}")
            .await;
        if lag.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(lag.is_some(), "{}", api.metrics().await);
    db.cleanup().await;
}

/// `netia status` against a running node's database: every projection's checkpoint and lag, who
/// holds its lease (PostgreSQL), the scheduler's backlog, the parked deliveries.
async fn status_shows_every_follower_and_lease(db: &TestDb) {
    let api = common::api::Api::start(db).await;
    let admin = api.register("agent@example.com").await;
    api.conversation(&admin.account_id).await;
    let pool = netia::projector::read_model_pool(&db.url, 2).await.unwrap();
    netia::scheduler::schedule(&pool, "probe-job", "probe", &serde_json::json!({}), chrono::Utc::now())
        .await
        .unwrap();
    let mut status = Value::Null;
    // The projectors and the scheduler take their leases within a few seconds of the start.
    for _ in 0..100 {
        let out = netia()
            .env("DATABASE_URL", &db.url)
            .env("NETIA_SECRET_KEY", common::api::SECRET_KEY)
            .args(["status", "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        status = serde_json::from_slice(&out.stdout).unwrap();
        let leased = status["scheduler"]["lease_holder"].is_string();
        if !db.url.starts_with("postgres") || leased {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let followers = status["followers"].as_array().unwrap();
    for name in ["conversation", "customer", "inbox", "reporting"] {
        let f = followers
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("{name}: {status}"));
        assert_eq!(f["kind"], "projection");
        assert!(f["lag_events"].as_i64().unwrap() >= 0);
        assert_eq!(
            f["lease_holder"].is_string(),
            db.url.starts_with("postgres"),
            "{status}"
        );
    }
    assert_eq!(status["scheduler"]["pending"], 1, "{status}");
    assert_eq!(status["parked"], 0);
    let text = netia()
        .env("DATABASE_URL", &db.url)
        .env("NETIA_SECRET_KEY", common::api::SECRET_KEY)
        .arg("status")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("inbox") && text.contains("scheduler: "), "{text}");
}

mod status {
    use super::*;
    on_both_backends!(status_shows_every_follower_and_lease);
}

fn netia() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_netia"));
    for var in [
        "HOST",
        "PORT",
        "DATABASE_URL",
        "DATABASE_MAX_CONNECTIONS",
        "NETIA_MIGRATE",
        "LOG_FORMAT",
        "RUST_LOG",
        "METRICS_TOKEN",
        "METRICS_ADDR",
        "SHUTDOWN_TIMEOUT",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

#[test]
fn invalid_settings_stop_startup_naming_the_variable() {
    let cases = [
        ("PORT", "eighty"),
        ("DATABASE_URL", "mysql://root:secret@db/x"),
        ("NETIA_MIGRATE", "perhaps"),
        ("LOG_FORMAT", "yaml"),
        ("DATABASE_MAX_CONNECTIONS", "-1"),
        ("METRICS_TOKEN", "short"),
        ("METRICS_ADDR", "nowhere"),
        ("SHUTDOWN_TIMEOUT", "0"),
    ];
    for (var, value) in cases {
        let out = netia().env(var, value).arg("serve").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {stderr}");
        assert!(stderr.contains(var), "{var}: {stderr}");
        assert!(!stderr.contains("secret"), "no password echoed: {stderr}");
    }
}

#[test]
fn an_unknown_subcommand_is_a_usage_error() {
    let out = netia().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("frobnicate"));
}

#[test]
fn an_unreachable_database_fails_startup_with_a_message() {
    let out = netia()
        .env("DATABASE_URL", "postgres://nobody:pw@127.0.0.1:1/none")
        .arg("migrate")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot open the database"), "{stderr}");
    assert!(!stderr.contains(":pw@"), "no password echoed: {stderr}");
}

/// A plain HTTP/1.1 GET over a socket, for tests without an async runtime.
fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// With no configuration at all the binary creates ./data/netia.db and serves /health/ready.
#[test]
fn with_no_configuration_it_serves_from_sqlite_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = netia()
        .current_dir(dir.path())
        .env("PORT", "0")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_owned());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("server announced its address");
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        match http_get(&addr, "/health/ready") {
            Ok(response) if response.starts_with("HTTP/1.1 200") => break response,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => panic!("/health/ready did not answer"),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(body.contains("\"ready\"") && body.contains("sqlite"), "{body}");
    assert!(dir.path().join("data/netia.db").exists());
}
